"""The ``reshard`` stage: write the selected samples as new, exactly filled WebDataset shards.

Plan on the driver, copy on the executors, record the mapping::

    select ──▶ check sources ──▶ keys ──▶ assign (shard, position) ──▶ write ──▶ manifest
                (one row per        (keep:      (see below)          one task per     ``reshard``
                 source shard)       unique)                         OUTPUT shard      table

Assignment without a global sort
--------------------------------
Samples fall into *groups* that are processed in a fixed order: with the
stable order a group is a source shard (groups sorted by shard path,
samples inside by key); with ``--shuffle-seed`` a group is a hash bucket
``pmod(xxhash64(seed, sample_id), buckets)`` (samples inside ordered by that
hash). One window per group gives every sample its rank inside the group;
no step ever sorts all samples together.

Output shards are filled greedily in that order: a shard takes samples
while it has fewer than ``--samples-per-shard`` and the next sample's bytes
(headers and padding included, computed with the writer's own header
function) still fit in ``--max-shard-bytes``. So every shard is exactly full
except the last. The driver runs that fill one group at a time
(:class:`Packer`) and returns, per group, the shard and position of its
first sample and the ranks where a new shard starts; a broadcast join then
places every sample. What the driver reads:

* count limit only: one row per group (its sample count): small at any scale;
* with a byte limit: also each group's sample sizes, 8 bytes per sample,
  streamed one group at a time. Greedy filling is sequential by nature
  (where one shard ends decides where the next begins), so an exact fill
  needs the sizes in order; the driver never holds more than one group.

Sample keys: with ``--keys keep`` a key unsafe as a tar name is flattened
(:func:`imgcurate.io.tarwriter.safe_key`) and, when several selected
samples end with the same key, the second and later (by ``sample_id``)
become ``key#1``, ``key#2``; with ``--keys renumber`` keys are
img2dataset's ``shard * 10**k + position``.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from imgcurate import reshard as executor
from imgcurate.io import fs
from imgcurate.io.tarwriter import END_OF_ARCHIVE, OCCURRENCE_MARK, safe_key, sample_span
from imgcurate.select import select
from imgcurate.spark.pershard import ProgressReporter
from imgcurate.spark.tables import TableStore, new_run_id

log = logging.getLogger(__name__)

DEFAULT_SAMPLES_PER_SHARD = 10_000
#: With --shuffle-seed, samples per hash bucket (a bucket is ranked by one window task).
SHUFFLE_BUCKET_SAMPLES = 100_000
#: Renumbered keys are sized with a key this long (wider than any real one), see _with_sizes.
RENUMBER_KEY_BOUND = "0" * 20
#: Samples per task when ranking samples inside their groups (metadata rows only).
ROWS_PER_TASK = 200_000
#: Up to this many source shards are checked from the driver; more by a Spark job.
PROBE_ON_DRIVER = 64
PLAN_FILE = "_reshard.json"
MANIFEST = "reshard"
KEY_POLICIES = ("keep", "renumber")
_INTERNAL = ("_path", "_safe", "_new_key", "_group", "_rank", "_bytes", "_out", "_pos")

STATS = pa.schema(
    [
        ("shard", pa.string()),
        ("count", pa.int64()),
        ("bytes", pa.int64()),
        ("seconds", pa.float64()),
        ("read_bytes", pa.int64()),
        ("skipped", pa.bool_()),
    ]
)


class ReshardError(RuntimeError):
    """A problem the user must fix before resharding (missing sources, wrong dest, options)."""


@dataclass
class ReshardOptions:
    dest: str
    where: str | None = None
    select_sql: str | None = None
    samples_per_shard: int | None = DEFAULT_SAMPLES_PER_SHARD
    max_shard_bytes: int | None = None
    keys: str = "keep"
    shuffle_seed: int | None = None
    skip_missing: bool = False

    def check(self) -> None:
        if self.keys not in KEY_POLICIES:
            raise ReshardError(f"--keys must be one of {KEY_POLICIES}, not {self.keys!r}")
        if not self.samples_per_shard and not self.max_shard_bytes:
            raise ReshardError("give --samples-per-shard or --max-shard-bytes (or both)")
        if self.samples_per_shard is not None and self.samples_per_shard < 0:
            raise ReshardError("--samples-per-shard must be positive")
        minimum = 2 * 512 + len(END_OF_ARCHIVE)
        if self.max_shard_bytes is not None and self.max_shard_bytes < minimum:
            raise ReshardError(f"--max-shard-bytes must be at least {minimum}")


@dataclass
class ReshardSummary:
    """What one reshard run did; printed at the end and returned to callers."""

    dest: str = ""
    selected: int = 0
    samples: int = 0
    shards: int = 0
    written: int = 0
    complete: int = 0
    bytes: int = 0
    written_bytes: int = 0
    write_seconds: float = 0.0
    seconds: float = 0.0
    not_written: dict[str, int] = field(default_factory=dict)
    missing_shards: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        rate = self.written_bytes / 1e6 / self.write_seconds if self.write_seconds else 0.0
        out = [
            f"reshard: {self.shards} shards ({self.written} written, {self.complete} already "
            f"complete), {self.samples} samples, {self.bytes / 1e6:.1f} MB in {self.dest}, "
            f"{self.seconds:.1f}s, {rate:.1f} MB/s written"
        ]
        if self.not_written:
            counts = ", ".join(f"{k}={v}" for k, v in sorted(self.not_written.items()))
            out.append(f"  selected but not written (samples): {counts}")
        if self.missing_shards:
            shown = ", ".join(self.missing_shards[:5])
            more = (
                f" and {len(self.missing_shards) - 5} more" if len(self.missing_shards) > 5 else ""
            )
            out.append(f"  skipped missing source shards: {shown}{more}")
        return out


# -- the greedy fill ----------------------------------------------------------------------


@dataclass
class GroupPlan:
    """Where one group's samples go: rank 0 goes to ``(first_shard, first_position)``;
    each rank listed in ``bounds`` starts the next shard."""

    group: Any
    first_shard: int
    first_position: int
    bounds: list[int]


class Packer:
    """Fill output shards greedily, one group of samples at a time, in group order."""

    def __init__(self, max_samples: int | None, max_bytes: int | None) -> None:
        self.max_samples = max_samples or None
        self.capacity = max_bytes - len(END_OF_ARCHIVE) if max_bytes else None
        self.shard = 0
        self.count = 0
        self.fill = 0
        self.max_count = 0

    def add(self, group: Any, count: int, sizes: np.ndarray | None = None) -> GroupPlan:
        """Place ``count`` samples (their tar bytes in ``sizes`` when bytes are limited)."""
        plan = GroupPlan(group, self.shard, self.count, [])
        cumulative = None
        if self.capacity is not None:
            cumulative = np.concatenate(([0], np.cumsum(sizes, dtype=np.int64)))
        i = 0
        while i < count:
            take = self._room(i, count, cumulative)
            self.count += take
            if cumulative is not None:
                self.fill += int(cumulative[i + take] - cumulative[i])
            i += take
            if i < count:  # the shard is full: the next sample opens a new one
                self._close()
                plan.bounds.append(i)
        return plan

    def _room(self, i: int, count: int, cumulative: np.ndarray | None) -> int:
        """How many of the samples from ``i`` on still go into the current shard."""
        take = count - i
        if self.max_samples:
            take = min(take, self.max_samples - self.count)
        if cumulative is not None:
            limit = cumulative[i] + self.capacity - self.fill
            fits = int(np.searchsorted(cumulative, limit, side="right")) - 1 - i
            take = min(take, fits)
        if take <= 0 and self.count == 0:
            return 1  # a sample bigger than the limit gets a shard of its own
        return max(take, 0)

    def _close(self) -> None:
        self.max_count = max(self.max_count, self.count)
        self.shard, self.count, self.fill = self.shard + 1, 0, 0

    @property
    def shards(self) -> int:
        return self.shard + (1 if self.count else 0)

    @property
    def largest(self) -> int:
        return max(self.max_count, self.count)


def renumber_digits(samples_per_shard: int | None, largest: int) -> int:
    """img2dataset's index width: ceil(log10(samples per shard)), at least 1."""
    per_shard = samples_per_shard or largest
    return max(1, math.ceil(math.log10(max(per_shard, 1))))


