"""What Spark costs the embed stage, and what the JPEG fast path saves.

On the same generated shards (large JPEGs, so that decoding dominates a small
model), with the same parallelism, this measures images/s of

- decode only: byte-range reads, decode and the model's preprocessing, in the
  thread pool ``embed_shard`` uses (the CPU's ceiling);
- bare executor: :func:`imgcurate.embed.embed_shard` over the shards, in as
  many worker processes as Spark has task slots, one torch thread each (what
  PySpark gives a task: it sets ``OMP_NUM_THREADS`` to ``spark.task.cpus``);
- Spark: :func:`imgcurate.stages.embed.run_embed` on ``local[N]``, wall time
  (planning, grouping, the embed job, both tables' commits);

each with the fast JPEG path on and off, and prints the ratios Spark / bare
and fast / full. The model is the tiny CLIP with RANDOM weights: values are
meaningless, speed is what is measured. Workers are warmed up (processes
started, model loaded) before anything is timed.

    python bench/embed.py [--images 512] [--side 1536] [--slots 2] [--rounds 2]
"""

from __future__ import annotations

import argparse
import io
import multiprocessing
import os
import random
import shutil
import sys
import tarfile
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path

MODEL = "openclip:imgcurate-tiny-clip"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=512, help="images to generate")
    parser.add_argument("--per-shard", type=int, default=64, help="images per shard")
    parser.add_argument("--side", type=int, default=1536, help="about the longer image side")
    parser.add_argument("--slots", type=int, default=2, help="Spark local[N] and bare processes")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=2, help="repeat, keep the best of each")
    return parser


# -- data ------------------------------------------------------------------------------------


def make_shards(folder: Path, images: int, per_shard: int, side: int, seed: int = 0) -> None:
    """WebDataset shards of JPEGs scaled from the bundled photos to about ``side`` pixels."""
    import numpy as np
    from PIL import Image

    from imgcurate import synth

    photos = synth.load_photos()
    rng = random.Random(seed)
    plans = [
        (i, rng.uniform(0.8, 1.25), rng.randrange(50), rng.choice((85, 90, 95)))
        for i in range(images)
    ]

    def one(plan: tuple) -> tuple[str, bytes]:
        index, scale, roll, quality = plan
        photo = photos[index % len(photos)]
        image = Image.fromarray(np.roll(photo.pixels, roll, axis=1))
        factor = side / max(image.size) * scale
        image = image.resize((int(image.width * factor), int(image.height * factor)), Image.BICUBIC)
        out = io.BytesIO()
        image.save(out, "JPEG", quality=quality)
        return photo.caption, out.getvalue()

    with ThreadPoolExecutor(os.cpu_count() or 1) as pool:
        encoded = list(pool.map(one, plans))
    for start in range(0, images, per_shard):
        with tarfile.open(folder / f"{start // per_shard:05d}.tar", "w") as tar:
            for index in range(start, min(start + per_shard, images)):
                caption, data = encoded[index]
                synth.add_member(tar, f"{index:09d}.jpg", data)
                synth.add_member(tar, f"{index:09d}.txt", caption.encode())


def shard_refs(tables: Path) -> list[tuple[str, list[tuple]]]:
    """``(path, [(sample_id, offset, size, caption)])`` per shard: exactly what Spark embeds."""
    import pyarrow.parquet as pq

    paths = {r["shard"]: r["path"] for r in pq.read_table(tables / "shards").to_pylist()}
    refs: dict[str, list[tuple]] = {}
    for row in pq.read_table(tables / "samples").to_pylist():
        if row["status"] != "ok" or row["image_ext"] is None:
            continue
        member = dict(row["members"])[row["image_ext"]]
        ref = (row["sample_id"], member["offset"], member["size"], row["caption"])
        refs.setdefault(row["shard"], []).append(ref)
    return [(paths[shard], refs[shard]) for shard in sorted(refs)]


# -- bare worker processes ------------------------------------------------------------------

_models = None


def _init_worker() -> None:
    """A worker as PySpark starts one: one torch thread, the models loaded once."""
    global _models
    os.environ["OMP_NUM_THREADS"] = "1"
    os.environ["HF_HUB_OFFLINE"] = "1"
    import torch

    from imgcurate.models import ModelSpec, load_models

    torch.set_num_threads(1)
    _models = load_models(ModelSpec(MODEL, random_weights=True), "cpu")


def _ready(_: int) -> int:
    time.sleep(0.2)
    return os.getpid()


def _embed(job: tuple) -> int:
    from imgcurate.embed import embed_shard

    path, refs, batch_size, fast = job
    return embed_shard(path, refs, _models, batch_size=batch_size, fast_decode=fast).num_rows


def _decode(job: tuple) -> int:
    """Read, decode and preprocess one shard's images as embed_shard does, without the model."""
    from imgcurate.images.decode import decode_image
    from imgcurate.io.ranges import read_ranges

    path, refs, _, fast = job
    min_side = 2 * _models.embedder.image_size if fast else None

    def prepare(data: bytes):
        return _models.embedder.preprocess(decode_image(data, min_side))

    ranges = [(i, offset, size) for i, (_, offset, size, _) in enumerate(refs)]
    with ThreadPoolExecutor(min(16, os.cpu_count() or 1)) as pool:
        return sum(1 for _ in pool.map(prepare, (data for _, data in read_ranges(path, ranges))))


