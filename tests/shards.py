"""Builders for shards holding bad input, with the status scan must give each case."""

from __future__ import annotations

import io
import struct
import tarfile
import zlib
from pathlib import Path

from PIL import Image

from imgcurate import synth
from imgcurate.synth import add_member


def jpeg(seed: int = 0, size: tuple[int, int] = (64, 48), exif_orientation: int | None = None):
    """A real-photo JPEG (a crop of a bundled photograph)."""
    _, data = list(synth.sample_images(seed + 1, seed=seed, max_side=max(size)))[-1]
    if exif_orientation is None:
        return data
    image = Image.open(io.BytesIO(data))
    exif = Image.Exif()
    exif[0x0112] = exif_orientation
    out = io.BytesIO()
    image.save(out, format="JPEG", exif=exif.tobytes())
    return out.getvalue()


def png_declaring(width: int, height: int) -> bytes:
    """A tiny PNG file whose header claims ``width`` x ``height`` pixels."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body))
            + kind
            + body
            + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 16)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")
    )


#: key → (members in order, expected status, expected warning or None)
BAD_SAMPLES = {
    "good": ([("jpg", "photo"), ("txt", b"a fine photo")], "ok", None),
    "corrupt": (
        [("jpg", b"\xff\xd8\xff\xe0garbage that is no jpeg"), ("txt", b"x")],
        "decode_error",
        None,
    ),
    "empty": ([("jpg", b""), ("txt", b"zero bytes")], "empty_image", None),
    "textasjpg": ([("jpg", b"this is a text file, not an image\n" * 4)], "not_an_image", None),
    "noimage": ([("txt", b"caption only"), ("json", b'{"url": "u"}')], "no_image", None),
    "onlyimage": ([("jpg", "photo")], "ok", None),
    "badutf8": ([("jpg", "photo"), ("txt", b"caf\xe9 \xff\xfe")], "ok", "caption_not_utf8"),
    "../escape": ([("jpg", "photo"), ("txt", b"sneaky")], "ok", "unsafe_key"),
    "bomb": ([("png", "bomb")], "too_large", None),
    "cutjpeg": ([("jpg", "cut")], "truncated_image", None),
    "rotated": ([("jpg", "rotated")], "ok", None),
    "dupkey": ([("jpg", "photo"), ("txt", b"first")], "ok", None),
}


def _payload(value, seed: int) -> bytes:
    if isinstance(value, bytes):
        return value
    if value == "photo":
        return jpeg(seed)
    if value == "bomb":
        return png_declaring(50_000, 50_000)
    if value == "cut":
        data = jpeg(seed, size=(256, 256))
        return data[: len(data) // 2]
    if value == "rotated":
        return jpeg(seed, exif_orientation=6)
    raise ValueError(value)


def make_bad_dataset(dest: Path) -> Path:
    """Write ``bad.tar`` (all BAD_SAMPLES, then a repeat of key dupkey), ``cut.tar``
    (truncated in the middle of a member) and ``notatar.tar`` (plain text)."""
    dest.mkdir(parents=True, exist_ok=True)
    with tarfile.open(dest / "bad.tar", "w") as tar:
        for seed, (key, (members, _, _)) in enumerate(BAD_SAMPLES.items()):
            for ext, value in members:
                add_member(tar, f"{key}.{ext}", _payload(value, seed))
        add_member(tar, "dupkey.jpg", jpeg(99))
        add_member(tar, "dupkey.txt", b"second")
    write_cut_tar(dest / "cut.tar", samples=4)
    (dest / "notatar.tar").write_text("just some text, not a tar archive\n" * 20)
    return dest


def write_cut_tar(path: Path, samples: int) -> None:
    """A tar of ``samples`` samples cut in the middle of the last image's data."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for index in range(samples):
            add_member(tar, f"s{index:03d}.txt", f"caption {index}".encode())
            last_header = tar.offset
            add_member(tar, f"s{index:03d}.jpg", jpeg(index))
    data = buffer.getvalue()
    path.write_bytes(data[: last_header + tarfile.BLOCKSIZE + 100])
