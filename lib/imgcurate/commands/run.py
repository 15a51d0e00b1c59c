"""``imgcurate run``: the whole pipeline from one YAML config."""

from __future__ import annotations

import argparse

from imgcurate.commands.common import spark_conf
from imgcurate.config import STAGES, ConfigError, load_config


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "run",
        help="run scan, embed, dedup and reshard from a config file",
        description="Run the stages a pipeline config names, in order, skipping work "
        "already done. See conf/pipeline.yaml for every setting.",
    )
    parser.add_argument("--config", required=True, help="pipeline YAML (local path or URL)")
    parser.add_argument(
        "--only", default=None, metavar="STAGES", help=f"comma-separated subset of {STAGES}"
    )
    parser.add_argument("--input", default=None, help="override the config's input")
    parser.add_argument("--tables", default=None, help="override the config's tables")
    parser.add_argument("--dest", default=None, help="override the config's reshard.dest")
    parser.add_argument("--master", default=None, help="override spark.master")
    parser.add_argument(
        "--conf", action="append", default=[], metavar="KEY=VALUE", help="extra Spark setting"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress lines")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from imgcurate.spark.session import get_spark
    from imgcurate.stages.pipeline import run_pipeline

    only = _stages(args.only)
    overrides = {"input": args.input, "tables": args.tables, "reshard.dest": args.dest}
    if only:
        overrides["stages"] = only
    config = load_config(args.config, overrides=overrides)
    spark = get_spark(
        master=args.master or config.spark.master,
        app_name="imgcurate-run",
        conf={**config.spark.conf, **spark_conf(args.conf)},
    )
    run_pipeline(spark, config, progress=not args.quiet)
    return 0


def _stages(text: str | None) -> list[str] | None:
    if not text:
        return None
    stages = [s.strip() for s in text.split(",") if s.strip()]
    unknown = [s for s in stages if s not in STAGES]
    if unknown:
        raise ConfigError(f"--only {text!r}: unknown stage(s) {unknown}; stages are {STAGES}")
    return stages
