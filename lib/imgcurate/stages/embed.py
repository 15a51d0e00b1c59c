"""The ``embed`` stage: embed and score every scanned image into ``embeddings`` and ``scores``.

Plan on the driver, embed on the executors, commit in waves::

    plan models ──▶ pending samples ──▶ waves of shards ──▶ one task per shard ──▶ commit
    (fail fast:      (status ok, an       (--shards-per-     (embed_shard on the    both tables,
     names, heads,    image member, no     commit each)       task's GPU slot)       per wave
     weight files)    scores row yet)

Incremental: a sample that already has a ``scores`` row for the model is not
embedded again, whatever its status, so a rerun embeds only shards scanned
since. A long run commits every ``shards_per_commit`` shards, so a crash late
in a GPU run keeps the waves that finished; the next run resumes at the first
shard without scores. The per-shard work is :func:`imgcurate.embed.embed_shard`;
this module only plans, runs and commits.

Tables (one row per sample and model):

- ``scores``: ``sample_id, model, status, error, aesthetic, nsfw, clip_score,
  weights``; a sample whose image failed to decode or read has a row with its
  status and error and null scores;
- ``embeddings``: ``sample_id, model, vector`` for samples with status ``ok``
  only (a failure has no row, never a null vector); ``vector`` is
  ``list<float32>``, or with ``vector_dtype="float16"`` the little-endian
  float16 bytes (``numpy.frombuffer(vector, "<f2")``). One tables dir keeps
  one vector type.
"""

from __future__ import annotations

import logging
import socket
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import pyarrow as pa

from imgcurate.config import ConfigError
from imgcurate.models.catalog import DEFAULT_MODEL
from imgcurate.schema import spark_schema
from imgcurate.spark.pershard import ProgressReporter, map_shards, one_shard_per_partition
from imgcurate.spark.tables import TablesError, TableStore, new_run_id
from imgcurate.stages.scan import format_counts

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

    from imgcurate.models.bundle import ModelSpec, Plan

log = logging.getLogger(__name__)

HASHES_TABLE = "hashes"
EMBEDDINGS = "embeddings"
SCORES = "scores"
DEFAULT_SHARDS_PER_COMMIT = 256
#: Default batch sizes when none is given: large on a GPU, moderate on a CPU.
GPU_BATCH_SIZE = 256
CPU_BATCH_SIZE = 64
VECTOR_DTYPES = ("float32", "float16")

_SAMPLE_REF = pa.struct(
    [
        ("sample_id", pa.string()),
        ("offset", pa.int64()),
        ("size", pa.int64()),
        ("caption", pa.string()),
    ]
)
#: What one embed task receives: a shard, its path, and the samples to embed in it.
EMBED_INPUT = pa.schema(
    [("shard", pa.string()), ("path", pa.string()), ("samples", pa.list_(_SAMPLE_REF))]
)


class EmbedError(ConfigError):
    """A bad option or model choice; the message names the fix (a user error, no traceback)."""