# -- the stage ----------------------------------------------------------------------------


def run_reshard(
    spark,
    tables_dir: str,
    options: ReshardOptions,
    table_format: str = "parquet",
    progress: bool = True,
) -> ReshardSummary:
    """Write the samples that ``options`` selects from ``tables_dir`` as shards in ``dest``."""
    started = time.time()
    options.check()
    dest = _absolute(options.dest)
    summary = ReshardSummary(dest=dest)
    store = TableStore(spark, tables_dir, table_format)
    store.recover()
    selected = select(spark, store, options.where, options.select_sql)
    clash = [c for c in _INTERNAL if c in selected.columns]
    if clash:
        raise ReshardError(f"the selection has reserved column names {clash}; rename them")
    counts = _source_counts(selected)
    summary.selected = sum(sum(c.values()) for c in counts.values())
    summary.not_written = _not_written(counts)
    paths = _check_sources(spark, store, counts, options.skip_missing, summary)
    frame = _writable(spark, selected, paths)
    total = sum(counts[s]["ok"] for s in paths)
    if total == 0:
        summary.seconds = time.time() - started
        return summary
    partitions = max(spark.sparkContext.defaultParallelism, math.ceil(total / ROWS_PER_TASK))
    frame = _with_keys(frame, options.keys, partitions)
    frame = _with_order(frame, options.shuffle_seed, total, partitions, len(paths))
    if options.max_shard_bytes:
        frame = _with_sizes(frame, options.keys)
    from pyspark import StorageLevel

    frame = frame.persist(StorageLevel.MEMORY_AND_DISK)
    packer = Packer(options.samples_per_shard, options.max_shard_bytes)
    plans = [packer.add(*group) for group in _groups(frame, bool(options.max_shard_bytes))]
    digits = max(5, len(str(packer.shards - 1)))
    assigned = _assign(spark, frame, plans, options, packer)
    _claim_dest(dest, _plan_record(store, options, total, packer.shards, digits))
    run_id = new_run_id()
    write_started = time.time()
    results = _write(spark, assigned, dest, packer.shards, digits, progress)
    summary.write_seconds = time.time() - write_started
    _fill_summary(summary, results)
    _record_manifest(spark, store, assigned, dest, digits, run_id)
    _remove_temporaries(dest)
    frame.unpersist()
    summary.seconds = time.time() - started
    return summary


