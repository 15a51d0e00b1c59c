"""Semantic duplicates (SemDeDup): k-means on embeddings, then similarity within each cluster.

Near-identical embeddings sit in the same region of the sphere, so only
members of the same k-means cluster are compared:

1. **Fit** spherical k-means (Spark ML ``KMeans``, cosine distance; spark-rapids-ml's
   ``KMeans`` on unit vectors when it is installed and the session has GPUs) on a
   random sample of ``points_per_cluster × k`` embeddings (10 per centroid).
   Centroids need only partition the sphere, not describe it, and Spark ML's
   per-point distance loop runs one to two orders of magnitude slower than a
   matrix product, so fitting on all N would dominate the run.
2. **Assign** every embedding to its most similar centroid with NumPy matrix
   products in ``mapInArrow``, one pass; vectors leave it as compact bytes
   for the shuffle into clusters.
3. **Per cluster** (``applyInPandas``): order members by the keep rule and walk
   them in that order; a member whose cosine similarity to an earlier *kept*
   member exceeds ``1 - eps`` is a duplicate of the most similar one. Several
   eps are decided in the same pass, one boolean column each
   (``eps_0_01``...). The first eps listed decides ``is_duplicate``.

The default k is √N: the assignment costs N·k and the within-cluster
comparisons about N²/k, which balance there (paper-sized clusters, thousands
of members, at hundreds of millions of embeddings). As in the paper, two
copies on either side of a cluster boundary are never compared; embeddings
of real images cluster, so this is rarer than on random vectors (where
``bench/dedup.py`` finds about 85 % of planted pairs).

:func:`semantic_flags` is step 3 for one cluster, in plain NumPy: blocks of
``block_size`` members are compared with the members before them, a block of
columns at a time, so memory stays at ``block_size²`` floats however large
the cluster.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from imgcurate.dedup.keep import KeepRule, semantic_keys

log = logging.getLogger(__name__)

DEFAULT_EPS = (0.01,)
DEFAULT_BLOCK_SIZE = 2048


@dataclass(frozen=True)
class SemanticConfig:
    eps: tuple[float, ...] = DEFAULT_EPS
    #: k-means clusters; None: round(sqrt(N)).
    clusters: int | None = None
    keep: KeepRule = field(default_factory=KeepRule)
    #: Sample size for fitting the centroids, per centroid (enough to place a partition).
    points_per_cluster: int = 10
    max_iter: int = 10
    #: Spark ML's initialisation: "random" (data points; dense regions get more
    #: centroids, which evens out cluster sizes) or "k-means||" (better spread, slower).
    init_mode: str = "random"
    block_size: int = DEFAULT_BLOCK_SIZE
    seed: int = 0

    def __post_init__(self) -> None:
        if not self.eps or any(not 0 < e < 1 for e in self.eps):
            raise ValueError(f"semantic eps values must be between 0 and 1, got {self.eps}")


def eps_column(eps: float) -> str:
    """The flag column for one eps: 0.01 -> ``eps_0_01``."""
    return "eps_" + f"{eps:.6f}".rstrip("0").rstrip(".").replace(".", "_")


def default_clusters(count: int) -> int:
    return max(1, round(math.sqrt(count)))


# -- one cluster, in NumPy ---------------------------------------------------------------------


@dataclass
class ClusterFlags:
    """Per eps (rows) and member (columns, input order): the greedy keep decision.

    ``nearest`` is the index of the most similar earlier-kept member (-1 when
    the member is kept) and ``similarity`` its cosine similarity (NaN when kept).
    """

    duplicate: np.ndarray
    nearest: np.ndarray
    similarity: np.ndarray


def semantic_flags(
    vectors: np.ndarray,
    centroid: np.ndarray | None,
    order: str | np.ndarray,
    eps_list: tuple[float, ...] | list[float],
    block_size: int = DEFAULT_BLOCK_SIZE,
) -> ClusterFlags:
    """Decide, for each eps, which members of one cluster are duplicates.

    ``order`` is the keep order: an array of member indices, most preferred
    first, or ``"hard"`` / ``"easy"`` (farthest from / closest to ``centroid``
    first). Members are visited in that order; one is a duplicate when its
    cosine similarity to an earlier member that was kept exceeds ``1 - eps``.
    """
    units = _unit_rows(np.asarray(vectors, dtype=np.float32))
    count = len(units)
    order = _keep_order(units, centroid, order)
    thresholds = 1.0 - np.asarray(eps_list, dtype=np.float32)
    walk = _Walk(units[order], thresholds, block_size)
    walk.run()
    inverse = np.empty(count, dtype=np.int64)
    inverse[order] = np.arange(count)
    duplicate = ~walk.kept[:, inverse]
    nearest = np.where(duplicate, order[np.maximum(walk.nearest[:, inverse], 0)], -1)
    similarity = np.where(duplicate, walk.best[:, inverse], np.nan).astype(np.float32)
    return ClusterFlags(duplicate, nearest, similarity)


def _unit_rows(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.where(norms > 0, norms, 1.0)


def _keep_order(units: np.ndarray, centroid, order) -> np.ndarray:
    if not isinstance(order, str):
        order = np.asarray(order, dtype=np.int64)
        if sorted(order.tolist()) != list(range(len(units))):
            raise ValueError("order must be a permutation of the member indices")
        return order
    if centroid is None or order not in ("hard", "easy"):
        raise ValueError(f"order {order!r} needs a centroid and must be 'hard' or 'easy'")
    closeness = units @ _unit_rows(np.asarray(centroid, np.float32)[None, :])[0]
    return np.argsort(closeness if order == "hard" else -closeness, kind="stable")


class _Walk:
    """The greedy pass over members already in keep order, one block at a time."""

    def __init__(self, units: np.ndarray, thresholds: np.ndarray, block_size: int) -> None:
        self.units = units
        self.thresholds = thresholds
        self.lowest = float(thresholds.min())
        self.block = max(1, block_size)
        shape = (len(thresholds), len(units))
        self.kept = np.ones(shape, dtype=bool)
        self.best = np.full(shape, -np.inf, dtype=np.float32)
        self.nearest = np.full(shape, -1, dtype=np.int64)

    def run(self) -> None:
        for start in range(0, len(self.units), self.block):
            stop = min(start + self.block, len(self.units))
            rows = self.units[start:stop]
            for before in range(0, start, self.block):
                after = min(before + self.block, start)
                self._against_earlier(rows @ self.units[before:after].T, start, before)
            self._within_block(rows @ rows.T, start)

    def _against_earlier(self, sims: np.ndarray, start: int, before: int) -> None:
        """Best kept match in an earlier block, only for rows that pass the loosest threshold."""
        hits = np.flatnonzero(sims.max(axis=1) > self.lowest)
        if hits.size == 0:
            return
        sims = sims[hits]
        targets = start + hits
        for e in range(len(self.thresholds)):
            kept = self.kept[e, before : before + sims.shape[1]]
            masked = sims if kept.all() else np.where(kept, sims, -np.inf)
            column = masked.argmax(axis=1)
            value = masked[np.arange(len(hits)), column]
            better = value > self.best[e, targets]
            self.best[e, targets[better]] = value[better]
            self.nearest[e, targets[better]] = before + column[better]

    def _within_block(self, sims: np.ndarray, start: int) -> None:
        """Settle the block's members in order; only those with a close earlier member loop."""
        size = len(sims)
        earlier = np.tril(sims, -1)  # thresholds are > 0, so the zeroed half never matches
        candidates = np.flatnonzero(earlier.max(axis=1) > self.lowest) if size > 1 else []
        for e, threshold in enumerate(self.thresholds):
            span = slice(start, start + size)
            kept = self.best[e, span] <= threshold
            best, nearest = self.best[e, span], self.nearest[e, span]
            for j in candidates:
                close = (earlier[j, :j] > threshold) & kept[:j]
                if not close.any():
                    continue
                kept[j] = False
                i = int(np.argmax(np.where(close, earlier[j, :j], -np.inf)))
                if earlier[j, i] > best[j]:
                    best[j], nearest[j] = earlier[j, i], start + i
            self.kept[e, span] = kept


