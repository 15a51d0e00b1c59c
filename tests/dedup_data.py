"""A set of real photos with planted copies, and the truth about which samples are copies.

Originals are the four disjoint quarters of each scikit-image photograph, so
no two originals show the same picture. Some originals get one copy of every
kind a dedup has to catch; the others stay unrelated. Copy kinds:

- pixel-identical (exact duplicates): the same bytes; the same JPEG with an
  EXIF block inserted; the picture stored rotated with an EXIF orientation
  tag that turns it upright again; a lossless PNG of a JPEG's pixels;
- near duplicates: re-encoded at other JPEG qualities, resized 0.5–0.9×,
  cropped by less than 5 % of the area, a JPEG of a PNG original.

``family`` says which original a sample comes from (near-duplicate truth);
``pixels`` says which samples decode to the same pixels (exact truth).
"""

from __future__ import annotations

import io
import random
import tarfile
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from imgcurate.synth import add_member, load_photos

EXACT_KINDS = ("bytes", "exif", "orientation", "png_of_jpeg")
NEAR_KINDS = ("quality", "resize", "crop", "jpeg_of_png")


@dataclass(frozen=True)
class Planted:
    """One sample of the set: its key, image member and ground truth."""

    key: str
    ext: str
    data: bytes
    family: int
    pixels: str
    kind: str


def originals(seed: int = 0) -> list[tuple[Image.Image, str]]:
    """Quarters of every photo, each with the format it is stored in (mostly JPEG)."""
    rng = random.Random(seed)
    tiles = []
    for photo in load_photos():
        height, width = photo.pixels.shape[:2]
        for row in range(2):
            for col in range(2):
                part = photo.pixels[
                    row * height // 2 : (row + 1) * height // 2,
                    col * width // 2 : (col + 1) * width // 2,
                ]
                tiles.append((Image.fromarray(part), "png" if rng.random() < 0.25 else "jpg"))
    return tiles


def planted_set(families: int = 40, seed: int = 0) -> list[Planted]:
    """Every original, ``families`` of them with planted copies, in shuffled order."""
    rng = random.Random(seed)
    tiles = originals(seed)
    with_copies = set(rng.sample(range(len(tiles)), families))
    samples: list[Planted] = []
    for index, (image, ext) in enumerate(tiles):
        data = _encode(image, ext, quality=90)
        samples.append(Planted("", ext, data, index, f"{index}", "original"))
        if index in with_copies:
            samples.extend(_copies(index, data, ext, rng))
    rng.shuffle(samples)
    return [
        Planted(f"img{n:05d}", s.ext, s.data, s.family, s.pixels, s.kind)
        for n, s in enumerate(samples)
    ]


def write_planted_shards(dest: str | Path, samples: list[Planted], shards: int = 2) -> Path:
    """Write the samples as plain webdataset shards (image + caption), round-robin."""
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    for shard in range(shards):
        with tarfile.open(dest / f"part-{shard:05d}.tar", "w") as tar:
            for sample in samples[shard::shards]:
                add_member(tar, f"{sample.key}.{sample.ext}", sample.data)
                add_member(tar, f"{sample.key}.txt", f"{sample.kind} of {sample.family}".encode())
    return dest


def shard_of(index: int, shards: int = 2) -> str:
    """The shard name a sample written by :func:`write_planted_shards` lands in."""
    return f"part-{index % shards:05d}.tar"


def _copies(family: int, data: bytes, ext: str, rng: random.Random) -> list[Planted]:
    """One copy of each kind that applies to an original stored as ``ext``."""
    image = Image.open(io.BytesIO(data)).convert("RGB")
    same = f"{family}"
    copies = [
        Planted("", ext, data, family, same, "bytes"),
        Planted("", "png", _rotated_with_orientation(image), family, same, "orientation"),
    ]
    if ext == "jpg":
        copies.append(Planted("", "jpg", _with_exif(data), family, same, "exif"))
        copies.append(Planted("", "png", _encode(image, "png"), family, same, "png_of_jpeg"))
    else:
        copies.append(Planted("", "png", _png_with_text(image), family, same, "exif"))
        jpeg = _encode(image, "jpg", quality=85)
        copies.append(Planted("", "jpg", jpeg, family, f"{family}-jpeg", "jpeg_of_png"))
    quality = rng.choice([40, 60, 75, 95])
    copies.append(
        Planted("", "jpg", _encode(image, "jpg", quality), family, f"{family}-q", "quality")
    )
    copies.append(Planted("", "jpg", _resized(image, rng), family, f"{family}-r", "resize"))
    copies.append(Planted("", "jpg", _cropped(image, rng), family, f"{family}-c", "crop"))
    return copies


def _encode(image: Image.Image, ext: str, quality: int = 90, **options) -> bytes:
    out = io.BytesIO()
    if ext == "png":
        image.save(out, format="PNG", **options)
    else:
        image.save(out, format="JPEG", quality=quality, **options)
    return out.getvalue()


def _with_exif(jpeg: bytes) -> bytes:
    """The same JPEG stream with an EXIF block (camera make) inserted after the SOI marker."""
    exif = Image.Exif()
    exif[0x010F] = "Planted Camera Co."
    payload = exif.tobytes()
    segment = b"\xff\xe1" + (len(payload) + 2).to_bytes(2, "big") + payload
    return jpeg[:2] + segment + jpeg[2:]


def _png_with_text(image: Image.Image) -> bytes:
    from PIL import PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_text("Comment", "saved again with a comment")
    return _encode(image, "png", pnginfo=info)


def _rotated_with_orientation(image: Image.Image) -> bytes:
    """Pixels stored turned 90° counter-clockwise, with EXIF orientation 6 to turn them back."""
    exif = Image.Exif()
    exif[0x0112] = 6
    return _encode(image.transpose(Image.Transpose.ROTATE_90), "png", exif=exif.tobytes())


def _resized(image: Image.Image, rng: random.Random) -> bytes:
    scale = rng.uniform(0.5, 0.9)
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    return _encode(image.resize(size, Image.Resampling.BICUBIC), "jpg", quality=85)


def _cropped(image: Image.Image, rng: random.Random) -> bytes:
    """Cut 1–5 % of the area away, split at random between the four sides."""
    area = rng.uniform(0.01, 0.05)
    keep_w = 1 - rng.uniform(0.0, area)
    keep_h = (1 - area) / keep_w
    width, height = round(image.width * keep_w), round(image.height * keep_h)
    left = rng.randint(0, image.width - width)
    top = rng.randint(0, image.height - height)
    return _encode(image.crop((left, top, left + width, top + height)), "jpg", quality=85)
