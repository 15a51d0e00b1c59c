"""Per-image hashes for duplicate finding: a 64-bit DCT perceptual hash and a pixel hash.

:func:`image_hashes` takes an image that is already decoded, so any pass that
decodes images anyway (``embed``, or the light hashing pass of ``dedup``) can
fill the ``hashes`` table without decoding twice.

- ``phash``: the classic DCT hash (the same definition as the ``imagehash``
  package): greyscale, resize to 32×32, 2-D DCT-II, keep the 8×8 lowest
  frequencies and set a bit for each coefficient above their median. Two
  images of the same picture after re-encoding, resizing or a small crop
  differ in few bits; unrelated images differ in about 32.
- ``pixel_hash``: a digest of the decoded, upright RGB pixels and their size,
  so the same picture saved twice with different metadata (EXIF, comments,
  PNG chunks, an orientation tag instead of rotated pixels) hashes the same
  while its bytes (``sha256`` in ``samples``) differ.

Both must be computed on the full-resolution decode (no JPEG draft scaling):
a draft-scaled image has other pixels, and hashes from different passes must
agree for the same bytes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from functools import lru_cache

import numpy as np
import pyarrow as pa
from PIL import Image

from imgcurate.images.decode import DecodeError, decode_image
from imgcurate.io.ranges import MissingShardError, ShortReadError, read_ranges

#: Side of the greyscale thumbnail the DCT runs on, and of the kept low-frequency block.
DCT_SIZE = 32
HASH_SIZE = 8
HASH_BITS = HASH_SIZE * HASH_SIZE


@lru_cache(maxsize=1)
def _dct_rows() -> np.ndarray:
    """The first ``HASH_SIZE`` rows of the (unnormalised) DCT-II matrix of size ``DCT_SIZE``.

    Only the low frequencies are kept, so the full transform is never needed:
    ``low = M @ X @ M.T`` with this 8×32 matrix ``M``.
    """
    k = np.arange(HASH_SIZE)[:, None]
    n = np.arange(DCT_SIZE)[None, :]
    return 2.0 * np.cos(np.pi * k * (2 * n + 1) / (2 * DCT_SIZE))


def phash(image: Image.Image) -> int:
    """The 64-bit perceptual hash of ``image`` as an unsigned int (bit 63 = first coefficient)."""
    grey = image.convert("L").resize((DCT_SIZE, DCT_SIZE), Image.Resampling.LANCZOS)
    pixels = np.asarray(grey, dtype=np.float64)
    rows = _dct_rows()
    low = rows @ pixels @ rows.T
    bits = (low > np.median(low)).ravel()
    return int.from_bytes(np.packbits(bits).tobytes(), "big")


def pixel_hash(image: Image.Image) -> str:
    """Hex digest of the RGB pixels and size: equal exactly when the pictures are identical."""
    rgb = image if image.mode == "RGB" else image.convert("RGB")
    digest = hashlib.blake2b(digest_size=16)
    digest.update(f"{rgb.width}x{rgb.height}:".encode())
    digest.update(rgb.tobytes())
    return digest.hexdigest()


def image_hashes(image: Image.Image) -> tuple[int, str]:
    """``(phash, pixel_hash)`` of a decoded upright image; ``phash`` as a signed 64-bit int.

    The signed view is what a Spark ``bigint`` column holds; Hamming distances
    are the same on either view (use :func:`hamming`).
    """
    return to_signed(phash(image)), pixel_hash(image)


def to_signed(value: int) -> int:
    """The signed 64-bit view of an unsigned 64-bit hash (how ``bigint`` stores it)."""
    return value - (1 << 64) if value >= 1 << 63 else value


def to_unsigned(value: int) -> int:
    return value & 0xFFFFFFFFFFFFFFFF


def hamming(a: int, b: int) -> int:
    """Bits in which two 64-bit hashes differ (signed or unsigned views alike)."""
    return (to_unsigned(a) ^ to_unsigned(b)).bit_count()


# -- the hashing pass over one shard (executor side) ----------------------------------------

#: Rows of the ``hashes`` table; ``source`` says which pass computed them (dedup or embed).
HASHES = pa.schema(
    [
        ("sample_id", pa.string()),
        ("phash", pa.int64()),
        ("pixel_hash", pa.string()),
        ("status", pa.string()),
        ("error", pa.string()),
        ("source", pa.string()),
    ]
)


def hash_shard(
    path: str, images: Sequence[tuple[str, int, int]], source: str = "dedup"
) -> pa.Table:
    """Hash the image members ``(sample_id, offset, size)`` of the shard at ``path``.

    Reads the members by byte range, front to back, and decodes each in full.
    Bad input is data: an image that does not decode gets status
    ``decode_error``; a shard that vanished or was cut marks the samples it
    could not deliver ``missing_shard`` or ``short_read``. One row per input.
    """
    rows: dict[str, dict] = {}
    try:
        for sample_id, data in read_ranges(path, [(s, o, n) for s, o, n in images]):
            rows[sample_id] = _hash_row(sample_id, data, source)
    except MissingShardError as error:
        rows.update(_failed(images, rows, "missing_shard", str(error), source))
    except ShortReadError as error:
        rows.update(_failed(images, rows, "short_read", str(error), source))
    ordered = [rows[sample_id] for sample_id, _, _ in images]
    return pa.Table.from_pylist(ordered, schema=HASHES)


def _hash_row(sample_id: str, data: bytes, source: str) -> dict:
    try:
        phash_value, pixels = image_hashes(decode_image(data))
    except DecodeError as error:
        return {
            "sample_id": sample_id,
            "status": "decode_error",
            "error": str(error),
            "source": source,
        }
    return {
        "sample_id": sample_id,
        "phash": phash_value,
        "pixel_hash": pixels,
        "status": "ok",
        "source": source,
    }


def _failed(images, done: dict, status: str, error: str, source: str) -> dict[str, dict]:
    return {
        sample_id: {"sample_id": sample_id, "status": status, "error": error, "source": source}
        for sample_id, _, _ in images
        if sample_id not in done
    }
