"""Index one WebDataset tar shard: one row per sample, streaming, no extraction.

This is the executor-side work of ``scan``. It reads the tar front to back
once (the only way that works well on object stores), groups members into
samples by WebDataset key, records where each member's bytes lie so that
later stages can read them by range, and inspects image headers. Every
problem becomes data: a status and an error on a sample row or on the shard
row, never an exception out of :func:`scan_shard`.

WebDataset conventions followed here: the key is the member path up to the
first dot of its basename, the rest is the extension (lower-cased); the
members of a sample are contiguous; an extension repeated inside a sample
starts a new sample.
"""

from __future__ import annotations

import hashlib
import json
import posixpath
import tarfile
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from imgcurate.images.probe import DEFAULT_MAX_PIXELS, probe_image
from imgcurate.io import fs
from imgcurate.io.sidecar import SidecarRow, read_sidecar, sidecar_path

#: Image extensions, in the order a sample's image member is chosen.
IMAGE_EXTENSIONS = ("jpg", "jpeg", "png", "webp", "gif", "bmp", "tif", "tiff", "jxl", "avif")
_TEXT_EXTENSIONS = ("txt", "json")
_EOF_MARKER_BYTES = 1024  # two zero blocks end a complete tar


@dataclass
class _Sample:
    key: str
    occurrence: int
    members: dict[str, tuple[int, int]] = field(default_factory=dict)
    payloads: dict[str, bytes] = field(default_factory=dict)
    status: str | None = None
    error: str | None = None


@dataclass
class ShardScan:
    """What scanning one shard produced: sample rows and the shard's own row."""

    samples: list[dict[str, Any]]
    shard: dict[str, Any]


def split_member_name(name: str) -> tuple[str, str]:
    """Split ``dir/000123.seg.jpg`` into key ``dir/000123`` and extension ``seg.jpg``."""
    directory, basename = posixpath.split(name)
    stem, dot, ext = basename.partition(".")
    key = posixpath.join(directory, stem) if directory else stem
    return key, ext.lower() if dot else ""


def is_unsafe_key(key: str) -> bool:
    """Keys that would escape a folder if written as a tar member name."""
    parts = key.replace("\\", "/").split("/")
    return key.startswith(("/", "\\")) or ".." in parts or ":" in parts[0]


def scan_shard(url: str, shard: str, max_pixels: int = DEFAULT_MAX_PIXELS) -> ShardScan:
    """Scan the tar at ``url``, recorded as ``shard`` (relative to the dataset root)."""
    started = time.time()
    samples: list[_Sample] = []
    shard_status, shard_error, size = "ok", None, None
    try:
        size = fs.size_of(url)
        shard_status, shard_error = _read_members(url, size, samples)
    except FileNotFoundError as error:
        shard_status, shard_error = "missing", f"{type(error).__name__}: {error}"
    except OSError as error:
        shard_status, shard_error = "unreadable", f"{type(error).__name__}: {error}"
    sidecar, sidecar_error = _load_sidecar(url)
    rows = [_sample_row(shard, s, max_pixels) for s in samples]
    rows = _merge_sidecar(shard, rows, sidecar)
    return ShardScan(
        rows,
        _shard_row(
            shard, url, size, shard_status, shard_error, sidecar, sidecar_error, rows, started
        ),
    )


def _read_members(url: str, size: int, samples: list[_Sample]) -> tuple[str, str | None]:
    """Fill ``samples`` from the tar; return the shard status and error."""
    seen: dict[str, int] = {}
    last_end = 0
    with fs.open_binary(url) as handle:
        try:
            archive = tarfile.open(fileobj=handle, mode="r|")  # noqa: SIM115 (closed with handle)
        except tarfile.TarError as error:
            return "not_a_tar", f"not a readable tar: {error}"
        try:
            for member in archive:
                last_end = max(last_end, _padded_end(member))
                if member.isfile():
                    _add_member(archive, member, samples, seen, size)
        except (tarfile.TarError, EOFError, OSError) as error:
            _mark_cut(samples, f"tar ends inside a member: {error}")
            return "truncated", f"tar is truncated after {last_end} bytes: {error}"
        if samples and samples[-1].status == "truncated":
            return "truncated", f"tar is {size} bytes, a member extends past its end"
        return _check_end_of_archive(handle, last_end, size)


