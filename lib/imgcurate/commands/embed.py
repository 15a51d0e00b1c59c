"""``imgcurate embed``: embed and score scanned images into the embeddings and scores tables."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from imgcurate.commands.common import ConfigError, add_spark_args, add_tables_args, session
from imgcurate.commands.models import add_model_args

if TYPE_CHECKING:
    from imgcurate.stages.embed import EmbedOptions


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "embed",
        help="embed and score images into the embeddings and scores tables",
        description="Run an image embedder and its heads (aesthetic, NSFW, CLIP score) over "
        "every scanned image that has no scores for the model yet, one Spark task per shard "
        "on the task's GPU slot (or the CPU). Commits every --shards-per-commit shards.",
    )
    add_model_args(parser)
    weights = parser.add_mutually_exclusive_group()
    weights.add_argument(
        "--weights-dir",
        default=None,
        metavar="DIR",
        help="folder of weight files from 'imgcurate models fetch' "
        "(default: $IMGCURATE_WEIGHTS_DIR, then the caches)",
    )
    weights.add_argument(
        "--random-weights",
        action="store_true",
        help="untrained model and heads: meaningless values, for testing the plumbing",
    )
    parser.add_argument(
        "--no-download",
        dest="allow_download",
        action="store_false",
        help="never download weights, even when online",
    )
    parser.add_argument(
        "--batch-size",
        type=int,
        default=None,
        help="images per forward pass (default: 256 on a GPU, 64 on a CPU)",
    )
    parser.add_argument(
        "--precision",
        choices=("fp16", "bf16", "fp32"),
        default="fp16",
        help="autocast precision on CUDA (default: %(default)s; the CPU always uses fp32)",
    )
    parser.add_argument(
        "--fast-decode",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="decode large JPEGs at reduced scale, never below twice the model input (default: on)",
    )
    parser.add_argument(
        "--decode-threads",
        type=int,
        default=None,
        help="decoding threads per task (default: the machine's cores, at most 16)",
    )
    parser.add_argument(
        "--vector-dtype",
        choices=("float32", "float16"),
        default="float32",
        help="float32 lists, or float16 bytes at half the size (default: %(default)s)",
    )
    parser.add_argument(
        "--shards-per-commit",
        type=int,
        default=256,
        metavar="N",
        help="shards per Spark job and commit; a crash keeps the waves already committed "
        "(default: %(default)s)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress lines")
    add_tables_args(parser)
    add_spark_args(parser)
    parser.set_defaults(run=run)


def options_from_args(args: argparse.Namespace) -> EmbedOptions:
    from imgcurate.stages.embed import EmbedOptions

    return EmbedOptions(
        model=args.model,
        heads=args.heads,
        batch_size=args.batch_size,
        weights_dir=args.weights_dir,
        random_weights=args.random_weights,
        allow_download=args.allow_download,
        precision=args.precision,
        fast_decode=args.fast_decode,
        decode_threads=args.decode_threads,
        vector_dtype=args.vector_dtype,
        shards_per_commit=args.shards_per_commit,
    )


def run(args: argparse.Namespace) -> int:
    from imgcurate.stages.embed import EmbedError, plan_embed, run_embed

    try:
        options = options_from_args(args)
        plan_embed(options)  # a wrong model or missing weights fails before Spark starts
        spark = session(args, "imgcurate-embed")
        summary = run_embed(
            spark, args.tables, options, table_format=args.table_format, progress=not args.quiet
        )
    except EmbedError as error:
        raise ConfigError(str(error)) from error
    for line in summary.lines():
        print(line)
    return 0
