"""Write one output shard: copy each sample's members, byte for byte, from the source tars.

This is the executor-side work of ``reshard``, a plain function of a list
of samples that Spark (or anything else) can call. Nothing is decoded: a
member's bytes are read by range from its source tar (offsets recorded by
``scan``) and written after a deterministic header, so the output holds
exactly the source bytes and a rerun writes exactly the same shard.

Since every header and size is known in advance, the tar's layout is
computed first; sources are then read in offset order (sequential reads,
neighbouring ranges fetched together) and each piece is written at its
final offset in a local file. Beside ``NNNNN.tar`` go ``NNNNN.parquet`` (one
row per sample) and ``NNNNN_stats.json``; each is written under a temporary
name and renamed into place, the stats file last, so a shard is complete
exactly when its stats file names the same plan (see :func:`is_complete`).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import secrets
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from imgcurate.io import fs
from imgcurate.io.ranges import MissingShardError, read_ranges
from imgcurate.io.tarwriter import END_OF_ARCHIVE, layout, member_name

#: Bumped when the bytes written for the same plan change, so old shards are not kept.
FORMAT_VERSION = 1
TMP_MARK = ".tmp-"


@dataclass(frozen=True)
class SampleCopy:
    """One sample to write: its key in the new shard and where its members lie in the source."""

    key: str
    source: str
    #: ``(ext, offset, size)`` of each member's data in the source tar.
    members: tuple[tuple[str, int, int], ...]
    sample_id: str = ""

    def ordered(self) -> list[tuple[str, int, int]]:
        """Members in the order they are written: by extension."""
        return sorted(self.members)


@dataclass
class ShardResult:
    """What writing (or skipping) one output shard did."""

    shard: str
    count: int
    bytes: int
    seconds: float
    read_bytes: int = 0
    skipped: bool = False

    def as_row(self) -> dict[str, Any]:
        return dict(self.__dict__)


def shard_name(index: int, digits: int = 5) -> str:
    return f"{index:0{digits}d}"


def shard_files(dest: str, name: str) -> dict[str, str]:
    """Paths of the tar, sidecar parquet and stats file of one output shard."""
    return {
        "tar": fs.join(dest, f"{name}.tar"),
        "parquet": fs.join(dest, f"{name}.parquet"),
        "stats": fs.join(dest, f"{name}_stats.json"),
    }


def plan_digest(samples: Sequence[SampleCopy], sidecar: pa.Table | None = None) -> str:
    """A fingerprint of what a shard must hold: keys, source ranges and sidecar rows."""
    digest = hashlib.sha256(f"imgcurate-reshard-v{FORMAT_VERSION}\n".encode())
    for sample in samples:
        digest.update(json.dumps([sample.key, sample.sample_id, sample.ordered()]).encode())
        digest.update(b"\n")
    if sidecar is not None:
        # take() copies the rows into fresh arrays: a slice of a larger batch would
        # otherwise serialise bytes of its neighbours too
        canonical = sidecar.take(pa.array(range(sidecar.num_rows), pa.int64()))
        sink = io.BytesIO()
        with pa.ipc.new_stream(sink, sidecar.schema) as writer:
            writer.write_table(canonical.combine_chunks())
        digest.update(sink.getvalue())
    return digest.hexdigest()


def is_complete(dest: str, name: str, digest: str) -> dict[str, Any] | None:
    """The stats of a finished shard holding this exact plan, or None when it must be written."""
    files = shard_files(dest, name)
    try:
        if not fs.exists(files["stats"]):
            return None
        with fs.open_binary(files["stats"]) as handle:
            stats = json.loads(handle.read())
        if stats.get("plan") != digest or not fs.exists(files["parquet"]):
            return None
        return stats if fs.size_of(files["tar"]) == stats.get("bytes") else None
    except (OSError, ValueError):
        return None


def write_shard(
    dest: str, name: str, samples: Sequence[SampleCopy], sidecar: pa.Table | None = None
) -> ShardResult:
    """Write ``NNNNN.tar`` (+ parquet, + stats) into ``dest`` unless an identical one is there.

    ``sidecar`` holds one row per sample for ``NNNNN.parquet`` (default: key and sample_id).

    Raises :class:`MissingShardError` or :class:`ShortReadError` (from
    :mod:`imgcurate.io.ranges`) when a source tar is gone or shorter than
    the tables say: a shard is never written with a sample missing.
    """
    started = time.time()
    if sidecar is None:
        sidecar = pa.table(
            {"key": [s.key for s in samples], "sample_id": [s.sample_id for s in samples]}
        )
    digest = plan_digest(samples, sidecar)
    done = is_complete(dest, name, digest)
    if done is not None:
        return ShardResult(name, done["count"], done["bytes"], 0.0, skipped=True)
    files = shard_files(dest, name)
    with _LocalOutput(files["tar"]) as out:
        size, read = write_tar(out.path, samples, name)
        out.publish()
    _write_parquet(files["parquet"], sidecar)
    seconds = time.time() - started
    stats = {
        "count": len(samples),
        "bytes": size,
        "seconds": round(seconds, 6),
        "start_time": started,
        "end_time": time.time(),
        "read_bytes": read,
        "sources": len({s.source for s in samples}),
        "plan": digest,
    }
    put_bytes(files["stats"], json.dumps(stats, indent=1).encode())
    return ShardResult(name, len(samples), size, seconds, read)


def write_tar(path: str, samples: Sequence[SampleCopy], name: str = "") -> tuple[int, int]:
    """Write the tar of ``samples`` to the local file ``path``; return (tar bytes, bytes read)."""
    entries = [(member_name(s.key, ext), size) for s in samples for ext, _, size in s.ordered()]
    slots, total = layout(entries)
    by_source: dict[str, list[tuple[int, int, int]]] = {}
    position = 0
    for sample in samples:
        for _, offset, size in sample.ordered():
            by_source.setdefault(sample.source, []).append((position, offset, size))
            position += 1
    read = 0
    with open(path, "wb") as handle:
        handle.truncate(total)  # zero padding and the end-of-archive blocks come for free
        descriptor = handle.fileno()
        for source in sorted(by_source):
            for slot_index, data in _read_source(source, by_source[source], name):
                slot = slots[slot_index]
                os.pwritev(descriptor, [slot.header, data], slot.header_offset)
                read += len(data)
        os.pwrite(descriptor, END_OF_ARCHIVE, total - len(END_OF_ARCHIVE))
        handle.flush()
        os.fsync(descriptor)
    if os.path.getsize(path) != total:
        raise OSError(f"{path}: wrote {os.path.getsize(path)} bytes, expected {total}")
    return total, read


def _read_source(source: str, ranges: list[tuple[int, int, int]], name: str):
    try:
        yield from read_ranges(source, ranges)
    except MissingShardError as error:
        raise MissingShardError(
            f"source shard {source} disappeared since it was scanned (needed by output "
            f"shard {name}); restore it, or rerun with --skip-missing"
        ) from error


def _write_parquet(target: str, table: pa.Table) -> None:
    with _LocalOutput(target) as out:
        pq.write_table(table.combine_chunks(), out.path, compression="zstd")
        out.publish()


# -- files under a temporary name, then renamed --------------------------------------------


class _LocalOutput:
    """A local file to write, published to ``target`` (local rename, or upload then move)."""

    def __init__(self, target: str) -> None:
        self.target = target
        token = secrets.token_hex(4)
        if fs.is_local(target):
            local_target = fs.local_path(target)
            os.makedirs(os.path.dirname(local_target) or ".", exist_ok=True)
            self.path = f"{local_target}{TMP_MARK}{token}"
        else:
            handle, self.path = tempfile.mkstemp(prefix="imgcurate-reshard-")
            os.close(handle)
        self.token = token

    def publish(self) -> None:
        if fs.is_local(self.target):
            os.replace(self.path, fs.local_path(self.target))
            return
        remote, inner = fs.get_fs(self.target)
        temporary = f"{inner}{TMP_MARK}{self.token}"
        remote.put_file(self.path, temporary)
        remote.mv(temporary, inner)

    def __enter__(self) -> _LocalOutput:
        return self

    def __exit__(self, *exc) -> None:
        if os.path.exists(self.path):
            os.remove(self.path)


def put_bytes(target: str, data: bytes) -> None:
    """Write a small file whole, under a temporary name first."""
    with _LocalOutput(target) as out:
        with open(out.path, "wb") as handle:
            handle.write(data)
        out.publish()


def read_text(path: str) -> str | None:
    """A small file's text, or None when it does not exist."""
    if not fs.exists(path):
        return None
    with fs.open_binary(path) as handle:
        return handle.read().decode("utf-8")


def list_names(dest: str) -> list[str]:
    """File names directly inside ``dest`` (empty when it does not exist)."""
    if fs.is_local(dest):
        folder = fs.local_path(dest)
        return sorted(os.listdir(folder)) if os.path.isdir(folder) else []
    remote, inner = fs.get_fs(dest)
    if not remote.exists(inner):
        return []
    return sorted(p.rstrip("/").rsplit("/", 1)[-1] for p in remote.ls(inner, detail=False))


def remove(path: str) -> None:
    if fs.is_local(path):
        os.remove(fs.local_path(path))
        return
    remote, inner = fs.get_fs(path)
    remote.rm(inner)


def make_dirs(dest: str) -> None:
    if fs.is_local(dest):
        os.makedirs(fs.local_path(dest), exist_ok=True)
        return
    remote, inner = fs.get_fs(dest)
    remote.makedirs(inner, exist_ok=True)
