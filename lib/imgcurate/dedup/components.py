"""Connected components of an edge list: near-duplicate pairs become groups.

Near-duplicate pairs chain (A is close to B, B to C), so groups are the
connected components of the pair graph. Duplicate pairs are usually few
next to the samples, so an edge list that fits the driver comfortably
(``driver_limit`` edges) is solved there with union-find, in one pass.
Larger ones stay in Spark, with DataFrame joins:

1. every node starts labelled with the smallest id among itself and its neighbours;
2. each round, a node takes the smallest label among its neighbours', then
   jumps to its label's label (pointer jumping), which halves long chains
   each round instead of walking them one hop at a time;
3. stop when no label changes.

Labels only decrease and always name a node of the same component, so at the
fixed point both ends of every edge carry the same label, and it is the
smallest id of the component. Both ways give the same labels.
"""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)

#: Edge lists up to this size are solved on the driver (a few hundred MB of Python objects).
DRIVER_LIMIT = 2_000_000
#: A safety stop; pointer jumping converges in a few rounds even on long chains.
MAX_ROUNDS = 64


def connected_components(edges, src: str = "src", dst: str = "dst", driver_limit=DRIVER_LIMIT):
    """``(node, component)`` for every node of ``edges``; component = smallest node id.

    ``edges`` holds pairs of comparable ids (any orientation, duplicates allowed).
    """
    from pyspark.sql import functions as F

    links = (
        edges.select(F.least(src, dst).alias("node"), F.greatest(src, dst).alias("nbr"))
        .filter(F.col("node") != F.col("nbr"))
        .distinct()
    )
    if driver_limit > 0:
        head = links.limit(driver_limit + 1).collect()
        if len(head) <= driver_limit:
            labels = union_find((row["node"], row["nbr"]) for row in head)
            schema = links.select("node", F.col("node").alias("component")).schema
            return edges.sparkSession.createDataFrame(list(labels.items()), schema)
    return _spark_components(links)


def union_find(pairs) -> dict:
    """``{node: smallest node of its component}`` for an iterable of pairs."""
    parent: dict = {}

    def root(node):
        parent.setdefault(node, node)
        while parent[node] != node:
            parent[node] = parent[parent[node]]
            node = parent[node]
        return node

    for a, b in pairs:
        ra, rb = root(a), root(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    return {node: root(node) for node in parent}


def _spark_components(links):
    from pyspark.sql import functions as F

    links = links.unionByName(links.select(F.col("nbr").alias("node"), F.col("node").alias("nbr")))
    links = links.localCheckpoint(eager=True)
    labels = links.groupBy("node").agg(F.least(F.col("node"), F.min("nbr")).alias("label"))
    labels = labels.localCheckpoint(eager=True)
    for round_number in range(1, MAX_ROUNDS + 1):
        updated = _jump(_propagate(links, labels)).localCheckpoint(eager=True)
        changed = updated.filter(F.col("label") != F.col("before")).count()
        labels = updated.drop("before")
        log.debug("components: round %d, %d labels changed", round_number, changed)
        if changed == 0:
            return labels.withColumnRenamed("label", "component")
    raise RuntimeError(f"connected components did not converge in {MAX_ROUNDS} rounds")


def _propagate(links, labels):
    """Each node takes the smallest of its own label and its neighbours' labels."""
    from pyspark.sql import functions as F

    offered = (
        links.join(labels.withColumnRenamed("node", "nbr"), "nbr")
        .groupBy("node")
        .agg(F.min("label").alias("offered"))
    )
    return labels.join(offered, "node", "left").select(
        "node",
        F.least("label", F.coalesce("offered", "label")).alias("label"),
        F.col("label").alias("before"),
    )


def _jump(labels):
    """Pointer jumping: a node's label becomes its label's label when that is smaller."""
    from pyspark.sql import functions as F

    via = labels.select(F.col("node").alias("label"), F.col("label").alias("via"))
    return labels.join(via, "label", "left").select(
        "node", F.least("label", F.coalesce("via", "label")).alias("label"), "before"
    )
