"""Exact duplicates: samples whose image decodes to the same pixels, or has the same bytes.

The pixel hash catches the same picture saved twice with different metadata
(EXIF, comments, an orientation tag instead of rotated pixels); equal bytes
always decode to equal pixels, so it subsumes ``sha256``. Samples that have
no pixel hash (the hashing pass could not decode them) still group by their
bytes' ``sha256`` from scan.
"""

from __future__ import annotations


def exact_groups(members):
    """``(sample_id, group)`` for samples in an exact group of two or more.

    ``members`` has ``sample_id``, ``pixel_hash`` (may be null) and ``sha256``.
    """
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    key = F.coalesce(F.concat(F.lit("pixels:"), "pixel_hash"), F.concat(F.lit("sha256:"), "sha256"))
    keyed = members.filter(key.isNotNull()).select("sample_id", key.alias("group"))
    size = F.count("*").over(Window.partitionBy("group"))
    return keyed.withColumn("size", size).filter(F.col("size") > 1).drop("size")
