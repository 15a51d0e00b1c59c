"""Duplicate groups to rows of the ``duplicates`` table: one representative kept per group.

Every method writes the same columns, so the table can be queried as one:

- ``sample_id``, ``method`` (``exact`` | ``phash`` | ``semantic``);
- ``group_id``: the sample kept for the group (its representative);
- ``is_duplicate``: true for every member but the representative;
- ``duplicate_of``: the kept sample this one duplicates (null for the kept one);
- ``similarity``: cosine similarity to ``duplicate_of`` (semantic);
- ``distance``: pHash Hamming distance to the representative (exact: 0).

Semantic rows add one boolean column per eps (see :mod:`imgcurate.dedup.semantic`).
"""

from __future__ import annotations

from imgcurate.dedup.keep import KeepRule, group_order

COLUMNS = (
    ("sample_id", "string"),
    ("method", "string"),
    ("group_id", "string"),
    ("is_duplicate", "boolean"),
    ("duplicate_of", "string"),
    ("similarity", "double"),
    ("distance", "int"),
)


def group_rows(groups, preferences, rule: KeepRule, method: str):
    """Rows for every member of every group; the first by the keep rule is the representative.

    ``groups`` has ``sample_id`` and ``group`` (plus ``phash`` for pHash groups);
    ``preferences`` has ``sample_id``, ``pixels`` and, for ``best``, ``score``.
    """
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    ordered = Window.partitionBy("group").orderBy(*group_order(rule))
    whole = ordered.rowsBetween(Window.unboundedPreceding, Window.unboundedFollowing)
    frame = groups.join(preferences, "sample_id", "left")
    representative = F.first("sample_id").over(whole)
    if "phash" in groups.columns:
        distance = F.expr("bit_count(phash ^ first_phash)")
        frame = frame.withColumn("first_phash", F.first("phash").over(whole))
    else:
        distance = F.lit(0)
    is_duplicate = F.col("sample_id") != F.col("group_id")
    return (
        frame.withColumn("group_id", representative)
        .withColumn("distance", distance.cast("int"))
        .select(
            "sample_id",
            F.lit(method).alias("method"),
            "group_id",
            is_duplicate.alias("is_duplicate"),
            F.when(is_duplicate, F.col("group_id")).alias("duplicate_of"),
            F.lit(None).cast("double").alias("similarity"),
            "distance",
        )
    )


def empty_rows(spark):
    """An empty frame with the ``duplicates`` columns (a run that finds nothing)."""
    schema = ", ".join(f"{name} {kind}" for name, kind in COLUMNS)
    return spark.createDataFrame([], schema)