@dataclass(frozen=True)
class EmbedOptions:
    """What to embed with, and how; mirrors ``imgcurate embed``'s flags."""

    model: str = DEFAULT_MODEL
    heads: Sequence[str] | None = None  # None: every head that fits the model
    batch_size: int | None = None  # None: GPU_BATCH_SIZE on CUDA, CPU_BATCH_SIZE on a CPU
    weights_dir: str | None = None
    random_weights: bool = False
    allow_download: bool = True
    precision: str = "fp16"
    fast_decode: bool = True
    decode_threads: int | None = None
    vector_dtype: str = "float32"
    shards_per_commit: int = DEFAULT_SHARDS_PER_COMMIT

    def __post_init__(self) -> None:
        if self.heads is not None:
            object.__setattr__(self, "heads", tuple(self.heads))
        for name in ("batch_size", "decode_threads", "shards_per_commit"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise EmbedError(f"{name} must be at least 1, got {value}")
        if self.vector_dtype not in VECTOR_DTYPES:
            raise EmbedError(f"vector_dtype {self.vector_dtype!r}: use one of {VECTOR_DTYPES}")
        if self.random_weights and self.weights_dir:
            raise EmbedError("give either a weights dir or random weights, not both")

    def spec(self) -> ModelSpec:
        """The picklable model description that travels to executors."""
        from imgcurate.models.bundle import ModelSpec

        try:
            return ModelSpec(
                self.model,
                self.heads,
                self.weights_dir,
                self.random_weights,
                self.allow_download,
                self.precision,
            )
        except ValueError as error:
            raise EmbedError(str(error)) from error


def plan_embed(options: EmbedOptions) -> Plan:
    """Resolve the model, heads and weight files on the driver, before any Spark job.

    Raises :class:`EmbedError` for an unknown model or a head that does not
    fit, and :class:`~imgcurate.models.weights.MissingWeightsError` (a
    ``FileNotFoundError`` naming every file and the fetch command) for weights
    that are neither local nor downloadable.
    """
    from imgcurate.models.bundle import plan_models
    from imgcurate.models.catalog import UnknownModelError
    from imgcurate.models.heads import HeadMismatchError

    try:
        return plan_models(options.spec())
    except (UnknownModelError, HeadMismatchError) as error:
        raise EmbedError(str(error)) from error


@dataclass(frozen=True)
class ShardWork:
    """One shard with samples to embed."""

    shard: str
    path: str
    pending: int


@dataclass
class EmbedSummary:
    """What one embed run did; printed at the end and returned to callers."""

    model: str = ""
    weights: str = ""
    heads: tuple[str, ...] = ()
    random_weights: bool = False
    vector_dtype: str = "float32"
    eligible: int = 0
    already_done: int = 0
    shards: int = 0
    waves: int = 0
    images: int = 0
    ok: int = 0
    by_status: dict[str, int] = field(default_factory=dict)
    devices: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    embed_seconds: float = 0.0
    seconds: float = 0.0

    def lines(self) -> list[str]:
        heads = ",".join(self.heads) or "no heads"
        out = [
            f"embed: model {self.model} + {heads}, weights {self.weights}, "
            f"{self.vector_dtype} vectors"
        ]
        if self.images:
            rate = self.images / self.embed_seconds if self.embed_seconds else 0.0
            out.append(
                f"embed: {self.images} images in {self.shards} shards ({self.waves} commits), "
                f"{self.ok} ok, {self.images - self.ok} failed, {self.seconds:.1f}s "
                f"({rate:.1f} images/s while embedding)"
            )
        else:
            out.append("embed: nothing to embed")
        out.append(
            f"  {self.already_done} of {self.eligible} scanned images already had scores "
            "for this model (skipped)"
        )
        problems = {k: v for k, v in self.by_status.items() if k != "ok"}
        if problems:
            out.append("  images by status: " + format_counts(problems))
        if self.devices:
            out.append("  devices (images): " + format_counts(self.devices))
        out.extend(self.notes)
        if self.random_weights:
            out.append(
                "  WARNING: RANDOM WEIGHTS (--random-weights): the vectors and scores are "
                "meaningless, for testing the plumbing only; their rows say weights=random"
            )
        return out


class CountsParam:
    """A Spark accumulator of ``{label: count}``, merged by adding counts."""

    def zero(self, value: dict[str, int]) -> dict[str, int]:
        return {}

    def addInPlace(self, total: dict[str, int], more: dict[str, int]) -> dict[str, int]:
        for key, count in more.items():
            total[key] = total.get(key, 0) + count
        return total


def device_label(device) -> str:
    """``host cuda:0 (NVIDIA H100 80GB HBM3)`` or ``host cpu``: where a shard's images ran."""
    label = f"{socket.gethostname()} {device}"
    if getattr(device, "type", str(device)) == "cuda":
        import torch

        label += f" ({torch.cuda.get_device_name(device)})"
    return label


def embed_task(options: EmbedOptions, devices=None) -> Callable[[dict], pa.Table]:
    """The per-shard function Spark runs: load the models once per worker, embed one shard."""
    spec = options.spec()

    def run(shard_input: dict) -> pa.Table:
        from imgcurate.embed import embed_shard
        from imgcurate.models.bundle import load_models
        from imgcurate.models.device import task_device

        models = load_models(spec, task_device())
        on_gpu = models.device.type == "cuda"
        refs = [
            (s["sample_id"], s["offset"], s["size"], s["caption"]) for s in shard_input["samples"]
        ]
        hashes: dict[str, tuple[int, str]] = {}
        table = embed_shard(
            shard_input["path"],
            refs,
            models,
            hashes_out=hashes,
            batch_size=options.batch_size or (GPU_BATCH_SIZE if on_gpu else CPU_BATCH_SIZE),
            fast_decode=options.fast_decode,
            decode_threads=options.decode_threads,
            vector_dtype=options.vector_dtype,
        )
        label = device_label(models.device)
        if devices is not None:
            devices.add({label: table.num_rows})
        return _with_hashes(_with_placement(table, label), hashes)

    return run


def task_schema(vector_dtype: str) -> pa.Schema:
    """Rows a task returns: :func:`embed.output_schema` plus where the shard ran.

    ``device`` (``host cuda:0 (GPU name)``) and ``gpu_slot`` (the Spark GPU
    address(es) the task was given, null without a slot) land in ``scores``,
    so scheduling can be checked with SQL after the fact.
    """
    from imgcurate.embed import output_schema

    base = output_schema(vector_dtype)
    for name, kind in _EXTRA_COLUMNS:
        base = base.append(pa.field(name, kind))
    return base


#: Columns a task adds to :func:`embed.output_schema`: placement, then the dedup hashes.
_EXTRA_COLUMNS = (
    ("device", pa.string()),
    ("gpu_slot", pa.string()),
    ("phash", pa.int64()),
    ("pixel_hash", pa.string()),
)


def _with_hashes(table: pa.Table, hashes: dict[str, tuple[int, str]]) -> pa.Table:
    """Hashes of the images decoded at full size, for the ``hashes`` table dedup reads."""
    found = [hashes.get(sample_id) for sample_id in table.column("sample_id").to_pylist()]
    phashes = pa.array([h[0] if h else None for h in found], pa.int64())
    table = table.append_column("phash", phashes)
    return table.append_column("pixel_hash", pa.array([h[1] if h else None for h in found]))


def _with_placement(table: pa.Table, label: str) -> pa.Table:
    from imgcurate.models.device import spark_gpu_addresses

    addresses = spark_gpu_addresses()
    slot = ",".join(addresses) if addresses else None
    rows = table.num_rows
    table = table.append_column("device", pa.array([label] * rows, pa.string()))
    return table.append_column("gpu_slot", pa.array([slot] * rows, pa.string()))


def run_embed(
    spark: SparkSession,
    tables_dir: str,
    options: EmbedOptions,
    table_format: str = "parquet",
    progress: bool = True,
) -> EmbedSummary:
    """Embed and score the scanned images of ``tables_dir`` that have no scores for the model."""
    started = time.time()
    plan = plan_embed(options)
    summary = EmbedSummary(
        model=str(plan.model),
        weights=plan.weights,
        heads=tuple(plan.heads),
        random_weights=options.random_weights,
        vector_dtype=options.vector_dtype,
    )
    if options.random_weights:
        log.warning("embedding with RANDOM weights: vectors and scores will be meaningless")
    store = TableStore(spark, tables_dir, table_format)
    store.recover()
    _check_vector_type(store, options.vector_dtype)
    summary.notes += _weights_notes(store, summary.model, plan.weights)
    work, pending = _plan_work(store, summary)
    if work:
        pending = pending.persist(_disk_only())
        try:
            _run_waves(spark, store, pending, work, options, summary, progress)
        finally:
            pending.unpersist()
    summary.seconds = time.time() - started
    return summary


def _disk_only():
    from pyspark import StorageLevel

    return StorageLevel.DISK_ONLY


def _check_vector_type(store: TableStore, vector_dtype: str) -> None:
    """Refuse to append float16 bytes to a float32 table (or the reverse)."""
    from pyspark.sql.types import BinaryType

    if not store.exists(EMBEDDINGS):
        return
    stored_type = store.read(EMBEDDINGS).schema["vector"].dataType
    stored = "float16" if isinstance(stored_type, BinaryType) else "float32"
    if stored != vector_dtype:
        raise TablesError(
            f"the embeddings table in {store.root} stores {stored} vectors; pass "
            f"--vector-dtype {stored} to add to it, or use another tables dir for {vector_dtype}"
        )


def _weights_notes(store: TableStore, model: str, weights: str) -> list[str]:
    """Say so when earlier runs scored this model with other weights (e.g. random ones)."""
    from pyspark.sql import functions as F

    if not store.exists(SCORES):
        return []
    scores = store.read(SCORES).filter(F.col("model") == model)
    seen = [row[0] for row in scores.select("weights").distinct().limit(5).collect()]
    others = sorted(w for w in seen if w != weights)
    if not others:
        return []
    return [
        f"  WARNING: scores for {model} already exist with other weights ({'; '.join(others)}); "
        "samples that have them are not embedded again, so the tables now mix weights. "
        "Use a new tables dir to embed everything with these weights."
    ]


def _plan_work(store: TableStore, summary: EmbedSummary) -> tuple[list[ShardWork], DataFrame]:
    """Per shard, the samples that need embedding; fills the eligible/done counts.

    Eligible: scan status ``ok`` and an image member. Done: a ``scores`` row
    for this model exists (whatever its status, so failures are not retried
    forever). Returns the shards with pending samples, in name order, and the
    pending samples as a DataFrame.
    """
    from pyspark.sql import functions as F

    image = F.element_at(F.col("members"), F.col("image_ext"))
    eligible = (
        store.read("samples")
        .filter((F.col("status") == "ok") & F.col("image_ext").isNotNull())
        .select(
            "sample_id",
            "shard",
            image.getField("offset").alias("offset"),
            image.getField("size").alias("size"),
            "caption",
        )
        .filter(F.col("offset").isNotNull() & F.col("size").isNotNull())
    )
    if store.exists(SCORES):
        done = (
            store.read(SCORES)
            .filter(F.col("model") == summary.model)
            .select("sample_id")
            .distinct()
            .withColumn("_done", F.lit(True))
        )
        marked = eligible.join(done, "sample_id", "left")
    else:
        marked = eligible.withColumn("_done", F.lit(None).cast("boolean"))
    counts = (
        marked.groupBy("shard")
        .agg(F.count("*").alias("eligible"), F.count("_done").alias("done"))
        .join(store.read("shards").select("shard", "path"), "shard")
        .collect()
    )
    summary.eligible = sum(row["eligible"] for row in counts)
    summary.already_done = sum(row["done"] for row in counts)
    work = sorted(
        (
            ShardWork(row["shard"], row["path"], row["eligible"] - row["done"])
            for row in counts
            if row["eligible"] > row["done"]
        ),
        key=lambda w: w.shard,
    )
    return work, marked.filter(F.col("_done").isNull()).drop("_done")


def _run_waves(
    spark: SparkSession,
    store: TableStore,
    pending: DataFrame,
    work: list[ShardWork],
    options: EmbedOptions,
    summary: EmbedSummary,
    progress: bool,
) -> None:
    """Embed ``work`` in waves of ``shards_per_commit`` shards, committing after each."""
    size = options.shards_per_commit
    waves = [work[i : i + size] for i in range(0, len(work), size)]
    devices = spark.sparkContext.accumulator({}, CountsParam())
    task = embed_task(options, devices)
    for number, wave in enumerate(waves, 1):
        label = f"embed wave {number}/{len(waves)}" if len(waves) > 1 else "embed"
        started = time.time()
        counts = _run_wave(spark, store, pending, wave, task, options, label, progress)
        summary.embed_seconds += time.time() - started
        summary.waves += 1
        summary.shards += len(wave)
        for status, count in counts.items():
            summary.by_status[status] = summary.by_status.get(status, 0) + count
        images = sum(counts.values())
        summary.images += images
        summary.ok += counts.get("ok", 0)
        if progress:
            print(
                f"{label}: committed {len(wave)} shards, {images} images, {counts.get('ok', 0)} ok",
                file=sys.stderr,
                flush=True,
            )
    summary.devices = dict(devices.value)


def _run_wave(
    spark: SparkSession,
    store: TableStore,
    pending: DataFrame,
    wave: list[ShardWork],
    task: Callable[[dict], pa.Table],
    options: EmbedOptions,
    label: str,
    progress: bool,
) -> dict[str, int]:
    """Embed one wave of shards and commit its rows to both tables; returns images by status."""
    spark.sparkContext.setJobDescription(label)
    counter = spark.sparkContext.accumulator(0)
    # Group first, in its own job: the embed job is then one stage of one task per shard
    # (what the progress line counts), and a retried GPU task does not redo the grouping.
    frame = _wave_frame(spark, pending, wave).persist(_disk_only())
    output = map_shards(frame, task, task_schema(options.vector_dtype), counter)
    output = output.persist(_disk_only())  # two tables are written from one GPU pass
    try:
        frame.count()
        run_id = new_run_id()
        with ProgressReporter(spark, label, len(wave), counter, unit="images", enabled=progress):
            embeddings = output.filter(output["status"] == "ok")
            store.stage(run_id, EMBEDDINGS, embeddings.select("sample_id", "model", "vector"))
        # Scores are narrow: fewer, larger files (read from the persisted output).
        narrow = output.drop("vector", "phash", "pixel_hash")
        store.stage(run_id, SCORES, narrow.coalesce(max(1, len(wave) // 32)))
        tables = [EMBEDDINGS, SCORES]
        if _stage_new_hashes(store, run_id, output):
            tables.append(HASHES_TABLE)
        store.commit(run_id, tables)
        rows = output.groupBy("status").count().collect()
        return {row["status"]: row["count"] for row in rows}
    finally:
        output.unpersist()
        frame.unpersist()
        spark.sparkContext.setJobDescription(None)


def _stage_new_hashes(store: TableStore, run_id: str, output: DataFrame) -> bool:
    """Stage hashes of images no earlier pass hashed; return whether there were any.

    Dedup reads ``hashes`` and hashes only what is missing, so images hashed
    here are never decoded again for dedup.
    """
    from pyspark.sql import functions as F

    rows = output.filter(F.col("pixel_hash").isNotNull()).select(
        "sample_id",
        "phash",
        "pixel_hash",
        F.lit("ok").alias("status"),
        F.lit(None).cast("string").alias("error"),
        F.lit("embed").alias("source"),
    )
    if store.exists(HASHES_TABLE):
        rows = rows.join(store.read(HASHES_TABLE).select("sample_id"), "sample_id", "left_anti")
    rows = rows.coalesce(1)
    if rows.limit(1).count() == 0:
        return False
    store.stage(run_id, HASHES_TABLE, rows)
    return True


def _wave_frame(spark: SparkSession, pending: DataFrame, wave: list[ShardWork]) -> DataFrame:
    """The wave's samples grouped by shard with its path, one shard per partition."""
    from pyspark.sql import functions as F

    shards = [w.shard for w in wave]
    paths = F.create_map(*[F.lit(value) for w in wave for value in (w.shard, w.path)])
    ref = F.struct("sample_id", "offset", "size", "caption")
    grouped = (
        pending.filter(F.col("shard").isin(shards))
        .groupBy("shard")
        .agg(F.collect_list(ref).alias("samples"))
        .select("shard", paths[F.col("shard")].alias("path"), "samples")
    )
    return one_shard_per_partition(spark, grouped, shards, spark_schema(EMBED_INPUT))
