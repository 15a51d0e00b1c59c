"""GPU embedding throughput without Spark: how close does the shard pipeline get to the model?

Measures, on one device and the same tar shards:

- model only: the embedder and heads on synthetic tensors already on the device
  (the ceiling: what the GPU can do);
- decode only: byte-range reads, JPEG decode and the reference preprocessing in
  the thread pool, with the fast JPEG path on and off (the CPU's ceiling);
- end to end: ``embed_shard`` over the shards (what a Spark task gets);

and prints images/s with the ratios between them. Defaults are the production
setting: ``openclip:ViT-L-14/openai`` with every head, fp16 autocast, batch 256.
Without downloaded weights use ``--random-weights`` (speed does not depend on
the values). Shards are generated from scikit-image's sample photos unless
``--shards`` names existing ones.

    python bench/gpu_embed.py --random-weights
    python bench/gpu_embed.py --weights-dir /models --shards '/data/shards/0000*.tar'
"""

from __future__ import annotations

import argparse
import glob
import io
import os
import random
import sys
import tarfile
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

DEFAULT_THREADS = min(16, os.cpu_count() or 1)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="openclip:ViT-L-14/openai")
    parser.add_argument("--heads", default=None, help="comma-separated (default: all that fit)")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--weights-dir", default=None, metavar="DIR")
    source.add_argument("--random-weights", action="store_true")
    parser.add_argument("--device", default="cuda", help="cuda, cuda:N or cpu (default: cuda)")
    parser.add_argument("--precision", default="fp16", choices=("fp16", "bf16", "fp32"))
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--threads", type=int, default=DEFAULT_THREADS, help="decode threads")
    parser.add_argument("--shards", default=None, help="glob of existing tar shards")
    parser.add_argument("--num-shards", type=int, default=4, help="shards to generate")
    parser.add_argument("--per-shard", type=int, default=512, help="images per generated shard")
    parser.add_argument(
        "--side", type=int, default=1024, help="about the longer side of generated images"
    )
    parser.add_argument("--model-batches", type=int, default=20, help="timed model-only batches")
    parser.add_argument("--warmup", type=int, default=3, help="untimed batches first")
    return parser


def resolve_device(requested: str) -> tuple[str, str | None]:
    """The device to use, and a warning when CUDA was asked for but is not there."""
    import torch

    if requested.startswith("cuda") and not torch.cuda.is_available():
        return "cpu", "CUDA is not available: running on the CPU, these are not GPU numbers"
    return requested, None


def make_shards(folder: Path, count: int, per_shard: int, side: int, seed: int = 0) -> list[str]:
    """WebDataset shards of JPEGs cut from scikit-image's photos at random scales and crops."""
    import numpy as np
    from PIL import Image
    from skimage import data

    photos = [
        Image.fromarray(f()) for f in (data.astronaut, data.coffee, data.chelsea, data.rocket)
    ]
    rng = random.Random(seed)

    def one(index: int) -> bytes:
        photo = photos[index % len(photos)]
        scale = side / max(photo.size) * rng.uniform(0.8, 1.25)
        image = photo.resize((int(photo.width * scale), int(photo.height * scale)), Image.BICUBIC)
        image = Image.fromarray(np.roll(np.asarray(image), rng.randrange(50), axis=1))
        out = io.BytesIO()
        image.save(out, "JPEG", quality=rng.choice((85, 90, 95)))
        return out.getvalue()

    paths = []
    with ThreadPoolExecutor(DEFAULT_THREADS) as pool:
        for shard in range(count):
            path = folder / f"{shard:05d}.tar"
            images = pool.map(one, range(shard * per_shard, (shard + 1) * per_shard))
            with tarfile.open(path, "w") as tar:
                for index, payload in enumerate(images):
                    key = f"{shard:05d}{index:04d}"
                    for ext, data_ in (("jpg", payload), ("txt", f"photo {index}".encode())):
                        info = tarfile.TarInfo(f"{key}.{ext}")
                        info.size = len(data_)
                        tar.addfile(info, io.BytesIO(data_))
            paths.append(str(path))
    return paths


def index_shard(path: str) -> list[tuple[str, int, int, str]]:
    """``(sample_id, offset, size, caption)`` of each image member, read with ``tarfile``."""
    with tarfile.open(path) as tar:
        members = tar.getmembers()
        captions = {
            m.name.rsplit(".", 1)[0]: tar.extractfile(m).read().decode("utf-8", "replace")
            for m in members
            if m.name.endswith(".txt")
        }
    images = [m for m in members if m.name.lower().endswith((".jpg", ".jpeg", ".png", ".webp"))]
    return [(m.name, m.offset_data, m.size, captions.get(m.name.rsplit(".", 1)[0])) for m in images]


