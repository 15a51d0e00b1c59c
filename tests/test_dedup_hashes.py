"""Image hashes, the hashing pass over a shard, and the pHash banding (no Spark)."""

from __future__ import annotations

import itertools
import random
import tarfile

import pytest
from PIL import Image

from imgcurate.dedup import near
from imgcurate.dedup.hashes import hamming, hash_shard, image_hashes, to_signed, to_unsigned
from imgcurate.images.decode import decode_image
from imgcurate.io.tarindex import scan_shard
from imgcurate.synth import add_member
from tests.dedup_data import EXACT_KINDS, NEAR_KINDS, planted_set


@pytest.fixture(scope="module")
def planted():
    return planted_set(families=12, seed=3)


def _hashes(sample):
    return image_hashes(decode_image(sample.data))


def test_pixel_hash_is_equal_exactly_for_pixel_identical_copies(planted):
    by_family = {}
    for sample in planted:
        by_family.setdefault(sample.family, []).append(sample)
    checked = set()
    for members in by_family.values():
        for a, b in itertools.combinations(members, 2):
            same_pixels = _hashes(a)[1] == _hashes(b)[1]
            assert same_pixels == (a.pixels == b.pixels), (a.kind, b.kind)
            checked.add(b.kind if b.kind != "original" else a.kind)
    assert set(EXACT_KINDS) <= checked and set(NEAR_KINDS) <= checked


def test_phash_is_close_for_copies_and_far_for_other_photos(planted):
    originals = [s for s in planted if s.kind == "original"]
    hashes = {s.key: _hashes(s)[0] for s in planted}
    unrelated = [
        hamming(hashes[a.key], hashes[b.key]) for a, b in itertools.combinations(originals, 2)
    ]
    assert min(unrelated) > 12
    for sample in planted:
        if sample.kind in ("quality", "resize", "jpeg_of_png") + EXACT_KINDS:
            original = next(s for s in originals if s.family == sample.family)
            assert hamming(hashes[sample.key], hashes[original.key]) <= 6, sample.kind


def test_hash_is_a_signed_64_bit_view():
    image = Image.new("RGB", (40, 30), (200, 10, 10))
    image.paste((0, 0, 255), (0, 0, 20, 30))
    value, pixels = image_hashes(image)
    assert -(2**63) <= value < 2**63 and len(pixels) == 32
    assert to_signed(to_unsigned(value)) == value
    assert hamming(value, to_unsigned(value)) == 0
    assert hamming(0, -1) == 64


def test_hash_shard_turns_bad_input_into_rows(tmp_path, planted):
    path = tmp_path / "shard.tar"
    with tarfile.open(path, "w") as tar:
        add_member(tar, "good.jpg", planted[0].data)
        add_member(tar, "bad.jpg", b"not an image at all")
    scanned = {s["key"]: dict(s["members"]) for s in scan_shard(str(path), "shard.tar").samples}
    images = [(key, scanned[key]["jpg"]["offset"], scanned[key]["jpg"]["size"]) for key in scanned]
    images.append(("cut", images[0][1] + 10**9, 100))
    rows = {r["sample_id"]: r for r in hash_shard(str(path), images).to_pylist()}
    assert rows["good"]["status"] == "ok" and rows["good"]["phash"] == _hashes(planted[0])[0]
    assert rows["bad"]["status"] == "decode_error" and rows["bad"]["phash"] is None
    assert rows["cut"]["status"] == "short_read"
    gone = hash_shard(str(tmp_path / "gone.tar"), images).to_pylist()
    assert {r["status"] for r in gone} == {"missing_shard"}


@pytest.mark.parametrize("distance", [0, 3, 8, 10, 15])
@pytest.mark.parametrize("count", [100, 10**5, 10**6, 10**9])
def test_every_pair_within_distance_meets_in_some_band(distance, count):
    plan = near.plan_bands(distance, count)
    assert sum(b.width for b in plan.bands) == 64
    assert len(plan.bands) * (plan.radius + 1) > distance
    rng = random.Random(distance * 7 + count)
    for _ in range(300):
        a = rng.getrandbits(64)
        b = a ^ sum(1 << bit for bit in rng.sample(range(64), rng.randint(0, distance)))
        close = [hamming(band.value(a), band.value(b)) <= plan.radius for band in plan.bands]
        assert any(close)


@pytest.mark.parametrize(("probe", "index"), [(0, 0), (1, 0), (1, 1), (2, 1), (2, 2)])
def test_flipping_both_sides_meets_exactly_within_their_sum(probe, index):
    """Values a, b meet (a ^ fa == b ^ fb) exactly when they differ in <= probe + index bits."""
    width = 8
    reachable = {fa ^ fb for fa in near.flips(width, probe) for fb in near.flips(width, index)}
    for difference in range(2**width):
        assert (difference in reachable) == (bin(difference).count("1") <= probe + index)


def test_plan_uses_few_wide_bands_for_many_hashes():
    small, large = near.plan_bands(8, 300), near.plan_bands(8, 10**6)
    assert (len(small.bands), small.radius) == (9, 0)
    assert (len(large.bands), large.radius, large.index_radius) == (3, 2, 1)
    assert large.rows_per_hash() < 200
    with pytest.raises(ValueError):
        near.plan_bands(64, 10)


def test_flips_enumerate_the_ball_once():
    masks = near.flips(32, 2)
    assert len(masks) == len(set(masks)) == 1 + 32 + 32 * 31 // 2
    assert masks[0] == 0 and max(bin(f).count("1") for f in masks) == 2
