"""Embed and score the images of one shard: the executor-side work of ``embed``.

:func:`embed_shard` is a plain function of a shard path, its image members'
byte ranges and a set of models; Spark calls it once per task, a benchmark or
another engine can call it directly. It

1. reads the image members by byte range, front to back (``read_ranges``);
2. decodes and preprocesses them in a thread pool, a few batches ahead, so
   decoding overlaps the forward pass (Pillow and torch release the GIL);
3. runs batches through the embedder and heads (``Models.forward``);
4. returns one Arrow row per input sample, in input order.

Bad input is data: an image that does not decode, a member past the end of a
cut shard, or a shard that vanished becomes a row with a status and an error,
no vector and no scores. Only a failure of the model itself fails the task.
"""

from __future__ import annotations

import io
import os
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import pyarrow as pa
import torch
from PIL import Image

from imgcurate.dedup.hashes import image_hashes
from imgcurate.images.decode import DecodeError, decode_image
from imgcurate.io.ranges import MissingShardError, ShortReadError, read_ranges
from imgcurate.models.bundle import Models, ModelSpec, load_models
from imgcurate.models.device import task_device

DEFAULT_BATCH_SIZE = 64
HEAD_COLUMNS = ("aesthetic", "nsfw", "clip_score")
VECTOR_TYPES = {"float32": pa.list_(pa.float32()), "float16": pa.binary()}


def output_schema(vector_dtype: str = "float32") -> pa.Schema:
    """Rows of :func:`embed_shard`.

    ``vector`` is ``list<float32>``, or with ``vector_dtype="float16"`` the
    little-endian float16 bytes of the vector (``numpy.frombuffer(b, "<f2")``):
    half the storage, and a type Spark can carry (it has no half-float type).
    """
    return pa.schema(
        [
            ("sample_id", pa.string()),
            ("model", pa.string()),
            ("status", pa.string()),
            ("error", pa.string()),
            ("vector", VECTOR_TYPES[vector_dtype]),
            ("aesthetic", pa.float32()),
            ("nsfw", pa.float32()),
            ("clip_score", pa.float32()),
            ("weights", pa.string()),
        ]
    )


class ImageRef(NamedTuple):
    """One sample to embed: its id, the image member's byte range, and its caption."""

    sample_id: str
    offset: int | None
    size: int | None
    caption: str | None = None


@dataclass(frozen=True)
class Failure:
    """Why a sample has no vector: a status for the table and a readable reason."""

    status: str
    error: str


def embed_shard(
    shard_path: str,
    samples: Sequence[Sequence],
    models: Models | ModelSpec,
    device: str | None = None,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    fast_decode: bool = True,
    decode_threads: int | None = None,
    vector_dtype: str = "float32",
    hashes_out: dict[str, tuple[int, str]] | None = None,
) -> pa.Table:
    """Embed and score ``samples`` (``(sample_id, offset, size, caption)``) of one shard.

    ``models`` is loaded :class:`Models`, or a :class:`ModelSpec` to load (once
    per process) on ``device`` (default: the Spark task's GPU slot, else CPU).
    ``fast_decode`` decodes JPEGs at reduced scale, never below twice the model
    input. Returns one row per sample, in the order given (:func:`output_schema`).

    With ``hashes_out`` (a dict), the perceptual and pixel hashes of every image
    decoded at full resolution are put there by sample id, for dedup: hashing
    an image already decoded costs a fraction of decoding it again later.
    Images the JPEG fast path decoded at reduced scale are left out, since
    their pixels differ from a full decode (dedup hashes those itself).
    """
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    if vector_dtype not in VECTOR_TYPES:
        raise ValueError(f"vector_dtype {vector_dtype!r}: expected one of {sorted(VECTOR_TYPES)}")
    if isinstance(models, ModelSpec):
        models = load_models(models, device or task_device())
    refs = [ImageRef(*sample) for sample in samples]
    rows = _Rows(len(refs), models)
    ranges = []
    for index, ref in enumerate(refs):
        if ref.offset is None or ref.size is None:
            rows.fail(index, Failure("no_image", "sample has no image member to embed"))
        else:
            ranges.append((index, ref.offset, ref.size))
    min_side = 2 * models.embedder.image_size if fast_decode else None

    def prepare(index: int, data: bytes) -> torch.Tensor:
        image = decode_image(data, min_side)
        if hashes_out is not None and (min_side is None or _full_resolution(image, data)):
            hashes_out[refs[index].sample_id] = image_hashes(image)
        return models.embedder.preprocess(image)

    threads = decode_threads or min(16, os.cpu_count() or 1)
    with ThreadPoolExecutor(threads, thread_name_prefix="decode") as pool:
        stream = _prepared(shard_path, ranges, pool, prepare, ahead=batch_size + 4 * threads)
        for batch in _batches(stream, batch_size, rows):
            indices = [index for index, _ in batch]
            pixels = torch.stack([tensor for _, tensor in batch])
            rows.fill(indices, models.forward(pixels, [refs[i].caption for i in indices]))
    return rows.table([ref.sample_id for ref in refs], vector_dtype)


