"""Time semantic dedup (SemDeDup) at 10k, 100k and 1M embeddings and fit the growth exponent.

    python bench/dedup.py [--sizes 10000,100000,1000000] [--dim 768] [--dtype float32]

For each size N it writes a tables directory (not timed) holding a ``samples``
table and an ``embeddings`` table of N random unit vectors, 1 % of them
planted near-copies of others (cosine about 0.995), then times
``imgcurate dedup --semantic`` end to end through the stage: reading the
table, fitting k-means on a sample, assigning every vector, the per-cluster
walk, and writing ``duplicates``. It prints seconds per size, the recall of
the planted pairs (the copy or its source removed), and the exponent b of a
least-squares fit seconds ~ N^b (overall and per decade; fixed costs flatten
the small sizes).
"""

from __future__ import annotations

import argparse
import math
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from imgcurate import schema
from imgcurate.dedup.keep import KeepRule
from imgcurate.dedup.semantic import SemanticConfig, default_clusters
from imgcurate.spark.session import get_spark
from imgcurate.stages.dedup import DedupOptions, run_dedup

PLANTED = 0.01
CHUNK = 50_000


def write_tables(root: Path, count: int, dim: int, dtype: str, seed: int = 0) -> dict[str, str]:
    """Samples + embeddings tables for ``count`` vectors; returns ``{copy id: source id}``."""
    rng = np.random.default_rng(seed)
    (root / "samples").mkdir(parents=True)
    (root / "embeddings").mkdir()
    planted: dict[str, str] = {}
    for part, start in enumerate(range(0, count, CHUNK)):
        size = min(CHUNK, count - start)
        ids = [f"s.tar/{start + i:09d}" for i in range(size)]
        units = rng.standard_normal((size, dim), dtype=np.float32)
        copies = rng.random(size) < PLANTED
        copies[0] = False
        for row in np.flatnonzero(copies):
            source = int(rng.integers(0, row))
            noise = rng.standard_normal(dim, dtype=np.float32) * (0.1 / math.sqrt(dim))
            units[row] = units[source] / np.linalg.norm(units[source]) + noise
            planted[ids[row]] = ids[source]
        units /= np.linalg.norm(units, axis=1, keepdims=True)
        _write_part(root, part, ids, units, dtype)
    return planted


def _write_part(root: Path, part: int, ids: list[str], units: np.ndarray, dtype: str) -> None:
    rows = [
        {
            "sample_id": i,
            "shard": "s.tar",
            "key": i,
            "image_ext": "jpg",
            "status": "ok",
            "width": 512,
            "height": 512,
        }
        for i in ids
    ]
    pq.write_table(
        schema.table_from_rows(rows, schema.SAMPLES), root / f"samples/part-{part:05d}.parquet"
    )
    if dtype == "float16":
        raw = units.astype("<f2")
        vectors = pa.array([row.tobytes() for row in raw], pa.binary())
    else:
        flat = pa.array(units.ravel(), pa.float32())
        vectors = pa.FixedSizeListArray.from_arrays(flat, units.shape[1]).cast(
            pa.list_(pa.float32())
        )
    table = pa.table(
        {
            "sample_id": ids,
            "model": ["bench"] * len(ids),
            "status": ["ok"] * len(ids),
            "vector": vectors,
        }
    )
    pq.write_table(table, root / f"embeddings/part-{part:05d}.parquet")


def time_dedup(spark, root: Path, eps: tuple[float, ...]) -> tuple[float, object]:
    config = SemanticConfig(eps=eps, keep=KeepRule("hard"))
    options = DedupOptions(methods=("semantic",), semantic=config)
    started = time.time()
    summary = run_dedup(spark, str(root), options, progress=False)
    return time.time() - started, summary


def planted_recall(spark, root: Path, planted: dict[str, str]) -> float:
    """Share of planted pairs caught: the copy or its source removed."""
    from imgcurate.spark.tables import TableStore

    rows = TableStore(spark, str(root)).read("duplicates").filter("is_duplicate").collect()
    removed = {r["sample_id"] for r in rows}
    caught = sum(1 for copy, source in planted.items() if copy in removed or source in removed)
    return caught / len(planted) if planted else 1.0


def exponent(sizes: list[int], seconds: list[float]) -> float:
    slope, _ = np.polyfit(np.log(sizes), np.log(seconds), 1)
    return float(slope)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--dim", type=int, default=768)
    parser.add_argument("--dtype", choices=("float32", "float16"), default="float32")
    parser.add_argument("--eps", default="0.01,0.05")
    parser.add_argument("--workdir", default=None, help="where to write the tables (temporary)")
    parser.add_argument("--master", default="local[*]")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    eps = tuple(float(e) for e in args.eps.split(","))
    spark = get_spark(
        master=args.master,
        app_name="imgcurate-bench-dedup",
        conf={"spark.driver.memory": "6g", "spark.sql.shuffle.partitions": "64"},
    )
    work = Path(args.workdir or tempfile.mkdtemp(prefix="imgcurate-bench-dedup-"))
    warm = work / "warm-up"  # JVM, Python workers and Spark ML start once, untimed
    shutil.rmtree(warm, ignore_errors=True)
    write_tables(warm, 2000, args.dim, args.dtype)
    time_dedup(spark, warm, eps)
    shutil.rmtree(warm, ignore_errors=True)
    seconds = []
    print(f"semantic dedup, {args.dim}-d {args.dtype} unit vectors, {PLANTED:.0%} planted copies")
    print(f"{'N':>9} {'clusters':>8} {'seconds':>8} {'vec/s':>8} {'removed':>8} {'recall':>7}")
    for size in sizes:
        root = work / f"n{size}"
        shutil.rmtree(root, ignore_errors=True)
        planted = write_tables(root, size, args.dim, args.dtype)
        took, summary = time_dedup(spark, root, eps)
        seconds.append(took)
        recall = planted_recall(spark, root, planted)
        print(
            f"{size:>9} {default_clusters(size):>8} {took:>8.1f} {size / took:>8.0f} "
            f"{summary.removed:>8} {recall:>7.3f}",
            flush=True,
        )
        shutil.rmtree(root, ignore_errors=True)
    if len(sizes) > 1:
        print(f"growth exponent (least squares over all sizes): {exponent(sizes, seconds):.2f}")
        for n in range(1, len(sizes)):
            slope = math.log(seconds[n] / seconds[n - 1]) / math.log(sizes[n] / sizes[n - 1])
            print(f"  {sizes[n - 1]} -> {sizes[n]}: {slope:.2f}")
    spark.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
