"""Perceptual near duplicates: pHash pairs within a Hamming distance, without all pairs.

Comparing every pair of N hashes costs N²/2. Instead the 64 bits are cut
into ``m`` bands and the radius ``r = D // m`` is set so that **every pair
within distance D has a band that differs in at most r bits**: if each of
the m bands differed in r + 1 bits or more, the pair would differ in at least
m·(D // m + 1) > D bits. So the search is a join on (band, value):

- each distinct hash emits, per band, its band value with up to ``r_a`` bits
  flipped (probe side) and with up to ``r_b`` bits flipped (index side),
  ``r_a + r_b = r``. Two band values that differ in k <= r bits meet: flip
  min(k, r_a) of those bits on one side and the rest on the other;
- keep a < b, verify ``bit_count(a ^ b) <= D``, drop repeats.

No pair within D is missed, and only pairs with a nearly equal band are
compared. Few wide bands mean many flipped rows but few chance matches; many
narrow bands the reverse; splitting r between the sides (meet in the middle)
trades rows for matches again. :func:`plan_bands` picks the cheapest by the
expected count of both for the number of distinct hashes (for D = 8: 9 exact
bands for hundreds, 5 bands within 1 bit for tens of thousands, 3 bands of
about 21 bits within 2 bits, one flipped on each side, for millions).

The expected work per hash grows with N at a fixed D (a radius of 8 bits in
64 is wide): about 200 rows per hash at 10⁵ hashes and 700 at 10⁶. For
hundreds of millions of images a smaller ``--phash-distance`` keeps it cheap.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from math import comb

from imgcurate.dedup.hashes import HASH_BITS, to_signed, to_unsigned

#: Default ``--phash-distance``: on the planted-copy benchmark (bench/phash_curve.py)
#: recall stops growing at 8 bits (0.993) while unrelated photos stay 14 or more bits
#: apart. A hash nearly always has 32 bits set, so distances are even and 9 acts as 8.
DEFAULT_DISTANCE = 8


@dataclass(frozen=True)
class Band:
    index: int
    shift: int
    width: int

    @property
    def mask(self) -> int:
        """Mask of the band's bits after shifting them down (signed 64-bit)."""
        return to_signed((1 << self.width) - 1)

    def value(self, phash: int) -> int:
        return (to_unsigned(phash) >> self.shift) & ((1 << self.width) - 1)


@dataclass(frozen=True)
class BandPlan:
    """How the hash is cut: ``bands``, and how many bits each side flips per band.

    The probe side flips up to ``radius - index_radius`` bits, the index side
    up to ``index_radius``; together every band within ``radius`` bits meets.
    """

    distance: int
    bands: tuple[Band, ...]
    radius: int
    index_radius: int = 0

    @property
    def probe_radius(self) -> int:
        return self.radius - self.index_radius

    def rows_per_hash(self) -> int:
        return sum(
            _ball(b.width, self.probe_radius) + _ball(b.width, self.index_radius)
            for b in self.bands
        )

    def expected_matches(self, count: int) -> float:
        """Chance matches among ``count`` uniformly random hashes (an estimate)."""
        return (
            count
            * count
            * sum(
                _ball(b.width, self.probe_radius) * _ball(b.width, self.index_radius) / 2**b.width
                for b in self.bands
            )
        )

    def cost(self, count: int) -> float:
        return count * self.rows_per_hash() + self.expected_matches(count)


def flips(width: int, radius: int) -> list[int]:
    """XOR masks of every value within ``radius`` bits of a ``width``-bit value (0 first)."""
    masks = []
    for bits in range(radius + 1):
        for chosen in itertools.combinations(range(width), bits):
            masks.append(sum(1 << i for i in chosen))
    return masks


def _ball(width: int, radius: int) -> int:
    return sum(comb(width, i) for i in range(min(radius, width) + 1))


def split_bits(count: int) -> tuple[Band, ...]:
    """Cut 64 bits into ``count`` bands of nearly equal width, lowest bits first."""
    widths = [HASH_BITS // count + (1 if i < HASH_BITS % count else 0) for i in range(count)]
    shifts = [sum(widths[:i]) for i in range(count)]
    return tuple(Band(i, s, w) for i, (s, w) in enumerate(zip(shifts, widths, strict=True)))


def plan_bands(distance: int, count: int) -> BandPlan:
    """The cheapest banding that finds every pair within ``distance`` among ``count`` hashes."""
    if not 0 <= distance < HASH_BITS:
        raise ValueError(f"phash distance must be between 0 and {HASH_BITS - 1}, not {distance}")
    plans = [
        BandPlan(distance, split_bits(m), distance // m, index_radius)
        for m in range(1, min(distance + 1, HASH_BITS) + 1)
        for index_radius in range(distance // m // 2 + 1)
    ]
    plans = [p for p in plans if p.rows_per_hash() <= 1_000_000]
    return min(plans, key=lambda p: (p.cost(max(count, 1)), -len(p.bands), p.index_radius))


def near_pairs(spark, distinct_hashes, plan: BandPlan):
    """``(a, b, distance)`` for every pair of distinct hashes within ``plan.distance``, a < b.

    ``distinct_hashes`` has one column ``phash`` (bigint), each value once.
    """
    from pyspark.sql import functions as F

    def flipped(radius: int, name: str):
        masks = spark.createDataFrame(
            [
                (b.index, b.shift, b.mask, to_signed(f))
                for b in plan.bands
                for f in flips(b.width, radius)
            ],
            "band int, shift int, mask long, flip long",
        )
        value = F.expr("(shiftrightunsigned(phash, shift) & mask) ^ flip")
        return distinct_hashes.crossJoin(F.broadcast(masks)).select(
            "band", value.alias("value"), F.col("phash").alias(name)
        )

    probes, index = flipped(plan.probe_radius, "a"), flipped(plan.index_radius, "b")
    return (
        probes.join(index, ["band", "value"])
        .filter(F.col("a") < F.col("b"))
        .select("a", "b")
        .distinct()
        .withColumn("distance", F.expr("bit_count(a ^ b)").cast("int"))
        .filter(F.col("distance") <= plan.distance)
    )


def phash_groups(spark, hashes, distance: int):
    """``(sample_id, group)`` for samples in a near-duplicate group of two or more.

    ``hashes`` has ``sample_id`` and ``phash``. Pairs of hashes within
    ``distance`` are linked, and groups are the connected components of those
    links; samples with the same hash always share a group. ``group`` is the
    smallest hash of the component.
    """
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    from imgcurate.dedup.components import connected_components

    distinct = hashes.select("phash").distinct().localCheckpoint(eager=True)
    plan = plan_bands(distance, distinct.count())
    pairs = near_pairs(spark, distinct, plan)
    components = connected_components(pairs, "a", "b")
    grouped = hashes.join(components.withColumnRenamed("node", "phash"), "phash", "left").select(
        "sample_id", "phash", F.coalesce("component", "phash").alias("group")
    )
    size = F.count("*").over(Window.partitionBy("group"))
    return grouped.withColumn("size", size).filter(F.col("size") > 1).drop("size")