# -- Spark --------------------------------------------------------------------------------------


def vector_format(frame) -> str:
    """``float32`` for ``array<float>`` vectors, ``float16`` for little-endian float16 bytes."""
    from pyspark.sql.types import ArrayType, BinaryType

    kind = frame.schema["vector"].dataType
    if isinstance(kind, BinaryType):
        return "float16"
    if isinstance(kind, ArrayType):
        return "float32"
    raise ValueError(f"embedding vector column has unsupported type {kind.simpleString()}")


def arrow_vectors(column: pa.Array, fmt: str) -> np.ndarray:
    """An Arrow column of vectors (list<float> or float16 bytes) as a float32 matrix."""
    if len(column) == 0:
        return np.zeros((0, 0), dtype=np.float32)
    if fmt == "float16":
        raw = b"".join(column.to_pylist())
        return np.frombuffer(raw, dtype="<f2").reshape(len(column), -1).astype(np.float32)
    column = column.cast(pa.list_(pa.float32()))
    width = len(column[0])
    values = column.flatten().to_numpy(zero_copy_only=False)
    return values.reshape(len(column), width).astype(np.float32, copy=False)


def semantic_duplicates(spark, embeddings, preferences, config: SemanticConfig):
    """Rows of ``duplicates`` (method ``semantic``) for ``embeddings`` (sample_id, vector).

    ``preferences`` (sample_id, pixels, score) is needed for ``best:COLUMN``.
    Returns ``(frame, info)``; ``info`` says how many vectors and clusters there were.
    """
    count = embeddings.count()
    info = {"vectors": count, "clusters": 0}
    if count < 2:
        return None, info
    fmt = vector_format(embeddings)
    centroids = fit_centroids(spark, embeddings, fmt, count, config)
    info["clusters"] = len(centroids)
    assigned = assign_clusters(spark, embeddings, fmt, centroids)
    if config.keep.name == "best":
        assigned = assigned.join(preferences, "sample_id", "left")
    keyed = assigned.select("sample_id", "cluster", "vec", *semantic_keys(config.keep))
    schema = _output_schema(config.eps)
    walk = _cluster_task(config.eps, config.block_size, _shuffle_dtype(fmt))
    return keyed.groupBy("cluster").applyInPandas(walk, schema), info


