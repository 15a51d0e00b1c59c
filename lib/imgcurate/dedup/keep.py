"""Which member of a duplicate group is kept: one rule, used the same way by every method.

Exact and pHash groups keep the member that is best by (score with
``best:COLUMN``), then resolution (width × height), then the smallest
``sample_id``, so the choice is deterministic and the same picture is kept
by both methods: an exact group always lies inside one pHash group, and the
pHash representative is therefore also its exact group's representative.

Semantic dedup orders each k-means cluster by the rule and keeps, greedily,
every member not too similar to one kept before it:

- ``hard``: farthest from the centroid first (SemDeDup's default: keeps the
  least prototypical examples);
- ``easy``: closest to the centroid first;
- ``random``: a seeded hash of the ``sample_id`` (reproducible, independent
  of partitioning);
- ``best:COLUMN``: highest ``COLUMN`` (e.g. ``aesthetic``) first, then resolution.
"""

from __future__ import annotations

from dataclasses import dataclass

RULES = ("hard", "easy", "random", "best")


class KeepRuleError(ValueError):
    """A ``--keep`` value that is not one of the rules."""


@dataclass(frozen=True)
class KeepRule:
    name: str = "hard"
    column: str | None = None
    seed: int = 0

    @classmethod
    def parse(cls, text: str, seed: int = 0) -> KeepRule:
        """``hard``, ``easy``, ``random`` or ``best:COLUMN``."""
        name, _, column = text.partition(":")
        name = name.strip().lower()
        if name not in RULES:
            raise KeepRuleError(f"--keep {text!r}: use hard, easy, random or best:COLUMN")
        if (name == "best") != bool(column.strip()):
            raise KeepRuleError(
                f"--keep {text!r}: only best takes a column, and it needs one (best:aesthetic)"
            )
        return cls(name, column.strip() or None, seed)

    def __str__(self) -> str:
        return f"best:{self.column}" if self.column else self.name


def group_order(rule: KeepRule) -> list:
    """Spark sort expressions, best member first, for exact and pHash groups.

    Needs columns ``pixels`` (width × height) and, for ``best``, ``score``.
    """
    from pyspark.sql import functions as F

    order = [F.col("pixels").desc_nulls_last(), F.col("sample_id").asc()]
    if rule.name == "best":
        order.insert(0, F.col("score").desc_nulls_last())
    return order


def semantic_keys(rule: KeepRule, centroid_sim: str = "centroid_sim") -> list:
    """Spark columns ``key1``, ``key2`` whose ascending order (then ``sample_id``) is keep order.

    Needs ``centroid_sim`` (cosine similarity to the cluster centroid) and, for
    ``best``, ``score`` and ``pixels``.
    """
    from pyspark.sql import functions as F

    zero = F.lit(0.0)
    if rule.name == "hard":
        keys = (F.col(centroid_sim), zero)
    elif rule.name == "easy":
        keys = (-F.col(centroid_sim), zero)
    elif rule.name == "random":
        keys = (F.xxhash64(F.lit(rule.seed), F.col("sample_id")).cast("double"), zero)
    else:
        keys = (
            F.coalesce(-F.col("score"), F.lit(float("inf"))),
            F.coalesce(-F.col("pixels"), F.lit(0.0)),
        )
    return [keys[0].cast("double").alias("key1"), keys[1].cast("double").alias("key2")]
