"""``imgcurate reshard``: write the samples a SQL predicate selects as new WebDataset shards."""

from __future__ import annotations

import argparse

from imgcurate.commands.common import ConfigError, add_spark_args, add_tables_args, session


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "reshard",
        help="write selected samples as new, exactly filled tar shards",
        description="Select samples with SQL over the tables and copy them, byte for byte, "
        "into new WebDataset shards (NNNNN.tar + NNNNN.parquet + NNNNN_stats.json). "
        "Rerunning resumes: complete shards are kept, others rewritten.",
    )
    add_arguments(parser)
    parser.set_defaults(run=run)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from imgcurate.stages.reshard import DEFAULT_SAMPLES_PER_SHARD

    parser.add_argument("--dest", required=True, help="output folder (local path or URL)")
    chosen = parser.add_mutually_exclusive_group()
    chosen.add_argument(
        "--where",
        default=None,
        metavar="PREDICATE",
        help="SQL condition over the selection view (samples joined with scores and "
        "duplicates when present), e.g. \"status = 'ok' AND width >= 256 AND NOT "
        "is_duplicate\" (default: status = 'ok')",
    )
    chosen.add_argument(
        "--select-sql",
        default=None,
        metavar="QUERY",
        help="a whole SQL query returning sample_id (its other columns go into the sidecars)",
    )
    parser.add_argument(
        "--samples-per-shard",
        type=int,
        default=DEFAULT_SAMPLES_PER_SHARD,
        metavar="N",
        help="samples per output shard; 0 for no count limit (default: %(default)s)",
    )
    parser.add_argument(
        "--max-shard-bytes",
        type=_size,
        default=None,
        metavar="B",
        help="largest output tar, e.g. 1000000000 or 1GB (a larger single sample gets a "
        "shard of its own)",
    )
    parser.add_argument(
        "--keys",
        choices=("keep", "renumber"),
        default="keep",
        help="keep source keys (made safe and unique) or renumber img2dataset-style "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--shuffle-seed",
        type=int,
        default=None,
        metavar="S",
        help="shuffle samples across output shards, reproducibly (default: stable order "
        "by source shard and key)",
    )
    parser.add_argument(
        "--skip-missing",
        action="store_true",
        help="leave out samples whose source shard no longer exists (counted in the summary)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress lines")
    add_tables_args(parser)
    add_spark_args(parser)


_UNITS = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12}
_UNITS.update({"KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40})


def _size(text: str) -> int:
    """``1000000``, ``500MB``, ``1GiB`` → bytes."""
    value = text.strip().upper()
    digits = value.rstrip("KMGTIB")
    unit = value[len(digits) :].strip()
    if unit not in _UNITS or not digits.strip():
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (e.g. 1000000, 500MB, 1GiB)")
    try:
        return int(float(digits) * _UNITS[unit])
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"not a size: {text!r}") from error


def run(args: argparse.Namespace) -> int:
    from imgcurate.select import SelectionError
    from imgcurate.stages.reshard import ReshardError, ReshardOptions, run_reshard

    options = ReshardOptions(
        dest=args.dest,
        where=args.where,
        select_sql=args.select_sql,
        samples_per_shard=args.samples_per_shard or None,
        max_shard_bytes=args.max_shard_bytes,
        keys=args.keys,
        shuffle_seed=args.shuffle_seed,
        skip_missing=args.skip_missing,
    )
    spark = session(args, "imgcurate-reshard")
    try:
        summary = run_reshard(
            spark, args.tables, options, table_format=args.table_format, progress=not args.quiet
        )
    except (SelectionError, ReshardError) as error:
        raise ConfigError(str(error)) from error
    for line in summary.lines():
        print(line)
    return 0