def fit_centroids(spark, embeddings, fmt: str, count: int, config: SemanticConfig) -> np.ndarray:
    """Unit centroids (k × d) of spherical k-means fitted on a random sample."""
    k = min(config.clusters or default_clusters(count), count)
    fraction = min(1.0, 1.2 * k * config.points_per_cluster / count)
    sample = embeddings.sample(fraction=fraction, seed=config.seed) if fraction < 1 else embeddings
    arrays = sample.select("vector").mapInArrow(_unit_arrays(fmt), "features array<float>")
    if _use_gpu_kmeans(spark):
        return _fit_gpu(arrays, k, config)
    return _fit_spark_ml(arrays, k, count, config)


def _fit_spark_ml(arrays, k: int, count: int, config: SemanticConfig) -> np.ndarray:
    from pyspark.ml.clustering import KMeans
    from pyspark.ml.functions import array_to_vector

    features = arrays.select(array_to_vector("features").alias("features")).cache()
    try:
        available = features.count()
        if available == 0:
            raise ValueError("no embedding with a direction (all vectors are zero)")
        k = min(k, available)
        started = time.time()
        model = KMeans(
            k=k,
            distanceMeasure="cosine",
            maxIter=config.max_iter,
            seed=config.seed,
            initMode=config.init_mode,
            featuresCol="features",
        ).fit(features)
        log.info(
            "semantic: fitted %d centroids on %d of %d vectors in %.1fs",
            k,
            available,
            count,
            time.time() - started,
        )
        return _unit_rows(np.asarray(model.clusterCenters(), dtype=np.float32))
    finally:
        features.unpersist()


def _use_gpu_kmeans(spark) -> bool:
    try:
        import spark_rapids_ml.clustering  # noqa: F401
    except ImportError:
        return False
    return spark.conf.get("spark.executor.resource.gpu.amount", None) is not None


def _fit_gpu(arrays, k: int, config: SemanticConfig) -> np.ndarray:
    """spark-rapids-ml k-means (Euclidean; on unit vectors it ranks like cosine)."""
    from spark_rapids_ml.clustering import KMeans

    model = KMeans(
        k=k,
        maxIter=config.max_iter,
        seed=config.seed,
        initMode=config.init_mode,
        featuresCol="features",
    ).fit(arrays)
    return _unit_rows(np.asarray(model.clusterCenters(), dtype=np.float32))


def _unit_arrays(fmt: str):
    """Vectors as unit ``array<float>`` for k-means; all-zero vectors (no direction) dropped."""

    def run(batches):
        for batch in batches:
            units = _unit_rows(arrow_vectors(batch.column(0), fmt))
            units = units[np.any(units != 0, axis=1)] if len(units) else units
            flat = pa.array(units.ravel(), type=pa.float32())
            offsets = pa.array(np.arange(0, units.size + 1, max(units.shape[1], 1), dtype=np.int32))
            lists = (
                pa.ListArray.from_arrays(offsets, flat)
                if len(units)
                else pa.array([], pa.list_(pa.float32()))
            )
            yield pa.RecordBatch.from_arrays([lists], ["features"])

    return run


