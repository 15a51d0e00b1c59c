"""``imgcurate demo``: build a small real-photo dataset and curate it end to end, locally.

The demo runs the real pipeline (scan, embed, dedup, reshard) on shards it
writes from photographs bundled with scikit-image. Machines running the demo
are often offline, so the embedder is a tiny CLIP-shaped model with random
weights: every number it produces is meaningless and the output says so. On
a machine with the published weights, ``imgcurate run`` with
``conf/pipeline-local.yaml`` does the same with real models.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from imgcurate.commands.common import add_spark_args, session

DEMO_MODEL = "openclip:imgcurate-tiny-clip"

DEMO_QUERIES = (
    "SELECT status, count(*) AS samples FROM samples GROUP BY status ORDER BY samples DESC",
    "SELECT sample_id, width, height, round(aesthetic, 2) AS aesthetic, "
    "round(clip_score, 3) AS clip_score, is_duplicate, caption FROM selection "
    "WHERE status = 'ok' ORDER BY sample_id LIMIT 8",
    "SELECT methods, count(*) AS removed FROM dedup WHERE is_duplicate GROUP BY methods",
    "SELECT output_shard, count(*) AS samples FROM reshard GROUP BY output_shard "
    "ORDER BY output_shard",
)


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="run the whole pipeline on a generated dataset of real photos",
        description="Write img2dataset-style shards of bundled photographs (with planted "
        "copies), then scan, embed (tiny model, RANDOM weights), dedup and reshard them, "
        "and query the tables. Everything stays under --workdir.",
    )
    parser.add_argument(
        "--workdir", default="imgcurate-demo", help="where to put shards and tables"
    )
    parser.add_argument("--shards", type=int, default=4)
    parser.add_argument("--samples-per-shard", type=int, default=25)
    add_spark_args(parser)
    parser.set_defaults(run=run)


def demo_config(workdir: Path):
    """The pipeline the demo runs: every stage, a tiny random-weight model, local tables."""
    from imgcurate.config import parse_config

    return parse_config(
        {
            "input": str(workdir / "shards"),
            "tables": str(workdir / "tables"),
            "embed": {"model": DEMO_MODEL, "random_weights": True},
            "dedup": {"semantic": "off"},
            "select": {"where": "status = 'ok' AND NOT is_duplicate"},
            "reshard": {"dest": str(workdir / "curated"), "samples_per_shard": 30},
        },
        source="demo",
    )


def run(args: argparse.Namespace) -> int:
    from imgcurate import synth
    from imgcurate.commands.sql import register_all_views, render
    from imgcurate.spark.tables import TableStore
    from imgcurate.stages.pipeline import run_pipeline

    workdir = Path(args.workdir).resolve()
    shards = workdir / "shards"
    if not shards.exists():
        print(f"demo: writing {args.shards} img2dataset-style shards to {shards}")
        synth.make_img2dataset(
            shards, shards=args.shards, samples_per_shard=args.samples_per_shard, copies=0.1
        )
    config = demo_config(workdir)
    print(
        f"demo: embedding with {DEMO_MODEL} and RANDOM weights (offline demo): aesthetic, "
        "nsfw and clip_score values below are meaningless; use real weights for real scores"
    )
    spark = session(args, "imgcurate-demo")
    run_pipeline(spark, config)
    register_all_views(spark, TableStore(spark, config.tables))
    for query in DEMO_QUERIES:
        print(f'\ndemo: imgcurate sql --tables {config.tables} "{query}"')
        print(render(spark.sql(query).toPandas(), "table"))
    print(
        f"\ndemo: done. Curated shards are in {config.reshard.dest}. Query the tables:\n"
        f'  imgcurate sql --tables {config.tables} "SELECT * FROM selection LIMIT 10"'
    )
    return 0
