"""Deterministic tar members: the header bytes, the layout of a shard, safe member names.

A reshard copies member bytes and writes only tar headers of its own. The
headers depend on nothing but the member's name and size (mtime 0, uid/gid
0, empty user and group names, mode 0444), so writing the same samples
twice gives byte-identical shards. A header is plain ustar (512 bytes) when
the name is ASCII and fits ustar's name and prefix fields; otherwise a PAX
extended header carries the name (or a size of 8 GiB and more).

Because header sizes are known from names and sizes alone, the whole layout
of an output shard, every member's offset included, is known before a byte
is read. That lets the writer fetch source bytes in whatever order suits the
sources and place each piece at its final offset.
"""

from __future__ import annotations

import tarfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

BLOCK = tarfile.BLOCKSIZE
#: Two zero blocks end an archive (no padding to a 10 KiB record: readers do not need it).
END_OF_ARCHIVE = bytes(2 * BLOCK)
#: The fixed modification time of every member (the epoch), for reproducible shards.
MTIME = 0
MODE = 0o444
#: Separator between a key and its occurrence number when two samples share a key.
#: :func:`safe_key` never leaves it in a key, so ``key#n`` cannot meet another key.
OCCURRENCE_MARK = "#"


def member_name(key: str, ext: str) -> str:
    return f"{key}.{ext}" if ext else key


def _tarfile_header(name: str, size: int) -> bytes:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mtime = MTIME
    info.mode = MODE
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.type = tarfile.REGTYPE
    try:
        return info.tobuf(tarfile.USTAR_FORMAT, "ascii", "strict")
    except (ValueError, UnicodeEncodeError):  # long or non-ASCII name, or size >= 8 GiB
        return info.tobuf(tarfile.PAX_FORMAT, "utf-8", "strict")


#: The common case (short ASCII name) is filled into this template: building a header
#: through ``tarfile`` costs about 100 us, which would dominate copying small members.
_TEMPLATE = bytearray(_tarfile_header("x", 0))
_NAME, _SIZE, _CHECKSUM = slice(0, 100), slice(124, 136), slice(148, 156)
_MAX_USTAR_SIZE = 8**11


def _fast_header(encoded: bytes, size: int) -> bytes:
    block = bytearray(_TEMPLATE)
    block[_NAME] = encoded.ljust(100, b"\0")
    block[_SIZE] = b"%011o\0" % size
    block[_CHECKSUM] = b"        "
    block[_CHECKSUM] = b"%06o\0 " % sum(block)
    return bytes(block)


def member_header(name: str, size: int) -> bytes:
    """The header blocks written before a member's data (same name and size, same bytes)."""
    if "\0" in name or not name:
        raise ValueError(f"not a valid tar member name: {name!r}")
    if name.isascii() and len(name) <= 100 and size < _MAX_USTAR_SIZE:
        return _fast_header(name.encode("ascii"), size)
    return _tarfile_header(name, size)


def padded(size: int) -> int:
    """Bytes a member's data takes in the archive (rounded up to whole blocks)."""
    return -(-size // BLOCK) * BLOCK


def member_span(name: str, size: int) -> int:
    """Bytes one member takes in the archive: header blocks plus padded data."""
    return len(member_header(name, size)) + padded(size)


def sample_span(key: str, sizes: Mapping[str, int]) -> int:
    """Bytes one sample takes in the archive, given its key and member sizes by extension."""
    return sum(member_span(member_name(key, ext), size) for ext, size in sizes.items())


@dataclass(frozen=True)
class MemberSlot:
    """Where one member goes in an output shard, and the header written before its data."""

    name: str
    size: int
    header_offset: int
    header: bytes

    @property
    def data_offset(self) -> int:
        return self.header_offset + len(self.header)


def layout(members: Iterable[tuple[str, int]]) -> tuple[list[MemberSlot], int]:
    """Place ``(name, size)`` members one after another; return the slots and the tar size.

    The size includes the end-of-archive marker.
    """
    slots = []
    offset = 0
    for name, size in members:
        header = member_header(name, size)
        slots.append(MemberSlot(name, size, offset, header))
        offset += len(header) + padded(size)
    return slots, offset + len(END_OF_ARCHIVE)


def safe_key(key: str) -> str:
    """A key that is safe and unambiguous as a tar member name, unchanged when it already is.

    Keys that could escape a folder on extraction (``../x``, ``/abs``, ``C:x``),
    hold empty or dot path parts, or control characters are flattened: every
    path separator, dot, colon and control character becomes ``_``. The
    occurrence mark ``#`` is replaced in every key, so that ``key#1``, given to
    the second of two samples sharing a key, is never some other sample's key.
    """
    key = key.replace(OCCURRENCE_MARK, "_")
    if _is_safe(key):
        return key
    flat = "".join("_" if ch in "/\\.:" or ord(ch) < 32 or ord(ch) == 127 else ch for ch in key)
    return flat or "_"


def _is_safe(key: str) -> bool:
    if not key or "\\" in key or any(ord(ch) < 32 or ord(ch) == 127 for ch in key):
        return False
    parts = key.split("/")
    if any(part in ("", ".", "..") for part in parts):  # also rejects /abs and trailing /
        return False
    if ":" in parts[0]:
        return False
    return "." not in parts[-1]  # a dot would move where readers split key and extension