def assign_clusters(spark, embeddings, fmt: str, centroids: np.ndarray):
    """``(sample_id, cluster, centroid_sim, vec)``: nearest centroid by cosine, vector as bytes.

    ``vec`` holds the unit vector as little-endian float32 (float16 when the
    table stores float16) so the shuffle into clusters moves compact bytes.
    """
    shared = spark.sparkContext.broadcast(centroids)
    out_dtype = _shuffle_dtype(fmt)

    def run(batches):
        centers = shared.value
        for batch in batches:
            units = _unit_rows(arrow_vectors(batch.column(1), fmt))
            sims = units @ centers.T if len(units) else np.zeros((0, len(centers)), np.float32)
            cluster = sims.argmax(axis=1) if len(units) else np.zeros(0, np.int64)
            best = sims[np.arange(len(units)), cluster]
            raw = units.astype(out_dtype)
            width = raw.shape[1] * raw.itemsize if len(units) else 0
            offsets = np.arange(0, raw.nbytes + 1, max(width, 1), dtype=np.int32)[: len(units) + 1]
            vec = pa.BinaryArray.from_buffers(
                pa.binary(), len(units), [None, pa.py_buffer(offsets), pa.py_buffer(raw.tobytes())]
            )
            yield pa.RecordBatch.from_arrays(
                [
                    batch.column(0),
                    pa.array(cluster.astype(np.int32)),
                    pa.array(best.astype(np.float32)),
                    vec,
                ],
                ["sample_id", "cluster", "centroid_sim", "vec"],
            )

    schema = "sample_id string, cluster int, centroid_sim float, vec binary"
    return embeddings.select("sample_id", "vector").mapInArrow(run, schema)


def _shuffle_dtype(fmt: str) -> str:
    return "<f2" if fmt == "float16" else "<f4"


def _output_schema(eps: tuple[float, ...]) -> str:
    columns = [
        "sample_id string",
        "method string",
        "group_id string",
        "is_duplicate boolean",
        "duplicate_of string",
        "similarity double",
        "distance int",
    ]
    return ", ".join(columns + [f"{eps_column(e)} boolean" for e in eps])


def _cluster_task(eps: tuple[float, ...], block_size: int, dtype: str):
    """The ``applyInPandas`` function: one cluster in, its duplicate rows out."""
    import pandas as pd

    def run(members: pd.DataFrame) -> pd.DataFrame:
        members = members.drop_duplicates("sample_id")  # an embedding stored twice is one sample
        members = members.sort_values(["key1", "key2", "sample_id"], kind="stable")
        ids = members["sample_id"].to_numpy()
        raw = b"".join(members["vec"])
        vectors = np.frombuffer(raw, dtype=dtype).reshape(len(members), -1).astype(np.float32)
        flags = semantic_flags(vectors, None, np.arange(len(members)), eps, block_size)
        return _rows(ids, flags, eps)

    return run


def _rows(ids: np.ndarray, flags: ClusterFlags, eps: tuple[float, ...]):
    """Rows for members flagged at any eps, plus the kept members they duplicate.

    ``is_duplicate``, ``duplicate_of``, ``similarity`` and ``group_id`` describe
    the decision at the first eps; the other eps only add their flag columns.
    """
    import pandas as pd

    primary = flags.duplicate[0]
    flagged = np.flatnonzero(flags.duplicate.any(axis=0))
    targets = np.setdiff1d(np.unique(flags.nearest[0, primary]), flagged)
    members = np.concatenate([flagged, targets]).astype(np.int64)
    is_duplicate = primary[members]
    nearest = flags.nearest[0, members]
    duplicate_of = np.where(is_duplicate, ids[np.maximum(nearest, 0)], None)
    similarity = np.where(is_duplicate, flags.similarity[0, members], np.nan)
    frame = pd.DataFrame(
        {
            "sample_id": ids[members],
            "method": "semantic",
            "group_id": np.where(is_duplicate, duplicate_of, ids[members]),
            "is_duplicate": is_duplicate,
            "duplicate_of": duplicate_of,
            "similarity": similarity.astype(np.float64),
            "distance": pd.array([None] * len(members), dtype="Int32"),
        }
    )
    for e, value in enumerate(eps):
        frame[eps_column(value)] = flags.duplicate[e, members]
    return frame
