"""Arguments shared by several subcommands, and the errors they turn into messages."""

from __future__ import annotations

import argparse

from imgcurate.config import ConfigError
from imgcurate.io.listing import ListingError
from imgcurate.spark.tables import TablesError

#: Exceptions that mean "the user must change something", printed without a traceback.
USER_ERRORS = (ListingError, TablesError, ConfigError, FileNotFoundError)


def add_tables_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--tables", required=True, metavar="DIR", help="tables directory (local path or URL)"
    )
    parser.add_argument(
        "--format",
        dest="table_format",
        choices=("parquet", "delta"),
        default="parquet",
        help="table format (delta needs the Delta Lake jars; default: parquet)",
    )


def add_spark_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--master",
        default=None,
        help="Spark master URL (default: the one spark-submit set, else local[*])",
    )
    parser.add_argument(
        "--conf",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra Spark setting, repeatable",
    )


def spark_conf(pairs: list[str]) -> dict[str, str]:
    conf = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise ConfigError(f"--conf {pair!r} is not KEY=VALUE (e.g. spark.executor.memory=8g)")
        conf[key.strip()] = value.strip()
    return conf


def session(args: argparse.Namespace, app_name: str):
    from imgcurate.spark.session import get_spark

    return get_spark(master=args.master, app_name=app_name, conf=spark_conf(args.conf))
