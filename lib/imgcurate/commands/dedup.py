"""``imgcurate dedup``: find exact, perceptual and semantic duplicates."""

from __future__ import annotations

import argparse

from imgcurate.commands.common import ConfigError, add_spark_args, add_tables_args, session
from imgcurate.dedup.near import DEFAULT_DISTANCE


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "dedup",
        help="find duplicate images (exact, perceptual, semantic)",
        description="Group duplicate samples, keep one per group, and write the duplicates "
        "table and the dedup view (select with --where 'NOT is_duplicate'). With no method "
        "flag: exact and phash, plus semantic when the embeddings table exists.",
    )
    methods = parser.add_argument_group("methods")
    methods.add_argument("--exact", action="store_true", help="same bytes or same pixels")
    methods.add_argument("--phash", action="store_true", help="perceptual-hash near duplicates")
    methods.add_argument("--semantic", action="store_true", help="SemDeDup on the embeddings table")
    parser.add_argument(
        "--phash-distance",
        type=int,
        default=DEFAULT_DISTANCE,
        metavar="D",
        help="largest pHash Hamming distance (of 64 bits) of near duplicates "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--semantic-eps",
        default="0.01",
        metavar="EPS[,EPS...]",
        help="duplicate when cosine similarity > 1 - EPS; several values give one flag column "
        "each and the first decides is_duplicate (default: %(default)s)",
    )
    parser.add_argument(
        "--clusters", type=int, default=None, metavar="K", help="k-means clusters (default: √N)"
    )
    parser.add_argument(
        "--keep",
        default="hard",
        metavar="RULE",
        help="which member of a group stays: hard, easy, random or best:COLUMN "
        "(default: %(default)s; exact and phash groups keep the largest image unless best)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed for sampling and --keep random")
    parser.add_argument(
        "--model", default=None, help="embedding model to use when the table holds several"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress lines")
    add_tables_args(parser)
    add_spark_args(parser)
    parser.set_defaults(run=run)


def options_from_args(args: argparse.Namespace):
    """Check the arguments and turn them into :class:`DedupOptions`."""
    from imgcurate.dedup.keep import KeepRule, KeepRuleError
    from imgcurate.dedup.semantic import SemanticConfig
    from imgcurate.stages.dedup import DedupOptions

    try:
        keep = KeepRule.parse(args.keep, seed=args.seed)
        eps = tuple(float(v) for v in args.semantic_eps.split(",") if v.strip())
        semantic = SemanticConfig(eps=eps, clusters=args.clusters, keep=keep, seed=args.seed)
    except (KeepRuleError, ValueError) as error:
        raise ConfigError(str(error)) from error
    if not 0 <= args.phash_distance < 64:
        raise ConfigError(f"--phash-distance must be between 0 and 63, not {args.phash_distance}")
    if args.clusters is not None and args.clusters < 1:
        raise ConfigError("--clusters must be at least 1")
    methods = tuple(m for m in ("exact", "phash", "semantic") if getattr(args, m))
    return DedupOptions(
        methods=methods,
        phash_distance=args.phash_distance,
        keep=keep,
        semantic=semantic,
        model=args.model,
    )


def run(args: argparse.Namespace) -> int:
    from imgcurate.stages.dedup import run_dedup

    options = options_from_args(args)
    spark = session(args, "imgcurate-dedup")
    summary = run_dedup(
        spark, args.tables, options, table_format=args.table_format, progress=not args.quiet
    )
    for line in summary.lines():
        print(line)
    return 0
