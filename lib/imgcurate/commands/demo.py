"""``imgcurate demo``: build a small real-photo dataset and curate it end to end, locally."""

from __future__ import annotations

import argparse
from pathlib import Path

from imgcurate.commands.common import add_spark_args, session

DEMO_QUERIES = (
    "SELECT status, count(*) AS samples FROM samples GROUP BY status ORDER BY samples DESC",
    "SELECT sample_id, image_format, width, height, caption FROM samples "
    "WHERE status = 'ok' ORDER BY sample_id LIMIT 5",
    "SELECT shard, samples, ok, errors, status FROM shards ORDER BY shard",
)


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="run the pipeline on a generated dataset of real photos",
        description="Write a few img2dataset-style shards of bundled photographs, scan them "
        "and query the tables. Everything stays under --workdir.",
    )
    parser.add_argument(
        "--workdir", default="imgcurate-demo", help="where to put shards and tables"
    )
    parser.add_argument("--shards", type=int, default=4)
    parser.add_argument("--samples-per-shard", type=int, default=25)
    add_spark_args(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from imgcurate import synth
    from imgcurate.commands.sql import render
    from imgcurate.spark.tables import TableStore
    from imgcurate.stages.scan import run_scan

    workdir = Path(args.workdir).resolve()
    shards, tables = workdir / "shards", workdir / "tables"
    if not shards.exists():
        print(f"demo: writing {args.shards} img2dataset-style shards to {shards}")
        synth.make_img2dataset(shards, shards=args.shards, samples_per_shard=args.samples_per_shard)
    spark = session(args, "imgcurate-demo")
    print(f"demo: imgcurate scan --input {shards} --tables {tables}")
    for line in run_scan(spark, str(shards), str(tables)).lines():
        print(line)
    TableStore(spark, str(tables)).register_views()
    for query in DEMO_QUERIES:
        print(f'\ndemo: imgcurate sql --tables {tables} "{query}"')
        print(render(spark.sql(query).toPandas(), "table"))
    print(
        f"\ndemo: done. Query the tables yourself:\n  imgcurate sql --tables {tables} "
        f'"SELECT * FROM samples LIMIT 10"'
    )
    return 0