def _padded_end(member: tarfile.TarInfo) -> int:
    blocks = -(-member.size // tarfile.BLOCKSIZE) if member.isfile() else 0
    return member.offset_data + blocks * tarfile.BLOCKSIZE


def _add_member(
    archive: tarfile.TarFile,
    member: tarfile.TarInfo,
    samples: list[_Sample],
    seen: dict[str, int],
    size: int,
) -> None:
    key, ext = split_member_name(member.name)
    current = samples[-1] if samples else None
    if current is None or current.key != key or ext in current.members:
        occurrence = seen.get(key, 0)
        seen[key] = occurrence + 1
        current = _Sample(key=key, occurrence=occurrence)
        if occurrence:
            current.status = "duplicate_key"
            current.error = f"key {key!r} appears {occurrence + 1} times in this shard"
        samples.append(current)
    current.members[ext] = (member.offset_data, member.size)
    if member.offset_data + member.size > size:
        current.status, current.error = "truncated", "member data extends past the end of the tar"
        return
    if ext in IMAGE_EXTENSIONS or ext in _TEXT_EXTENSIONS:
        extracted = archive.extractfile(member)
        current.payloads[ext] = extracted.read() if extracted else b""


def _mark_cut(samples: list[_Sample], error: str) -> None:
    if samples:
        samples[-1].status, samples[-1].error = "truncated", error


def _check_end_of_archive(handle, last_end: int, size: int) -> tuple[str, str | None]:
    """A complete tar has two zero blocks after its last member."""
    if size - last_end < _EOF_MARKER_BYTES:
        return "truncated", f"tar has no end-of-archive marker after {last_end} of {size} bytes"
    handle.seek(last_end)
    tail = handle.read(_EOF_MARKER_BYTES)
    if tail.count(0) != len(tail):
        return "truncated", f"unreadable data after byte {last_end}: tar is damaged"
    return "ok", None


def _sample_row(shard: str, sample: _Sample, max_pixels: int) -> dict[str, Any]:
    sample_id = f"{shard}/{sample.key}" + (f"#{sample.occurrence}" if sample.occurrence else "")
    image_ext = next((e for e in IMAGE_EXTENSIONS if e in sample.members), None)
    row: dict[str, Any] = {
        "sample_id": sample_id,
        "shard": shard,
        "key": sample.key,
        "members": [(ext, {"offset": o, "size": s}) for ext, (o, s) in sample.members.items()],
        "image_ext": image_ext,
        "warnings": [],
    }
    row.update(_image_fields(sample, image_ext, max_pixels))
    row.update(_text_fields(sample, row["warnings"]))
    if is_unsafe_key(sample.key):
        row["warnings"].append("unsafe_key")
    if sample.status:  # shard-level problems (duplicate key, truncation) win over image status
        row["status"], row["error"] = sample.status, sample.error
    return row


def _image_fields(sample: _Sample, image_ext: str | None, max_pixels: int) -> dict[str, Any]:
    empty = {
        "image_format": None,
        "width": None,
        "height": None,
        "mode": None,
        "image_nbytes": None,
        "sha256": None,
    }
    if image_ext is None:
        return {**empty, "status": "no_image", "error": "sample has no image member"}
    data = sample.payloads.get(image_ext)
    if data is None:
        return {**empty, "status": "truncated", "error": "image member was cut off"}
    info = probe_image(data, max_pixels=max_pixels)
    return {
        "image_format": info.image_format,
        "width": info.width,
        "height": info.height,
        "mode": info.mode,
        "image_nbytes": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
        "status": info.status,
        "error": info.error,
    }


def _text_fields(sample: _Sample, warnings: list[str]) -> dict[str, Any]:
    caption = _decode_text(sample.payloads.get("txt"), "caption", warnings)
    raw_json = _decode_text(sample.payloads.get("json"), "json", warnings)
    meta = _parse_json(raw_json, warnings)
    if caption is None and isinstance(meta.get("caption"), str):
        caption = meta["caption"]
    return {
        "caption": caption,
        "json": raw_json,
        "url": _str_or_none(meta.get("url")),
        "uid": _str_or_none(meta.get("uid")),
        "original_width": _int_or_none(meta.get("original_width")),
        "original_height": _int_or_none(meta.get("original_height")),
        "download_status": _str_or_none(meta.get("status")),
        "download_error": _str_or_none(meta.get("error_message")),
    }


def _decode_text(data: bytes | None, what: str, warnings: list[str]) -> str | None:
    if data is None:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        warnings.append(f"{what}_not_utf8")
        return data.decode("utf-8", errors="replace")


def _parse_json(raw: str | None, warnings: list[str]) -> dict[str, Any]:
    if not raw:
        return {}
    try:
        value = json.loads(raw)
    except ValueError:
        warnings.append("json_invalid")
        return {}
    return value if isinstance(value, dict) else {}


def _str_or_none(value: Any) -> str | None:
    return None if value is None else str(value)


def _int_or_none(value: Any) -> int | None:
    try:
        return None if value is None else int(value)
    except (TypeError, ValueError):
        return None


def _load_sidecar(url: str) -> tuple[dict[str, SidecarRow] | None, str | None]:
    path = sidecar_path(url)
    try:
        if not fs.exists(path):
            return None, None
        return read_sidecar(path), None
    except Exception as error:  # a broken sidecar must not lose the tar's samples
        return None, f"sidecar {path} unreadable: {type(error).__name__}: {error}"


def _merge_sidecar(
    shard: str, rows: list[dict[str, Any]], sidecar: dict[str, SidecarRow] | None
) -> list[dict[str, Any]]:
    """Fill gaps from the img2dataset parquet and add rows for samples not in the tar."""
    if not sidecar:
        return rows
    in_tar = set()
    for row in rows:
        extra = sidecar.get(row["key"])
        if extra is None:
            continue
        in_tar.add(row["key"])
        for column, value in extra.fields().items():
            if row.get(column) is None and value is not None:
                row[column] = value
    for key, extra in sidecar.items():
        if key not in in_tar:
            rows.append(_sidecar_only_row(shard, key, extra))
    return rows


def _sidecar_only_row(shard: str, key: str, extra: SidecarRow) -> dict[str, Any]:
    downloaded = extra.download_status in (None, "success")
    row = {
        "sample_id": f"{shard}/{key}",
        "shard": shard,
        "key": key,
        "members": [],
        "image_ext": None,
        "image_format": None,
        "width": None,
        "height": None,
        "mode": None,
        "image_nbytes": None,
        "sha256": None,
        "json": None,
        "warnings": [],
        "status": "missing_from_tar" if downloaded else (extra.download_status or "failed"),
        "error": (
            "sidecar lists this sample as downloaded but the tar has no member for it"
            if downloaded
            else extra.download_error
        ),
    }
    row.update(extra.fields())
    return row


def _shard_row(
    shard: str,
    url: str,
    size: int | None,
    status: str,
    error: str | None,
    sidecar: dict[str, SidecarRow] | None,
    sidecar_error: str | None,
    rows: list[dict[str, Any]],
    started: float,
) -> dict[str, Any]:
    ok = sum(1 for r in rows if r["status"] == "ok")
    errors = [error, sidecar_error]
    return {
        "shard": shard,
        "path": url,
        "bytes": size,
        "samples": len(rows),
        "ok": ok,
        "errors": len(rows) - ok,
        "status": status,
        "error": "; ".join(e for e in errors if e) or None,
        "has_sidecar": sidecar is not None,
        "scan_seconds": round(time.time() - started, 6),
        "scanned_at": datetime.now(timezone.utc),
    }
