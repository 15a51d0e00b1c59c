"""The ``dedup`` stage: hash what is not hashed yet, find duplicates, rewrite ``duplicates``.

1. **Hashes** (incremental): samples with status ``ok`` and no row in
   ``hashes`` are read by byte range and hashed, one Spark task per source
   shard (:func:`imgcurate.dedup.hashes.hash_shard`); the rows are appended
   with the stage/commit pattern. ``embed`` may fill the same table while it
   decodes, in which case nothing is left to do here.
2. **Exact**, then **pHash** groups, each keeping one representative.
3. **Semantic**, on the embeddings of the samples the first two kept.
4. ``duplicates`` is rewritten as a whole (groups change when data is added)
   and the ``dedup`` view registered.

Running exact and pHash before semantic, with one keep rule, is what makes
"one representative is always kept per group" hold across methods: an
exact group lies inside a pHash group and both keep its best member, and
semantic dedup never sees the samples those two removed.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import pyarrow as pa

from imgcurate.dedup.groups import empty_rows, group_rows
from imgcurate.dedup.hashes import HASHES, hash_shard
from imgcurate.dedup.keep import KeepRule
from imgcurate.dedup.near import DEFAULT_DISTANCE
from imgcurate.dedup.semantic import SemanticConfig, eps_column, semantic_duplicates
from imgcurate.dedup.view import register_dedup_view
from imgcurate.spark.pershard import ProgressReporter, map_shards, one_shard_per_partition
from imgcurate.spark.tables import TablesError, TableStore, new_run_id

log = logging.getLogger(__name__)

METHODS = ("exact", "phash", "semantic")


@dataclass(frozen=True)
class DedupOptions:
    """What to run. ``methods`` empty: exact and phash, plus semantic when embeddings exist."""

    methods: tuple[str, ...] = ()
    phash_distance: int = DEFAULT_DISTANCE
    keep: KeepRule = field(default_factory=KeepRule)
    semantic: SemanticConfig = field(default_factory=SemanticConfig)
    #: Embedding model to deduplicate on; needed only when the table holds several.
    model: str | None = None


@dataclass
class MethodCount:
    groups: int = 0
    members: int = 0
    removed: int = 0
    new: int = 0


@dataclass
class DedupSummary:
    """What one dedup run did; printed at the end and returned to callers."""

    samples: int = 0
    hashed: int = 0
    hash_shards: int = 0
    hash_errors: dict[str, int] = field(default_factory=dict)
    methods: dict[str, MethodCount] = field(default_factory=dict)
    eps_removed: dict[float, int] = field(default_factory=dict)
    vectors: int = 0
    clusters: int = 0
    removed: int = 0
    seconds: float = 0.0

    def lines(self) -> list[str]:
        out = [
            f"dedup: {self.samples} samples, {self.removed} duplicates removed "
            f"({self.samples - self.removed} kept), {self.seconds:.1f}s"
        ]
        if self.hashed:
            errors = ", ".join(f"{k}={v}" for k, v in sorted(self.hash_errors.items()))
            out.append(
                f"  hashed {self.hashed} new samples in {self.hash_shards} shards"
                + (f" ({errors})" if errors else "")
            )
        for method, count in self.methods.items():
            line = (
                f"  {method}: {count.groups} groups, {count.members} samples in groups, "
                f"{count.removed} removed ({count.new} not removed by an earlier method)"
            )
            if method == "semantic":
                line += f"; {self.vectors} embeddings in {self.clusters} clusters"
            out.append(line)
        for eps, removed in self.eps_removed.items():
            out.append(f"  semantic at eps {eps:g}: {removed} would be removed")
        return out


def run_dedup(
    spark,
    tables_dir: str,
    options: DedupOptions | None = None,
    table_format: str = "parquet",
    progress: bool = True,
) -> DedupSummary:
    """Find duplicates among the samples of ``tables_dir`` and rewrite ``duplicates``."""
    from pyspark.sql import functions as F

    started = time.time()
    options = options or DedupOptions()
    store = TableStore(spark, tables_dir, table_format)
    store.recover()
    methods = _methods(store, options)
    summary = DedupSummary()
    images = (
        store.read("samples")
        .filter((F.col("status") == "ok") & F.col("image_ext").isNotNull())
        .select("sample_id", "shard", "members", "image_ext", "sha256", "width", "height")
    )
    if "exact" in methods or "phash" in methods:
        update_hashes(spark, store, images, summary, progress)
    preferences = _preferences(store, options.keep)
    parts = []
    if "exact" in methods or "phash" in methods:
        hashes = _hashes(store, images)
        if "exact" in methods:
            parts.append(_exact_rows(hashes, preferences, options.keep))
        if "phash" in methods:
            parts.append(_phash_rows(spark, hashes, preferences, options))
    if "semantic" in methods:
        removed = [p.filter("is_duplicate").select("sample_id") for p in parts]
        parts.append(_semantic_rows(spark, store, images, removed, preferences, options, summary))
    frame = empty_rows(spark)
    for part in parts:
        frame = frame.unionByName(part, allowMissingColumns=True)
    store.overwrite("duplicates", frame)
    register_dedup_view(spark, store)
    _count(store, images, methods, options.semantic.eps, summary)
    summary.seconds = time.time() - started
    return summary


def _methods(store: TableStore, options: DedupOptions) -> tuple[str, ...]:
    unknown = set(options.methods) - set(METHODS)
    if unknown:
        raise ValueError(f"unknown dedup methods {sorted(unknown)}; use {METHODS}")
    if options.methods:
        return tuple(m for m in METHODS if m in options.methods)
    return ("exact", "phash") + (("semantic",) if store.exists("embeddings") else ())


# -- hashes -------------------------------------------------------------------------------------


def update_hashes(spark, store: TableStore, images, summary: DedupSummary, progress: bool) -> None:
    """Hash every image without a row in ``hashes``; one task per shard; commit as one run."""
    from pyspark import StorageLevel
    from pyspark.sql import functions as F

    todo = images
    if store.exists("hashes"):
        todo = todo.join(store.read("hashes").select("sample_id"), "sample_id", "left_anti")
    member = F.col("members")[F.col("image_ext")]
    per_shard = (
        todo.select(
            "shard",
            F.struct(
                "sample_id", member["offset"].alias("offset"), member["size"].alias("size")
            ).alias("image"),
        )
        .groupBy("shard")
        .agg(F.collect_list("image").alias("images"))
        .join(store.read("shards").select("shard", "path"), "shard")
        .persist(StorageLevel.DISK_ONLY)
    )
    shards = [row["shard"] for row in per_shard.select("shard").collect()]
    if not shards:
        per_shard.unpersist()
        return
    counter = spark.sparkContext.accumulator(0)
    frame = one_shard_per_partition(spark, per_shard, shards)
    output = map_shards(frame, _hash_task, HASHES, counter)
    run_id = new_run_id()
    with ProgressReporter(spark, "dedup hashes", len(shards), counter, enabled=progress):
        store.stage(run_id, "hashes", output)
    staged = spark.read.parquet(store.staged_path(run_id, "hashes"))
    counts = {r["status"]: r["count"] for r in staged.groupBy("status").count().collect()}
    store.commit(run_id, ["hashes"])
    per_shard.unpersist()
    summary.hash_shards = len(shards)
    summary.hashed = sum(counts.values())
    summary.hash_errors = {k: v for k, v in counts.items() if k != "ok"}


def _hash_task(shard_row: dict) -> pa.Table:
    images = [(i["sample_id"], i["offset"], i["size"]) for i in shard_row["images"]]
    return hash_shard(shard_row["path"], images)


def _hashes(store: TableStore, images):
    """``(sample_id, phash, pixel_hash, sha256)`` for every image (hashes may be null)."""
    from pyspark.sql import functions as F

    good = (
        store.read("hashes")
        .filter(F.col("status") == "ok")
        .select("sample_id", "phash", "pixel_hash")
        .dropDuplicates(["sample_id"])
    )
    return images.select("sample_id", "sha256").join(good, "sample_id", "left")


# -- methods -----------------------------------------------------------------------------------


def _preferences(store: TableStore, keep: KeepRule):
    """``(sample_id, pixels, score)``: what the keep rule ranks group members by."""
    from pyspark.sql import functions as F

    samples = store.read("samples").select(
        "sample_id", (F.col("width").cast("long") * F.col("height")).alias("pixels")
    )
    if keep.name != "best":
        return samples.withColumn("score", F.lit(None).cast("double"))
    for table in ("scores", "embeddings", "samples"):
        if store.exists(table) and keep.column in store.read(table).columns:
            scores = (
                store.read(table)
                .groupBy("sample_id")
                .agg(F.max(F.col(keep.column).cast("double")).alias("score"))
            )
            return samples.join(scores, "sample_id", "left")
    raise TablesError(
        f"--keep best:{keep.column}: no column {keep.column!r} in scores, embeddings or samples"
    )


def _exact_rows(hashes, preferences, keep: KeepRule):
    from imgcurate.dedup.exact import exact_groups

    rows = group_rows(exact_groups(hashes), preferences, keep, "exact")
    return rows.localCheckpoint(eager=True)


def _phash_rows(spark, hashes, preferences, options: DedupOptions):
    from imgcurate.dedup.near import phash_groups

    hashed = hashes.filter("phash IS NOT NULL").select("sample_id", "phash")
    groups = phash_groups(spark, hashed, options.phash_distance)
    rows = group_rows(groups, preferences, options.keep, "phash")
    return rows.localCheckpoint(eager=True)


def _semantic_rows(spark, store, images, removed, preferences, options, summary):
    """Semantic rows over the embeddings of images that exact and pHash dedup kept."""
    from pyspark.sql import functions as F

    embeddings = store.read("embeddings")
    if "status" in embeddings.columns:
        embeddings = embeddings.filter(F.col("status") == "ok")
    embeddings = embeddings.filter(F.col("vector").isNotNull())
    embeddings = _one_model(embeddings, options.model)
    embeddings = embeddings.select("sample_id", "vector").join(
        images.select("sample_id"), "sample_id", "left_semi"
    )
    for gone in removed:
        embeddings = embeddings.join(gone, "sample_id", "left_anti")
    started = time.time()
    rows, info = semantic_duplicates(spark, embeddings, preferences, options.semantic)
    summary.vectors, summary.clusters = info["vectors"], info["clusters"]
    if rows is None:
        return empty_rows(spark)
    rows = rows.localCheckpoint(eager=True)
    log.info(
        "semantic: %d embeddings in %d clusters, %.1fs",
        info["vectors"],
        info["clusters"],
        time.time() - started,
    )
    return rows


def _one_model(embeddings, model: str | None):
    from pyspark.sql import functions as F

    if "model" not in embeddings.columns:
        return embeddings
    if model:
        return embeddings.filter(F.col("model") == model)
    models = sorted(r["model"] for r in embeddings.select("model").distinct().collect())
    if len(models) > 1:
        raise TablesError(
            f"embeddings hold several models ({', '.join(map(str, models))}); "
            "pass --model to choose the one to deduplicate on"
        )
    return embeddings


# -- summary -----------------------------------------------------------------------------------


def _count(store, images, methods, eps, summary: DedupSummary) -> None:
    from pyspark.sql import functions as F

    summary.samples = images.count()
    duplicates = store.read("duplicates")
    per_method = {
        r["method"]: r
        for r in duplicates.groupBy("method")
        .agg(
            F.countDistinct("group_id").alias("groups"),
            F.count("*").alias("members"),
            F.sum(F.col("is_duplicate").cast("int")).alias("removed"),
        )
        .collect()
    }
    earlier = None
    for method in methods:
        row = per_method.get(method)
        count = MethodCount()
        if row is not None:
            count = MethodCount(row["groups"], row["members"], int(row["removed"] or 0))
        removed = duplicates.filter((F.col("method") == method) & F.col("is_duplicate"))
        ids = removed.select("sample_id")
        count.new = (ids.join(earlier, "sample_id", "left_anti") if earlier else ids).count()
        earlier = ids if earlier is None else earlier.unionByName(ids)
        summary.methods[method] = count
    summary.removed = (
        duplicates.filter(F.col("is_duplicate")).select("sample_id").distinct().count()
    )
    if "semantic" in methods and len(eps) > 1:
        for value in eps:
            column = eps_column(value)
            if column in duplicates.columns:
                summary.eps_removed[value] = duplicates.filter(F.col(column)).count()