def warm_pool(slots: int) -> ProcessPoolExecutor:
    """A pool whose every process has started and loaded the models."""
    pool = ProcessPoolExecutor(
        slots, mp_context=multiprocessing.get_context("spawn"), initializer=_init_worker
    )
    pids: set[int] = set()
    while len(pids) < slots:
        pids |= set(pool.map(_ready, range(slots * 2)))
    return pool


def time_pool(pool, fn, shards, batch_size: int, fast: bool) -> float:
    jobs = [(path, refs, batch_size, fast) for path, refs in shards]
    start = time.perf_counter()
    count = sum(pool.map(fn, jobs))
    return count / (time.perf_counter() - start)


# -- Spark -----------------------------------------------------------------------------------


def time_spark(spark, base: Path, name: str, batch_size: int, fast: bool) -> tuple[float, float]:
    """Images/s of a whole ``run_embed`` on a fresh copy of the scan tables, and of its waves.

    The second number leaves out the driver's planning (model plan, listing
    pending samples), so the two show Spark's fixed cost per run.
    """
    from imgcurate.stages.embed import EmbedOptions, run_embed

    tables = base.parent / name
    for table in ("samples", "shards"):
        shutil.copytree(base / table, tables / table)
    options = EmbedOptions(
        model=MODEL, random_weights=True, batch_size=batch_size, fast_decode=fast
    )
    start = time.perf_counter()
    summary = run_embed(spark, str(tables), options, progress=False)
    seconds = time.perf_counter() - start
    if summary.ok != summary.eligible:
        raise RuntimeError(f"Spark embedded {summary.ok} of {summary.eligible} images")
    return summary.images / seconds, summary.images / summary.embed_seconds


def subset_tables(base: Path, dest: Path, shards: int) -> Path:
    """Scan tables of the first ``shards`` shards only (to warm the workers up on)."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    keep = pa.array(pq.read_table(base / "shards").column("shard").to_pylist()[:shards])
    for name in ("samples", "shards"):
        table = pq.read_table(base / name)
        (dest / name).mkdir(parents=True)
        pq.write_table(
            table.filter(pc.is_in(table["shard"], value_set=keep)), dest / name / "a.parquet"
        )
    return dest


# -- report ----------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from imgcurate.spark.session import get_spark
    from imgcurate.stages.scan import run_scan

    with tempfile.TemporaryDirectory(prefix="bench-embed-") as tmp:
        scratch = Path(tmp)
        (scratch / "shards").mkdir()
        make_shards(scratch / "shards", args.images, args.per_shard, args.side)
        spark = get_spark(master=f"local[{args.slots}]", app_name="bench-embed")
        base = scratch / "tables"
        run_scan(spark, str(scratch / "shards"), str(base), progress=False)
        shards = shard_refs(base)
        images = sum(len(refs) for _, refs in shards)
        mean_kb = sum(s for _, refs in shards for _, _, s, _ in refs) / images / 1e3

        warm = subset_tables(base, scratch / "warm", args.slots)
        results: dict[str, dict[bool, float]] = {}

        def keep_best(label: str, fast: bool, rate: float) -> None:
            results.setdefault(label, {})
            results[label][fast] = max(results[label].get(fast, 0.0), rate)

        with warm_pool(args.slots) as pool:
            for round_ in range(args.rounds):
                # Python workers that sat idle for a minute are gone: warm them up again.
                time_spark(spark, warm, f"warm-{round_}", args.batch_size, True)
                for fast in (True, False):
                    name = f"run-{round_}-{fast}"
                    wall, waves = time_spark(spark, base, name, args.batch_size, fast)
                    keep_best("spark", fast, wall)
                    keep_best("spark waves", fast, waves)
                for fast in (True, False):
                    keep_best("bare", fast, time_pool(pool, _embed, shards, args.batch_size, fast))
                    keep_best("decode", fast, time_pool(pool, _decode, shards, 0, fast))
        spark.stop()

    print(f"model    {MODEL} + aesthetic,nsfw,clip_score, RANDOM WEIGHTS (speed only), CPU")
    print(
        f"data     {images} JPEGs in {len(shards)} shards, longer side ~{args.side} px, "
        f"{mean_kb:.0f} KB each; batch {args.batch_size}"
    )
    print(
        f"setup    Spark local[{args.slots}]; bare = {args.slots} processes, 1 torch thread "
        f"each; {os.cpu_count()} cores"
    )
    print(f"best of {args.rounds} rounds")
    print(f"{'images/s':<34}{'fast decode':>12}{'full decode':>13}{'fast/full':>11}")
    rows = [
        ("decode only", "decode"),
        ("bare executor (embed_shard)", "bare"),
        (f"Spark run_embed local[{args.slots}], wall", "spark"),
        ("Spark, embed waves only", "spark waves"),
    ]
    for label, key in rows:
        rate = results[key]
        ratio = rate[True] / rate[False]
        print(f"{label:<34}{rate[True]:>12.1f}{rate[False]:>13.1f}{ratio:>10.2f}x")
    for label, top, bottom in (
        ("Spark wall / bare", "spark", "bare"),
        ("Spark waves / bare", "spark waves", "bare"),
        ("bare / decode only", "bare", "decode"),
    ):
        high, low = results[top], results[bottom]
        print(f"{label:<34}{high[True] / low[True]:>12.2f}{high[False] / low[False]:>13.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
