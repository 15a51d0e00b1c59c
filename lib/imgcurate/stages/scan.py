"""The ``scan`` stage: index every shard into the ``samples`` and ``shards`` tables.

Incremental: shards already in the ``shards`` table are skipped, so rerunning
on a growing folder scans only the new shards. The per-shard work is
:func:`imgcurate.io.tarindex.scan_shard`; this module only plans, runs and
commits.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field

import pyarrow as pa

from imgcurate import schema
from imgcurate.images.probe import DEFAULT_MAX_PIXELS
from imgcurate.io.listing import list_shards
from imgcurate.io.tarindex import scan_shard
from imgcurate.spark.pershard import ProgressReporter, map_shards, shard_frame
from imgcurate.spark.tables import TablesError, TableStore, new_run_id

log = logging.getLogger(__name__)

_SHARD_INPUT = pa.schema([("shard", pa.string()), ("path", pa.string())])


@dataclass
class ScanSummary:
    """What one scan run did; printed at the end and returned to callers."""

    listed: int = 0
    skipped: int = 0
    shards: int = 0
    samples: int = 0
    ok: int = 0
    by_status: dict[str, int] = field(default_factory=dict)
    shard_status: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    def lines(self) -> list[str]:
        rate = self.samples / self.seconds if self.seconds else 0.0
        out = [
            f"scan: {self.shards} shards scanned ({self.skipped} already done, "
            f"{self.listed} listed), {self.samples} samples, {self.ok} ok, "
            f"{self.samples - self.ok} not ok, {self.seconds:.1f}s ({rate:.1f} samples/s)"
        ]
        problems = {k: v for k, v in self.by_status.items() if k != "ok"}
        if problems:
            out.append("  samples by status: " + format_counts(problems))
        bad_shards = {k: v for k, v in self.shard_status.items() if k != "ok"}
        if bad_shards:
            out.append("  shards by status: " + format_counts(bad_shards))
        return out


def format_counts(counts: dict[str, int]) -> str:
    """``a=3, b=1``: counts largest first, for summary lines."""
    return ", ".join(f"{k}={v}" for k, v in sorted(counts.items(), key=lambda kv: -kv[1]))


def scan_task(max_pixels: int):
    """The per-shard function Spark runs: scan one tar, emit sample rows + one shard row."""

    def run(shard_input: dict) -> pa.Table:
        result = scan_shard(shard_input["path"], shard_input["shard"], max_pixels=max_pixels)
        rows = list(result.samples) + [{"shard": result.shard["shard"], "shard_row": result.shard}]
        return schema.table_from_rows(rows, schema.SCAN_OUTPUT)

    return run


def run_scan(
    spark,
    input_pattern: str,
    tables_dir: str,
    root: str | None = None,
    table_format: str = "parquet",
    max_pixels: int = DEFAULT_MAX_PIXELS,
    progress: bool = True,
) -> ScanSummary:
    """Scan the shards ``input_pattern`` names that are not yet in ``tables_dir``."""
    import time

    from pyspark import StorageLevel
    from pyspark.sql import functions as F

    started = time.time()
    store = TableStore(spark, tables_dir, table_format)
    store.recover()
    listing = list_shards(input_pattern, root)
    todo = _pending_shards(store, listing)
    summary = ScanSummary(listed=len(listing.shards), skipped=len(listing.shards) - len(todo))
    if not todo:
        summary.seconds = time.time() - started
        return summary
    counter = spark.sparkContext.accumulator(0)
    frame = shard_frame(spark, todo, _SHARD_INPUT)
    output = map_shards(
        frame, scan_task(max_pixels), schema.SCAN_OUTPUT, counter, count_column="sample_id"
    )
    output = output.persist(StorageLevel.DISK_ONLY)
    run_id = new_run_id()
    is_sample = F.col("sample_id").isNotNull()
    with ProgressReporter(spark, "scan", len(todo), counter, enabled=progress):
        store.stage(run_id, "samples", output.filter(is_sample).drop("shard_row"))
    store.stage(run_id, "shards", output.filter(~is_sample).select("shard_row.*"))
    store.commit(run_id, ["samples", "shards"])
    _fill_summary(summary, spark, store, run_id, output, is_sample)
    output.unpersist()
    summary.seconds = time.time() - started
    return summary


def _pending_shards(store: TableStore, listing) -> list[dict]:
    """Shards of the listing not yet scanned; refuse a clash with another dataset's shard."""
    wanted = {shard: listing.url(shard) for shard in listing.shards}
    if not store.exists("shards"):
        return [{"shard": s, "path": p} for s, p in wanted.items()]
    done = {
        row["shard"]: row["path"] for row in store.read("shards").select("shard", "path").collect()
    }
    for shard, path in wanted.items():
        if shard in done and done[shard] != path:
            raise TablesError(
                f"tables dir already holds shard {shard!r} scanned from {done[shard]!r}, "
                f"not {path!r}. Use one tables dir per dataset, or pass --root so that "
                "shard paths are relative to the same root as before."
            )
    return [{"shard": s, "path": p} for s, p in wanted.items() if s not in done]


def _fill_summary(summary: ScanSummary, spark, store, run_id, output, is_sample) -> None:
    from pyspark.sql import functions as F

    counts = output.filter(is_sample).groupBy("status").count().collect()
    summary.by_status = {row["status"]: row["count"] for row in counts}
    summary.samples = sum(summary.by_status.values())
    summary.ok = summary.by_status.get("ok", 0)
    shard_rows = output.filter(~is_sample).select(F.col("shard_row.status").alias("s")).collect()
    summary.shards = len(shard_rows)
    summary.shard_status = dict(Counter(row["s"] for row in shard_rows))
