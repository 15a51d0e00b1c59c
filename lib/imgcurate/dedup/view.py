"""The ``dedup`` view: one row per sample saying whether any method marks it a duplicate.

``duplicates`` lists only the members of duplicate groups, per method, so a
sample can appear several times or not at all. Selections want one row per
sample, so this view left-joins ``samples`` with ``duplicates`` folded per
sample::

    sample_id     every sample of ``samples``
    is_duplicate  true when some method removes it (false when in no group)
    duplicate_of  the kept sample it duplicates (exact first, then phash, then semantic)
    methods       the methods that remove it, sorted (empty when none)

so ``WHERE NOT is_duplicate`` keeps exactly one representative per group.
"""

from __future__ import annotations

VIEW = "dedup"
_PRIORITY = "CASE method WHEN 'exact' THEN 0 WHEN 'phash' THEN 1 ELSE 2 END"


def dedup_frame(store):
    """The ``dedup`` rows as a DataFrame (all false when dedup has not run yet)."""
    from pyspark.sql import functions as F

    samples = store.read("samples").select("sample_id")
    no_methods = F.expr("cast(array() as array<string>)")
    if not store.exists("duplicates"):
        return samples.select(
            "sample_id",
            F.lit(False).alias("is_duplicate"),
            F.lit(None).cast("string").alias("duplicate_of"),
            no_methods.alias("methods"),
        )
    folded = (
        store.read("duplicates")
        .groupBy("sample_id")
        .agg(
            F.expr("bool_or(coalesce(is_duplicate, true))").alias("is_duplicate"),
            F.expr(f"min_by(duplicate_of, {_PRIORITY}) FILTER (WHERE is_duplicate)").alias(
                "duplicate_of"
            ),
            F.expr("array_sort(collect_set(method) FILTER (WHERE is_duplicate))").alias("methods"),
        )
    )
    return samples.join(folded, "sample_id", "left").select(
        "sample_id",
        F.coalesce("is_duplicate", F.lit(False)).alias("is_duplicate"),
        "duplicate_of",
        F.coalesce("methods", no_methods).alias("methods"),
    )


def register_dedup_view(spark, store):
    """Register (and return) the ``dedup`` view in ``spark``'s session."""
    del spark  # the view lives in the session of the store's frames
    frame = dedup_frame(store)
    frame.createOrReplaceTempView(VIEW)
    return frame