def _prepared(
    path: str,
    ranges: list[tuple[int, int, int]],
    pool: ThreadPoolExecutor,
    prepare: Callable[[int, bytes], torch.Tensor],
    ahead: int,
) -> Iterator[tuple[int, torch.Tensor | Failure]]:
    """Yield ``(index, tensor or Failure)`` in read order, keeping ``ahead`` decodes in flight.

    ``ahead`` of at least a batch means the next batch decodes while this one runs.
    """
    pending: deque[tuple[int, Future]] = deque()
    submitted: set[int] = set()
    failure = None
    try:
        for index, data in read_ranges(path, ranges):
            pending.append((index, pool.submit(prepare, index, data)))
            submitted.add(index)
            if len(pending) >= ahead:
                yield _settle(*pending.popleft())
    except MissingShardError as error:
        failure = Failure("missing_shard", str(error))
    except ShortReadError as error:
        failure = Failure("short_read", str(error))
    except OSError as error:
        failure = Failure("read_error", f"{type(error).__name__}: {error}")
    while pending:
        yield _settle(*pending.popleft())
    if failure is not None:
        for index, _, _ in ranges:
            if index not in submitted:
                yield index, failure


def _full_resolution(image, data: bytes) -> bool:
    """True when ``image`` was decoded at the size its header declares (no draft scaling)."""
    declared = Image.open(io.BytesIO(data)).size
    return sorted(image.size) == sorted(declared)


def _settle(index: int, future: Future) -> tuple[int, torch.Tensor | Failure]:
    try:
        return index, future.result()
    except Exception as error:  # any decode or transform failure is this image's, not the task's
        detail = (
            str(error) if isinstance(error, DecodeError) else f"{type(error).__name__}: {error}"
        )
        return index, Failure("decode_error", detail)


def _batches(
    stream: Iterator[tuple[int, torch.Tensor | Failure]], size: int, rows: _Rows
) -> Iterator[list[tuple[int, torch.Tensor]]]:
    """Group decoded tensors into batches; failures go straight to their rows."""
    batch: list[tuple[int, torch.Tensor]] = []
    for index, outcome in stream:
        if isinstance(outcome, Failure):
            rows.fail(index, outcome)
            continue
        batch.append((index, outcome))
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


class _Rows:
    """Column buffers for one shard's output, filled batch by batch in any order."""

    def __init__(self, count: int, models: Models) -> None:
        self.models = models
        self.status: list[str | None] = [None] * count
        self.error: list[str | None] = [None] * count
        self.vectors = np.zeros((count, models.plan.dim), dtype=np.float32)
        self.scores = {name: np.full(count, np.nan, dtype=np.float32) for name in HEAD_COLUMNS}

    def fail(self, index: int, failure: Failure) -> None:
        self.status[index] = failure.status
        self.error[index] = failure.error

    def fill(self, indices: list[int], outputs: dict[str, np.ndarray]) -> None:
        self.vectors[indices] = outputs["vector"]
        for name in HEAD_COLUMNS:
            if name in outputs:
                self.scores[name][indices] = outputs[name]
        for index in indices:
            self.status[index] = "ok"

    def table(self, sample_ids: list[str], vector_dtype: str) -> pa.Table:
        count = len(sample_ids)
        ok = np.array([s == "ok" for s in self.status], dtype=bool)
        if count and not all(self.status):
            raise RuntimeError("internal error: a sample got neither a result nor a status")
        columns = {
            "sample_id": pa.array(sample_ids, pa.string()),
            "model": pa.array([self.models.name] * count, pa.string()),
            "status": pa.array(self.status, pa.string()),
            "error": pa.array(self.error, pa.string()),
            "vector": _vector_column(self.vectors, ok, vector_dtype),
            **{
                name: pa.array(values, pa.float32(), mask=np.isnan(values) | ~ok)
                for name, values in self.scores.items()
            },
            "weights": pa.array([self.models.weights] * count, pa.string()),
        }
        return pa.table(columns, schema=output_schema(vector_dtype))


def _vector_column(vectors: np.ndarray, ok: np.ndarray, vector_dtype: str) -> pa.Array:
    count, dim = vectors.shape
    if vector_dtype == "float16":
        raw = vectors.astype("<f2")
        return pa.array([raw[i].tobytes() if ok[i] else None for i in range(count)], pa.binary())
    kept = vectors[ok]
    lengths = np.where(ok, dim, 0)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)
    values = pa.array(kept.reshape(-1), pa.float32())
    return pa.ListArray.from_arrays(pa.array(offsets), values, mask=pa.array(~ok))
