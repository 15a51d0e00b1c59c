"""Small, real-photo datasets in the layouts users have, for the demo, tests and benchmarks.

The photographs ship inside the scikit-image wheel, so this works offline.
Each sample is a distinct crop of one photo, resized, so that images differ
while staying real photographs (JPEG statistics, EXIF-free, varied sizes).
Two layouts:

* img2dataset: ``00000.tar`` + ``00000.parquet`` + ``00000_stats.json``, keys
  ``shard * 10**k + index`` zero-padded, members ``.jpg``/``.json``/``.txt``
  with PAX headers, samples in shuffled (download-completion) order, and
  some failed downloads that exist only in the parquet;
* plain webdataset: ``shard-000000.tar`` with ``.jpg`` and ``.txt`` members.
"""

from __future__ import annotations

import io
import json
import math
import random
import tarfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

#: scikit-image photo name → caption used for it.
PHOTOS = {
    "astronaut": "an astronaut in a white spacesuit in front of the american flag",
    "coffee": "a cup of coffee on a saucer seen from above",
    "chelsea": "a tabby cat looking to the side",
    "rocket": "a rocket standing on the launch pad",
    "hubble_deep_field": "galaxies in the hubble deep field",
    "retina": "a photograph of the retina of a human eye",
    "immunohistochemistry": "a stained tissue sample under a microscope",
    "camera": "a man holding a camera on a tripod, black and white",
    "coins": "old coins on a dark background",
    "moon": "the surface of the moon",
    "page": "a scanned page of printed text",
    "brick": "a brick wall texture",
    "grass": "grass seen up close",
    "gravel": "a gravel path texture",
    "clock": "a clock on a wall",
    "cell": "a cell seen through a microscope",
}


@dataclass(frozen=True)
class Photo:
    name: str
    caption: str
    pixels: np.ndarray


def load_photos() -> list[Photo]:
    """The bundled photographs as RGB arrays (grey ones converted)."""
    try:
        from skimage import data
    except ImportError as error:  # pragma: no cover - depends on the install
        raise RuntimeError(
            "sample data needs scikit-image: pip install 'imgcurate[demo]'"
        ) from error
    photos = []
    for name, caption in PHOTOS.items():
        pixels = np.asarray(getattr(data, name)())
        if pixels.ndim == 2:
            pixels = np.stack([pixels] * 3, axis=-1)
        photos.append(Photo(name, caption, pixels[..., :3].astype(np.uint8)))
    return photos


def sample_images(count: int, seed: int = 0, max_side: int = 256) -> Iterator[tuple[str, bytes]]:
    """Yield ``count`` distinct ``(caption, jpeg bytes)`` from random crops of the photos."""
    rng = random.Random(seed)
    photos = load_photos()
    for index in range(count):
        photo = photos[index % len(photos)]
        yield photo.caption, _crop_jpeg(photo.pixels, rng, max_side)