def _absolute(dest: str) -> str:
    return dest.rstrip("/") if fs.has_scheme(dest) else os.path.abspath(dest)


def _reason():
    """Why a selected sample cannot be copied (null when it can)."""
    from pyspark.sql import functions as F

    return (
        F.when(F.coalesce(F.size("members"), F.lit(0)) <= 0, F.lit("no_members"))
        .when(F.col("status") == "truncated", F.lit("truncated"))
        .otherwise(F.lit(None))
    )


def _source_counts(selected) -> dict[str, dict[str, int]]:
    """Per source shard: samples that can be written ("ok") and those that cannot, by reason."""
    from pyspark.sql import functions as F

    rows = (
        selected.select("shard", F.coalesce(_reason(), F.lit("ok")).alias("reason"))
        .groupBy("shard", "reason")
        .count()
        .collect()
    )
    counts: dict[str, dict[str, int]] = {}
    for row in rows:
        counts.setdefault(row["shard"], {"ok": 0})[row["reason"]] = row["count"]
    return counts


def _not_written(counts: dict[str, dict[str, int]]) -> dict[str, int]:
    out: dict[str, int] = {}
    for per_shard in counts.values():
        for reason, n in per_shard.items():
            if reason != "ok":
                out[reason] = out.get(reason, 0) + n
    return out


def _check_sources(spark, store, counts, skip_missing: bool, summary) -> dict[str, str]:
    """``{shard: path}`` of the source shards to read; refuse missing or changed ones."""
    wanted = {s for s, c in counts.items() if c["ok"]}
    if not wanted:
        return {}
    known = {
        row["shard"]: (row["path"], row["bytes"])
        for row in store.read("shards").select("shard", "path", "bytes").collect()
        if row["shard"] in wanted
    }
    jobs = [(s, *known.get(s, (None, None))) for s in sorted(wanted)]
    if len(jobs) <= PROBE_ON_DRIVER:
        problems = dict(p for job in jobs for p in _probe(job))
    else:
        slices = min(len(jobs), spark.sparkContext.defaultParallelism * 4)
        problems = dict(spark.sparkContext.parallelize(jobs, slices).flatMap(_probe).collect())
    changed = {s: p for s, p in problems.items() if p != "missing"}
    if changed:
        lines = "; ".join(f"{s}: {p}" for s, p in sorted(changed.items())[:5])
        raise ReshardError(f"{len(changed)} source shard(s) changed since scan ({lines}); rescan")
    missing = sorted(s for s, p in problems.items() if p == "missing")
    if missing and not skip_missing:
        samples = sum(counts[s]["ok"] for s in missing)
        shown = ", ".join(known.get(s, (s,))[0] or s for s in missing[:5])
        raise ReshardError(
            f"{len(missing)} source shard(s) holding {samples} selected samples no longer "
            f"exist: {shown}{' ...' if len(missing) > 5 else ''}. Restore them, or pass "
            "--skip-missing to leave their samples out"
        )
    for shard in missing:
        summary.not_written["missing_source"] = (
            summary.not_written.get("missing_source", 0) + counts[shard]["ok"]
        )
    summary.missing_shards = missing
    return {s: known[s][0] for s in sorted(wanted) if s not in missing}


