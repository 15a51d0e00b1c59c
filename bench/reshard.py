"""Reshard throughput next to a plain copy of the same bytes, same machine, same run.

Measures, over the same source shards (page cache warm for both, since the
scan has just read them):

- plain copy: ``shutil.copyfileobj`` of every source tar into a scratch folder,
  one stream (what moving these bytes costs on this disk);
- writer alone: :func:`imgcurate.reshard.write_shard` called in a loop without
  Spark, one stream like the copy (what the per-shard code costs);
- reshard, write phase: the Spark job that writes the output shards (one task
  per output shard: byte-range reads, deterministic headers, rename);
- reshard, end to end: selection, source checks, assignment, writing, manifest;

and prints MB/s for each with the ratio to the plain copy. The reshard is timed
after an untimed warm-up run (``--warmup``), as it would run inside a long
job; the first run in a fresh JVM is slower. Shards are generated
from scikit-image's sample photos unless ``--shards`` names existing ones.

    python bench/reshard.py
    python bench/reshard.py --master 'local[8]' --num-shards 32 --per-shard 1000
    python bench/reshard.py --shards '/data/shards/*.tar' --shuffle-seed 1
"""

from __future__ import annotations

import argparse
import glob
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shards", default=None, help="existing shards (folder or glob)")
    parser.add_argument("--num-shards", type=int, default=8, help="shards to generate")
    parser.add_argument("--per-shard", type=int, default=250, help="samples per generated shard")
    parser.add_argument("--side", type=int, default=512, help="longer side of generated images")
    parser.add_argument("--samples-per-shard", type=int, default=500, help="output shard size")
    parser.add_argument("--max-shard-bytes", type=int, default=None)
    parser.add_argument("--keys", choices=("keep", "renumber"), default="keep")
    parser.add_argument("--shuffle-seed", type=int, default=None)
    parser.add_argument("--master", default="local[*]")
    parser.add_argument("--workdir", default=None, help="scratch folder (default: a temp dir)")
    parser.add_argument(
        "--warmup", type=int, default=1, help="untimed reshard runs first (JVM and workers warm)"
    )
    return parser


def plain_copy(sources: list[str], folder: Path) -> tuple[int, float]:
    """Copy every source tar with shutil.copyfileobj; return (bytes, seconds)."""
    folder.mkdir(parents=True, exist_ok=True)
    total = 0
    started = time.perf_counter()
    for index, source in enumerate(sources):
        with open(source, "rb") as src, open(folder / f"{index:05d}.tar", "wb") as dst:
            shutil.copyfileobj(src, dst, 8 * 1024 * 1024)
            dst.flush()
            os.fsync(dst.fileno())  # the reshard writer syncs each shard too
        total += os.path.getsize(source)
    return total, time.perf_counter() - started


def writer_alone(tables: str, folder: Path, per_shard: int) -> tuple[int, float]:
    """Write the same samples with write_shard in one process, no Spark; (bytes, seconds)."""
    import pyarrow.parquet as pq

    from imgcurate.io.tarwriter import safe_key
    from imgcurate.reshard import SampleCopy, write_shard

    paths = {r["shard"]: r["path"] for r in pq.read_table(tables + "/shards").to_pylist()}
    rows = [r for r in pq.read_table(tables + "/samples").to_pylist() if r["members"]]
    rows.sort(key=lambda r: (r["shard"], r["key"], r["sample_id"]))
    samples = [
        SampleCopy(
            safe_key(r["key"]),
            paths[r["shard"]],
            tuple((ext, m["offset"], m["size"]) for ext, m in r["members"]),
            r["sample_id"],
        )
        for r in rows
    ]
    total = 0
    started = time.perf_counter()
    for index in range(0, len(samples), per_shard):
        name = f"{index // per_shard:05d}"
        total += write_shard(str(folder), name, samples[index : index + per_shard]).bytes
    return total, time.perf_counter() - started


def rate(nbytes: int, seconds: float) -> float:
    return nbytes / 1e6 / seconds if seconds > 0 else 0.0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from imgcurate import synth
    from imgcurate.spark.session import get_spark
    from imgcurate.stages.reshard import ReshardOptions, run_reshard
    from imgcurate.stages.scan import run_scan

    work = Path(args.workdir or tempfile.mkdtemp(prefix="imgcurate-bench-reshard-"))
    if args.shards:
        pattern = args.shards
    else:
        pattern = str(work / "shards")
        print(f"generating {args.num_shards} x {args.per_shard} samples in {pattern}", flush=True)
        synth.make_webdataset(
            pattern, shards=args.num_shards, samples_per_shard=args.per_shard, max_side=args.side
        )
    spark = get_spark(master=args.master, app_name="imgcurate-bench-reshard")
    tables = str(work / "tables")
    print(run_scan(spark, pattern, tables, progress=False).lines()[0], flush=True)
    sources = sorted(
        r.path for r in spark.read.parquet(tables + "/shards").select("path").collect()
    )
    sources = [p for p in sources if os.path.exists(p)] or sorted(glob.glob(pattern))

    copied, copy_seconds = plain_copy(sources, work / "copy")
    shutil.rmtree(work / "alone", ignore_errors=True)
    writer_alone(tables, work / "alone", args.samples_per_shard)  # warm-up (imports)
    shutil.rmtree(work / "alone", ignore_errors=True)
    alone, alone_seconds = writer_alone(tables, work / "alone", args.samples_per_shard)
    options = ReshardOptions(
        dest=str(work / "out"),
        where="true",
        samples_per_shard=args.samples_per_shard,
        max_shard_bytes=args.max_shard_bytes,
        keys=args.keys,
        shuffle_seed=args.shuffle_seed,
    )
    for _ in range(args.warmup + 1):
        shutil.rmtree(options.dest, ignore_errors=True)
        summary = run_reshard(spark, tables, options, progress=False)
    copy_rate = rate(copied, copy_seconds)
    write_rate = rate(summary.written_bytes, summary.write_seconds)
    total_rate = rate(summary.bytes, summary.seconds)
    cores = spark.sparkContext.defaultParallelism
    print(f"machine: {os.cpu_count()} CPUs, Spark {args.master} ({cores} task slots)")
    print(
        f"plain copy      : {copied / 1e6:8.1f} MB in {copy_seconds:6.2f}s = {copy_rate:7.1f} MB/s"
    )
    alone_rate = rate(alone, alone_seconds)
    print(
        f"writer alone    : {alone / 1e6:8.1f} MB in {alone_seconds:6.2f}s = {alone_rate:7.1f} "
        f"MB/s  ratio {alone_rate / copy_rate:.2f}x of plain copy"
    )
    print(
        f"reshard (write) : {summary.written_bytes / 1e6:8.1f} MB in "
        f"{summary.write_seconds:6.2f}s = {write_rate:7.1f} MB/s  "
        f"ratio {write_rate / copy_rate:.2f}x of plain copy"
    )
    print(
        f"reshard (total) : {summary.bytes / 1e6:8.1f} MB in {summary.seconds:6.2f}s = "
        f"{total_rate:7.1f} MB/s  ratio {total_rate / copy_rate:.2f}x of plain copy"
    )
    print(f"  ({summary.samples} samples into {summary.shards} shards)")
    spark.stop()
    if not args.workdir:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
