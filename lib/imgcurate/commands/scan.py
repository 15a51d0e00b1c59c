"""``imgcurate scan``: index shards into the samples and shards tables."""

from __future__ import annotations

import argparse

from imgcurate.commands.common import add_spark_args, add_tables_args, session
from imgcurate.images.probe import DEFAULT_MAX_PIXELS


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "scan",
        help="index WebDataset shards into SQL tables",
        description="Index every sample of every shard into the samples and shards tables. "
        "Shards already scanned are skipped.",
    )
    parser.add_argument(
        "--input",
        required=True,
        metavar="PATTERN",
        help="folder, glob, brace range (data/{00000..00099}.tar), @manifest.txt, or URL",
    )
    parser.add_argument(
        "--root", default=None, help="dataset root that shard paths are relative to"
    )
    parser.add_argument(
        "--max-pixels",
        type=int,
        default=DEFAULT_MAX_PIXELS,
        help="images declaring more pixels get status too_large (default: %(default)s)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress lines")
    add_tables_args(parser)
    add_spark_args(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from imgcurate.stages.scan import run_scan

    spark = session(args, "imgcurate-scan")
    summary = run_scan(
        spark,
        args.input,
        args.tables,
        root=args.root,
        table_format=args.table_format,
        max_pixels=args.max_pixels,
        progress=not args.quiet,
    )
    for line in summary.lines():
        print(line)
    return 0