def _probe(job: tuple[str, str | None, int | None]) -> list[tuple[str, str]]:
    """Run on executors: is the source shard still there, with the size scan saw?"""
    shard, path, expected = job
    if path is None:
        return [(shard, "missing")]
    try:
        size = fs.size_of(path)
    except FileNotFoundError:
        return [(shard, "missing")]
    if expected is not None and size != expected:
        return [(shard, f"{path} is {size} bytes, was {expected} when scanned")]
    return []


def _writable(spark, selected, paths: dict[str, str]):
    """Samples that can be copied, from sources that exist, with their source path."""
    from pyspark.sql import functions as F

    sources = spark.createDataFrame(list(paths.items()), "shard string, _path string")
    return selected.filter(_reason().isNull()).join(F.broadcast(sources), "shard")


def _with_keys(frame, policy: str, partitions: int):
    """Add ``_new_key`` (keep: safe and unique over the whole selection)."""
    if policy == "renumber":
        return frame
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    frame = frame.withColumn("_safe", _safe_key_udf()("key")).repartition(partitions, "_safe")
    occurrence = F.row_number().over(Window.partitionBy("_safe").orderBy("sample_id")) - 1
    return frame.withColumn(
        "_new_key",
        F.when(occurrence == 0, F.col("_safe")).otherwise(
            F.concat(F.col("_safe"), F.lit(OCCURRENCE_MARK), occurrence.cast("string"))
        ),
    ).drop("_safe")


def _safe_key_udf():
    from pyspark.sql import functions as F

    @F.pandas_udf("string")
    def safe(keys):
        return keys.map(safe_key)

    return safe


def _with_order(frame, seed: int | None, total: int, partitions: int, sources: int):
    """Add ``_group`` and ``_rank``: the group a sample is placed with, and its place in it.

    The window's shuffle gets an explicit partition count: the result is cached, and
    Spark does not shrink a cached plan's partitions (hundreds of near-empty tasks).
    """
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    if seed is None:
        groups = sources
        frame = frame.withColumn("_group", F.col("shard"))
        order = [F.col("key"), F.col("sample_id")]
    else:
        buckets = groups = max(1, math.ceil(total / SHUFFLE_BUCKET_SAMPLES))
        hashed = F.xxhash64(F.lit(int(seed)), F.col("sample_id"))
        frame = frame.withColumn("_hash", hashed)
        frame = frame.withColumn("_group", F.pmod(F.col("_hash"), F.lit(buckets)))
        order = [F.col("_hash"), F.col("sample_id")]
    frame = frame.repartition(min(partitions, groups), "_group")
    rank = F.row_number().over(Window.partitionBy("_group").orderBy(*order)) - 1
    return frame.withColumn("_rank", rank).drop("_hash")


def _with_sizes(frame, policy: str):
    """Add ``_bytes``: what the sample takes in the output tar, headers and padding included.

    Kept keys are final here, so the size is exact. Renumbered keys depend on
    the assignment, so they are sized with a 20-character key: tar headers
    depend on the name only when it passes 100 bytes, so this is exact
    unless an extension is longer than 79 characters (then it errs large,
    and shards stay under the limit).
    """
    from pyspark.sql import functions as F

    @F.pandas_udf("long")
    def sizes(keys, members):
        return keys.combine(members, lambda k, m: sample_span(k, _sizes_of(m)))

    key = F.col("_new_key") if policy == "keep" else F.lit(RENUMBER_KEY_BOUND)
    return frame.withColumn("_bytes", sizes(key, F.col("members")))


def _sizes_of(members) -> dict[str, int]:
    return {ext: value["size"] for ext, value in _member_items(members)}