def time_model_only(models, batch_size: int, batches: int, warmup: int) -> float:
    """Images/s of the embedder and heads on random tensors already on the device."""
    import torch

    side = models.embedder.image_size
    pixels = torch.randn(batch_size, 3, side, side, device=models.device)
    captions = ["a photo of a cat sitting on a sofa"] * batch_size
    for _ in range(warmup):
        models.forward(pixels, captions)
    _sync(models.device)
    start = time.perf_counter()
    for _ in range(batches):
        models.forward(pixels, captions)  # returns host arrays, so each batch is synchronised
    return batch_size * batches / (time.perf_counter() - start)


def time_decode_only(shards: list[tuple[str, list]], embedder, fast: bool, threads: int) -> float:
    """Images/s of range reads, decode and preprocessing in a thread pool, as embed_shard does."""
    from imgcurate.images.decode import decode_image
    from imgcurate.io.ranges import read_ranges

    min_side = 2 * embedder.image_size if fast else None

    def prepare(data: bytes):
        return embedder.preprocess(decode_image(data, min_side))

    count = 0
    start = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        for path, refs in shards:
            ranges = [(i, offset, size) for i, (_, offset, size, _) in enumerate(refs)]
            datas = (data for _, data in read_ranges(path, ranges))
            for _ in pool.map(prepare, datas):
                count += 1
    return count / (time.perf_counter() - start)


def time_end_to_end(shards, models, batch_size: int, fast: bool, threads: int) -> float:
    from imgcurate.embed import embed_shard

    count = 0
    start = time.perf_counter()
    for path, refs in shards:
        table = embed_shard(
            path, refs, models, batch_size=batch_size, fast_decode=fast, decode_threads=threads
        )
        count += table.num_rows
    return count / (time.perf_counter() - start)


def _sync(device) -> None:
    import torch

    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never download in the middle of a timing
    import torch

    from imgcurate.commands.models import parse_heads
    from imgcurate.models import ModelSpec, load_models

    device, note = resolve_device(args.device)
    if note:
        print(f"WARNING: {note}", file=sys.stderr)
    heads = parse_heads(args.heads) if args.heads else None
    spec = ModelSpec(
        args.model,
        heads,
        weights_dir=args.weights_dir,
        random_weights=args.random_weights,
        allow_download=False,
        precision=args.precision,
    )
    started = time.perf_counter()
    models = load_models(spec, device)
    load_s = time.perf_counter() - started
    name = torch.cuda.get_device_name(models.device) if models.device.type == "cuda" else "CPU"
    print(f"device        {models.device} ({name}), torch {torch.__version__}, {args.precision}")
    print(f"model         {models.name} + {','.join(models.head_names) or 'no heads'}")
    print(f"weights       {models.weights}  (loaded in {load_s:.1f} s)")

    with tempfile.TemporaryDirectory(prefix="gpu-embed-") as scratch:
        if args.shards:
            paths = sorted(glob.glob(args.shards))
        else:
            paths = make_shards(Path(scratch), args.num_shards, args.per_shard, args.side)
        shards = [(path, index_shard(path)) for path in paths]
        images = sum(len(refs) for _, refs in shards)
        mean_kb = sum(size for _, refs in shards for _, _, size, _ in refs) / max(images, 1) / 1e3
        print(f"data          {images} images in {len(shards)} shards, {mean_kb:.0f} KB each")
        if not images:
            print("no images found", file=sys.stderr)
            return 1

        model_only = time_model_only(models, args.batch_size, args.model_batches, args.warmup)
        time_end_to_end(shards[:1], models, args.batch_size, True, args.threads)  # warm caches
        results = {}
        for fast in (True, False):
            decode = time_decode_only(shards, models.embedder, fast, args.threads)
            end_to_end = time_end_to_end(shards, models, args.batch_size, fast, args.threads)
            results[fast] = (decode, end_to_end)
        peak = torch.cuda.max_memory_allocated(models.device) if device != "cpu" else 0

    print(f"batch         {args.batch_size}, {args.threads} decode threads")
    print(f"model only    {model_only:9.1f} img/s  (synthetic tensors on the device)")
    for fast, (decode, end_to_end) in results.items():
        label = "fast decode" if fast else "full decode"
        print(f"{label:<13} decode only {decode:9.1f} img/s   end to end {end_to_end:9.1f} img/s")
    print("ratios")
    for fast, (decode, end_to_end) in results.items():
        label = "fast decode" if fast else "full decode"
        bound = min(model_only, decode)
        print(
            f"  {label:<11} end-to-end / model-only {end_to_end / model_only:5.2f}   "
            f"end-to-end / decode-only {end_to_end / decode:5.2f}   "
            f"end-to-end / min(both) {end_to_end / bound:5.2f}"
        )
    fast_gain = results[True][1] / results[False][1]
    print(
        f"  fast decode speed-up: decode {results[True][0] / results[False][0]:.2f}x, "
        f"end to end {fast_gain:.2f}x"
    )
    if peak:
        print(f"peak GPU mem  {peak / 2**30:.1f} GiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
