"""Read tar members by byte range, using offsets recorded by ``scan``.

Reads are sorted by offset and served from one open file per shard, so a
shard is read front to back even when the caller asks in another order.
Neighbouring ranges closer than ``coalesce_gap`` are fetched in one read,
which matters on object stores where every request has a fixed cost.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TypeVar

from imgcurate.io.fs import open_binary

T = TypeVar("T")

#: Ranges closer than this are read together (one request on object stores).
DEFAULT_COALESCE_GAP = 1024 * 1024
#: A coalesced read never grows beyond this many bytes.
MAX_COALESCED_READ = 64 * 1024 * 1024


class MissingShardError(FileNotFoundError):
    """A shard listed in the tables no longer exists where it was scanned."""


class ShortReadError(OSError):
    """A member's byte range extends past the end of the shard (the file changed or was cut)."""


def read_ranges(
    path: str,
    ranges: Iterable[tuple[T, int, int]],
    coalesce_gap: int = DEFAULT_COALESCE_GAP,
) -> Iterator[tuple[T, bytes]]:
    """Yield ``(tag, bytes)`` for each ``(tag, offset, size)``, in offset order.

    Raises :class:`MissingShardError` when the shard cannot be opened and
    :class:`ShortReadError` when a range is past the end of the file.
    """
    ordered = sorted(ranges, key=lambda r: r[1])
    if not ordered:
        return
    try:
        handle = open_binary(path)
    except FileNotFoundError as error:
        raise MissingShardError(f"shard not found: {path}") from error
    with handle:
        for group in _coalesce(ordered, coalesce_gap):
            start = group[0][1]
            end = max(offset + size for _, offset, size in group)
            handle.seek(start)
            block = handle.read(end - start)
            for tag, offset, size in group:
                piece = block[offset - start : offset - start + size]
                if len(piece) != size:
                    raise ShortReadError(
                        f"{path}: wanted {size} bytes at offset {offset}, got {len(piece)}"
                    )
                yield tag, piece


def read_range(path: str, offset: int, size: int) -> bytes:
    """Read one member's bytes (convenience for tests and tools)."""
    for _, data in read_ranges(path, [(None, offset, size)]):
        return data
    return b""


def _coalesce(ordered: list[tuple[T, int, int]], gap: int) -> Iterator[list[tuple[T, int, int]]]:
    group: list[tuple[T, int, int]] = []
    group_start = group_end = 0
    for item in ordered:
        _, offset, size = item
        end = offset + size
        if group and (offset - group_end > gap or end - group_start > MAX_COALESCED_READ):
            yield group
            group = []
        if not group:
            group_start, group_end = offset, end
        group.append(item)
        group_end = max(group_end, end)
    if group:
        yield group