def _member_items(members) -> list[tuple[str, dict]]:
    """A map column's value as ``(ext, {"offset", "size"})`` pairs (dict or list of pairs)."""
    return list(members.items()) if isinstance(members, dict) else list(members)


def _groups(frame, with_sizes: bool) -> Iterator[tuple[Any, int, np.ndarray | None]]:
    """``(group, count, sizes)`` in group order; sizes ordered by rank, only when needed."""
    from pyspark.sql import functions as F

    if not with_sizes:
        rows = frame.groupBy("_group").count().collect()
        for row in sorted(rows, key=lambda r: r["_group"]):
            yield row["_group"], row["count"], None
        return
    schema = f"_group {frame.schema['_group'].dataType.simpleString()}, n long, sizes binary"
    packed = (
        frame.select("_group", "_rank", "_bytes")
        .groupBy("_group")
        .applyInPandas(_pack_sizes, schema)
        .orderBy(F.col("_group"))
    )
    for row in packed.toLocalIterator(prefetchPartitions=True):
        yield row["_group"], row["n"], np.frombuffer(row["sizes"], dtype=np.int64)


def _pack_sizes(frame):
    """Run per group on executors: the sizes in rank order, as one compact binary value."""
    import pandas as pd

    ordered = frame.sort_values("_rank")
    blob = ordered["_bytes"].to_numpy(dtype=np.int64).tobytes()
    return pd.DataFrame({"_group": [frame["_group"].iloc[0]], "n": [len(frame)], "sizes": [blob]})


def _assign(spark, frame, plans: list[GroupPlan], options: ReshardOptions, packer: Packer):
    """Give every sample ``_out`` (output shard) and ``_pos`` (position in it); final keys."""
    from pyspark.sql import functions as F
    from pyspark.sql.types import ArrayType, LongType, StructField, StructType

    schema = StructType(
        [
            StructField("_group", frame.schema["_group"].dataType),
            StructField("_first_shard", LongType()),
            StructField("_first_pos", LongType()),
            StructField("_bounds", ArrayType(LongType())),
        ]
    )
    rows = [(p.group, p.first_shard, p.first_position, p.bounds) for p in plans]
    table = F.broadcast(spark.createDataFrame(rows, schema))
    passed = F.size(F.filter(F.col("_bounds"), lambda b: b <= F.col("_rank")))
    out = frame.join(table, "_group")
    out = out.withColumn("_out", F.col("_first_shard") + passed)
    out = out.withColumn(
        "_pos",
        F.when(passed == 0, F.col("_first_pos") + F.col("_rank")).otherwise(
            F.col("_rank") - F.element_at(F.col("_bounds"), passed)
        ),
    )
    if options.keys == "renumber":
        digits = renumber_digits(options.samples_per_shard, packer.largest)
        out = out.withColumn("_new_key", F.format_string(f"%05d%0{digits}d", "_out", "_pos"))
    return out.drop("_first_shard", "_first_pos", "_bounds", "_group", "_rank", "_bytes")


# -- dest: claim, write, record -----------------------------------------------------------


def _plan_record(store, options: ReshardOptions, total: int, shards: int, digits: int) -> dict:
    return {
        "format": executor.FORMAT_VERSION,
        "tables": store.root,
        "where": options.where,
        "select_sql": options.select_sql,
        "samples_per_shard": options.samples_per_shard,
        "max_shard_bytes": options.max_shard_bytes,
        "keys": options.keys,
        "shuffle_seed": options.shuffle_seed,
        "samples": total,
        "shards": shards,
        "digits": digits,
    }


def _claim_dest(dest: str, record: dict) -> None:
    """Refuse a dest holding other shards; note this plan there so a rerun can resume."""
    plan_path = fs.join(dest, PLAN_FILE)
    existing = executor.read_text(plan_path)
    if existing is not None:
        previous = json.loads(existing)
        if previous != record:
            changed = sorted(k for k in record if previous.get(k) != record[k])
            raise ReshardError(
                f"{dest} holds a different reshard (differs in: {', '.join(changed)}); "
                "write to a new --dest, or empty this one"
            )
        return
    if any(name.endswith(".tar") for name in executor.list_names(dest)):
        raise ReshardError(f"{dest} already holds .tar files not written by reshard")
    executor.make_dirs(dest)
    executor.put_bytes(plan_path, json.dumps(record, indent=1).encode())