def _crop_jpeg(pixels: np.ndarray, rng: random.Random, max_side: int) -> bytes:
    height, width = pixels.shape[:2]
    crop_h = rng.randint(height // 2, height)
    crop_w = rng.randint(width // 2, width)
    top, left = rng.randint(0, height - crop_h), rng.randint(0, width - crop_w)
    image = Image.fromarray(pixels[top : top + crop_h, left : left + crop_w])
    scale = min(1.0, max_side / max(image.size))
    if scale < 1.0:
        size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
        image = image.resize(size, Image.BICUBIC)
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=rng.choice([75, 85, 95]))
    return out.getvalue()


def img2dataset_key(shard: int, index: int, samples_per_shard: int) -> str:
    """img2dataset's key: 5 shard digits then ceil(log10(samples_per_shard)) index digits.

    ``samples_per_shard`` is the configured number (img2dataset's default is
    10,000, giving keys like ``000010005``), not the count actually written.
    """
    digits = max(1, math.ceil(math.log10(samples_per_shard)))
    return f"{shard:05d}{index:0{digits}d}"


def make_img2dataset(
    dest: str | Path,
    shards: int = 2,
    samples_per_shard: int = 10,
    failures_per_shard: int = 1,
    seed: int = 0,
    max_side: int = 256,
    configured_samples_per_shard: int = 10_000,
    copies: float = 0.0,
) -> Path:
    """Write a dataset in img2dataset's exact output layout; return its folder.

    ``copies`` is the fraction of samples that repeat an earlier sample's image
    (byte-identical, as when one file is served under several URLs), so that
    deduplication has something to find.
    """
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    images = sample_images(shards * samples_per_shard, seed=seed, max_side=max_side)
    rng = random.Random(seed)
    copy_rng = random.Random(seed + 1)
    earlier: list[tuple[str, bytes]] = []
    for shard in range(shards):
        rows = []
        for index in range(samples_per_shard):
            caption, jpeg = next(images)
            if earlier and copy_rng.random() < copies:
                caption, jpeg = copy_rng.choice(earlier)
            earlier.append((caption, jpeg))
            key = img2dataset_key(shard, index, configured_samples_per_shard)
            failed = index >= samples_per_shard - failures_per_shard
            rows.append(_img2dataset_row(key, caption, jpeg, failed))
        _write_img2dataset_shard(dest, shard, rows, rng)
    return dest


def _img2dataset_row(key: str, caption: str, jpeg: bytes, failed: bool) -> dict:
    import hashlib

    width, height = Image.open(io.BytesIO(jpeg)).size
    return {
        "url": f"https://images.example.com/{key}.jpg",
        "caption": caption,
        "key": key,
        "status": "failed_to_download" if failed else "success",
        "error_message": "HTTP Error 404: Not Found" if failed else None,
        "width": None if failed else width,
        "height": None if failed else height,
        "original_width": None if failed else width,
        "original_height": None if failed else height,
        "exif": None,
        "sha256": None if failed else hashlib.sha256(jpeg).hexdigest(),
        "_jpeg": None if failed else jpeg,
    }


def _write_img2dataset_shard(dest: Path, shard: int, rows: list[dict], rng: random.Random) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    started = time.time()
    done = [r for r in rows if r["_jpeg"] is not None]
    rng.shuffle(done)  # tars hold samples in download-completion order
    with tarfile.open(dest / f"{shard:05d}.tar", "w", format=tarfile.PAX_FORMAT) as tar:
        for row in done:
            meta = {k: v for k, v in row.items() if not k.startswith("_")}
            members = {
                "jpg": row["_jpeg"],
                "json": json.dumps(meta).encode(),
                "txt": row["caption"].encode(),
            }
            for ext, payload in members.items():
                add_member(tar, f"{row['key']}.{ext}", payload, pax=True)
    table = pa.Table.from_pylist(
        [{k: v for k, v in r.items() if not k.startswith("_")} for r in rows]
    )
    pq.write_table(table, dest / f"{shard:05d}.parquet")
    failed = len(rows) - len(done)
    stats = {
        "count": len(rows),
        "successes": len(done),
        "failed_to_download": failed,
        "failed_to_resize": 0,
        "duration": time.time() - started,
        "start_time": started,
        "end_time": time.time(),
        "status_dict": {"success": len(done), "HTTP Error 404: Not Found": failed},
    }
    (dest / f"{shard:05d}_stats.json").write_text(json.dumps(stats))


def make_webdataset(
    dest: str | Path,
    shards: int = 2,
    samples_per_shard: int = 10,
    seed: int = 0,
    max_side: int = 256,
) -> Path:
    """Write plain webdataset shards (``.jpg`` + ``.txt``, keys ``sample000123``)."""
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    images = sample_images(shards * samples_per_shard, seed=seed, max_side=max_side)
    for shard in range(shards):
        with tarfile.open(dest / f"shard-{shard:06d}.tar", "w") as tar:
            for index in range(samples_per_shard):
                caption, jpeg = next(images)
                key = f"sample{shard * samples_per_shard + index:06d}"
                add_member(tar, f"{key}.jpg", jpeg)
                add_member(tar, f"{key}.txt", caption.encode())
    return dest


def add_member(
    tar: tarfile.TarFile, name: str, payload: bytes, mtime: float = 0, pax: bool = False
) -> None:
    """Append one file member to an open tar (with a PAX header per member, as img2dataset's)."""
    info = tarfile.TarInfo(name)
    info.size = len(payload)
    info.mtime = mtime
    info.mode = 0o444
    if pax:
        info.pax_headers = {"comment": "synthetic sample"}
    tar.addfile(info, io.BytesIO(payload))
