"""Precision and recall of pHash near-duplicate detection against the Hamming distance.

    python bench/phash_curve.py [--seeds 0,1,2] [--max-distance 16]

Builds the planted-copy set of the tests (real photos; copies re-encoded,
resized 0.5–0.9×, cropped < 5 %, PNG↔JPEG, plus pixel-identical copies) for
each seed and prints, for every distance D:

- pairs: precision / recall of "pHash distance <= D" over all pairs of samples;
- groups: the same after connected components (what ``dedup`` writes: a pair
  is found when both samples land in one group);
- unrelated: pairs within D among 256 unrelated photos (disjoint 4×4 tiles of
  the originals; textures such as brick or gravel look alike even when they
  are different pictures), the false-positive side a bigger set would show.

The banded Spark join finds exactly the pairs within D (the tests check it
against brute force), so the curve is computed here without Spark.
"""

from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from PIL import Image  # noqa: E402

from imgcurate.dedup.components import union_find  # noqa: E402
from imgcurate.dedup.hashes import hamming, phash  # noqa: E402
from imgcurate.dedup.near import DEFAULT_DISTANCE  # noqa: E402
from imgcurate.images.decode import decode_image  # noqa: E402
from imgcurate.synth import load_photos  # noqa: E402
from tests.dedup_data import planted_set  # noqa: E402


def planted_pairs(seed: int) -> tuple[list[str], dict[tuple[str, str], int], set]:
    """Keys, the distance of every pair, and the true near-duplicate pairs."""
    samples = planted_set(families=40, seed=seed)
    hashes = {s.key: phash(decode_image(s.data)) for s in samples}
    family = {s.key: s.family for s in samples}
    keys = [s.key for s in samples]
    distances = {(a, b): hamming(hashes[a], hashes[b]) for a, b in itertools.combinations(keys, 2)}
    truth = {pair for pair in distances if family[pair[0]] == family[pair[1]]}
    return keys, distances, truth


def grouped(keys: list[str], pairs: set) -> set:
    """Every pair inside one connected component of ``pairs``."""
    labels = union_find(pairs)
    groups: dict[str, list[str]] = {}
    for key in keys:
        groups.setdefault(labels.get(key, key), []).append(key)
    order = {key: n for n, key in enumerate(keys)}
    return {
        tuple(sorted(p, key=order.get))
        for members in groups.values()
        for p in itertools.combinations(members, 2)
    }


def unrelated_distances() -> list[int]:
    tiles = []
    for photo in load_photos():
        height, width = photo.pixels.shape[:2]
        for row, col in itertools.product(range(4), range(4)):
            part = photo.pixels[
                row * height // 4 : (row + 1) * height // 4,
                col * width // 4 : (col + 1) * width // 4,
            ]
            tiles.append(phash(Image.fromarray(part)))
    return [hamming(a, b) for a, b in itertools.combinations(tiles, 2)]


def ratio(hits: int, total: int) -> float:
    return hits / total if total else 1.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--max-distance", type=int, default=16)
    args = parser.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",")]
    sets = [planted_pairs(seed) for seed in seeds]
    unrelated = unrelated_distances()
    samples = sum(len(keys) for keys, _, _ in sets)
    true_pairs = sum(len(truth) for _, _, truth in sets)
    print(
        f"pHash near duplicates: {len(seeds)} planted sets, {samples} samples, "
        f"{true_pairs} true pairs; {len(unrelated)} pairs of unrelated photo tiles"
    )
    print(f"{'D':>3} {'pair P':>7} {'pair R':>7} {'group P':>8} {'group R':>8} {'unrelated':>10}")
    for distance in range(args.max_distance + 1):
        counts = [0, 0, 0, 0]  # pair hits, pairs found, group hits, group pairs found
        for keys, distances, truth in sets:
            found = {pair for pair, d in distances.items() if d <= distance}
            groups = grouped(keys, found)
            counts[0] += len(found & truth)
            counts[1] += len(found)
            counts[2] += len(groups & truth)
            counts[3] += len(groups)
        false_pairs = sum(1 for d in unrelated if d <= distance)
        mark = "  <- default" if distance == DEFAULT_DISTANCE else ""
        pair_p, pair_r = ratio(counts[0], counts[1]), ratio(counts[0], true_pairs)
        group_p, group_r = ratio(counts[2], counts[3]), ratio(counts[2], true_pairs)
        print(
            f"{distance:>3} {pair_p:>7.3f} {pair_r:>7.3f} {group_p:>8.3f} {group_r:>8.3f} "
            f"{false_pairs:>10}{mark}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