def _write(spark, assigned, dest: str, shards: int, digits: int, progress: bool) -> list[dict]:
    """One task per output shard: rows are routed to partition ``_out`` and written there."""
    from pyspark.sql import functions as F

    counter = spark.sparkContext.accumulator(0)
    if hasattr(assigned, "repartitionById"):
        routed = assigned.repartitionById(shards, F.col("_out").cast("int"))
    else:  # Spark < 4.1: tasks may write several shards, each still whole
        routed = assigned.repartition(shards, "_out")
    from imgcurate.schema import spark_schema

    written = routed.mapInArrow(_write_task(dest, digits, counter), spark_schema(STATS))
    with ProgressReporter(spark, "reshard", shards, counter, enabled=progress):
        return [row.asDict() for row in written.collect()]


def _write_task(dest: str, digits: int, counter):
    """The function each write task runs over the rows routed to it."""

    def run(batches: Iterable[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        received = list(batches)
        if not received or not sum(b.num_rows for b in received):
            return
        table = pa.Table.from_batches(received)
        table = table.sort_by([("_out", "ascending"), ("_pos", "ascending")])
        outs = table.column("_out").to_numpy()
        starts = np.flatnonzero(np.r_[True, outs[1:] != outs[:-1]])
        for start, end in zip(starts, [*starts[1:], len(outs)], strict=True):
            rows = table.slice(start, end - start)
            name = executor.shard_name(int(outs[start]), digits)
            result = executor.write_shard(dest, name, _copies(rows), _sidecar(rows))
            if not result.skipped:
                counter.add(result.count)
            yield pa.RecordBatch.from_pylist([result.as_row()], schema=STATS)

    return run


def _copies(rows: pa.Table) -> list[executor.SampleCopy]:
    return [
        executor.SampleCopy(
            key=key,
            source=path,
            members=tuple((ext, m["offset"], m["size"]) for ext, m in _member_items(members)),
            sample_id=sample_id,
        )
        for key, path, members, sample_id in zip(
            rows.column("_new_key").to_pylist(),
            rows.column("_path").to_pylist(),
            rows.column("members").to_pylist(),
            rows.column("sample_id").to_pylist(),
            strict=True,
        )
    ]


def _sidecar(rows: pa.Table) -> pa.Table:
    """The shard's parquet: new key, sample id, source shard and key, then the selection."""
    first = ["_new_key", "sample_id", "shard", "key"]
    rest = [c for c in rows.column_names if c not in (*first, *_INTERNAL, "members")]
    return rows.select(first + rest).rename_columns(
        ["key", "sample_id", "source_shard", "source_key", *rest]
    )


def _fill_summary(summary: ReshardSummary, results: list[dict]) -> None:
    summary.shards = len(results)
    summary.samples = sum(r["count"] for r in results)
    summary.bytes = sum(r["bytes"] for r in results)
    summary.complete = sum(1 for r in results if r["skipped"])
    summary.written = summary.shards - summary.complete
    summary.written_bytes = sum(r["bytes"] for r in results if not r["skipped"])


def _record_manifest(spark, store: TableStore, assigned, dest: str, digits: int, run_id: str):
    """The ``reshard`` table: one row per written sample, output → source (this dest's rows
    replace those of an earlier run into the same dest)."""
    from pyspark.sql import functions as F

    rows = assigned.select(
        F.lit(dest).alias("dest"),
        F.format_string(f"%0{digits}d.tar", "_out").alias("output_shard"),
        F.col("_pos").alias("position"),
        F.col("_new_key").alias("key"),
        "sample_id",
        F.col("shard").alias("source_shard"),
        F.col("key").alias("source_key"),
        F.lit(run_id).alias("run_id"),
    )
    if store.exists(MANIFEST):
        earlier = store.read(MANIFEST)
        if earlier.filter(F.col("dest") == dest).limit(1).count():
            store.overwrite(MANIFEST, earlier.filter(F.col("dest") != dest).unionByName(rows))
            return
    store.stage(run_id, MANIFEST, rows)
    store.commit(run_id, [MANIFEST])


def _remove_temporaries(dest: str) -> None:
    """Temporary files left by failed or speculative task attempts (all tasks are done now)."""
    for name in executor.list_names(dest):
        if executor.TMP_MARK in name:
            try:
                executor.remove(fs.join(dest, name))
            except OSError as error:
                log.warning("could not remove %s: %s", name, error)
