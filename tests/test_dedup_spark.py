"""Dedup on Spark: components, the banded pHash join, and planted copies end to end."""

from __future__ import annotations

import itertools
import random
import shutil

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from imgcurate import cli
from imgcurate.dedup.components import connected_components
from imgcurate.dedup.hashes import hamming, to_signed
from imgcurate.dedup.near import near_pairs, plan_bands
from imgcurate.dedup.view import register_dedup_view
from imgcurate.spark.tables import TableStore
from imgcurate.stages.dedup import DedupOptions, run_dedup
from imgcurate.stages.scan import run_scan
from tests.dedup_data import planted_set, write_planted_shards

pytestmark = pytest.mark.spark


@pytest.mark.parametrize(
    "driver_limit", [pytest.param(0, marks=pytest.mark.slow), 1000], ids=["spark", "driver"]
)
def test_components_join_chains_and_keep_groups_apart(spark, driver_limit):
    chain = [(i, i + 1) for i in range(0, 16)]  # one path 0..16, given in both orientations
    chain += [(b, a) for a, b in chain[::3]]
    star = [(100, 101), (102, 100), (103, 100), (101, 102)]
    pair = [(201, 200), (200, 201)]
    edges = spark.createDataFrame(chain + star + pair, "src long, dst long")
    found = connected_components(edges, driver_limit=driver_limit).collect()
    labels = {r["node"]: r["component"] for r in found}
    assert len(found) == len(labels) == 17 + 4 + 2
    assert {labels[i] for i in range(17)} == {0}
    assert {labels[i] for i in range(100, 104)} == {100}
    assert labels[200] == labels[201] == 200


@pytest.mark.parametrize("distance", [4, 8])
def test_banded_join_finds_exactly_the_pairs_within_distance(spark, distance):
    rng = random.Random(distance)
    hashes = set()
    for _ in range(150):
        base = rng.getrandbits(64)
        hashes.add(base)
        for _ in range(rng.randint(0, 3)):
            flips = rng.sample(range(64), rng.randint(1, distance + 3))
            hashes.add(base ^ sum(1 << b for b in flips))
    signed = sorted(to_signed(h) for h in hashes)
    expected = {(a, b) for a, b in itertools.combinations(signed, 2) if hamming(a, b) <= distance}
    frame = spark.createDataFrame([(h,) for h in signed], "phash long")
    for count in (len(signed), 10**6):  # the plan for this size, and one for millions
        plan = plan_bands(distance, count)
        found = {(r["a"], r["b"]) for r in near_pairs(spark, frame, plan).collect()}
        assert found == expected, plan


@pytest.fixture(scope="module")
def planted_tables(spark, tmp_path_factory):
    """The planted-copy set written as shards, scanned, and deduplicated (exact + phash)."""
    root = tmp_path_factory.mktemp("planted")
    samples = planted_set(families=40, seed=0)
    write_planted_shards(root / "shards", samples)
    tables = str(root / "tables")
    run_scan(spark, str(root / "shards"), tables, progress=False)
    summary = run_dedup(spark, tables, DedupOptions(methods=("exact", "phash")), progress=False)
    return samples, tables, summary


def _sample_id(sample_index: int, key: str) -> str:
    return f"part-{sample_index % 2:05d}.tar/{key}"


def _truth(samples, attribute: str) -> set[tuple[str, str]]:
    ids = [(_sample_id(n, s.key), getattr(s, attribute)) for n, s in enumerate(samples)]
    return {
        tuple(sorted((a, b))) for (a, ga), (b, gb) in itertools.combinations(ids, 2) if ga == gb
    }


def _found(spark, tables: str, method: str) -> set[tuple[str, str]]:
    rows = TableStore(spark, tables).read("duplicates").filter(f"method = '{method}'").collect()
    groups: dict[str, list[str]] = {}
    for row in rows:
        groups.setdefault(row["group_id"], []).append(row["sample_id"])
    return {
        tuple(sorted(p)) for members in groups.values() for p in itertools.combinations(members, 2)
    }


def _precision_recall(found: set, truth: set) -> tuple[float, float]:
    hits = len(found & truth)
    return hits / max(len(found), 1), hits / len(truth)


def test_exact_duplicates_are_found_with_precision_and_recall_one(spark, planted_tables):
    samples, tables, summary = planted_tables
    assert summary.hashed == len(samples) and not summary.hash_errors
    assert _precision_recall(_found(spark, tables, "exact"), _truth(samples, "pixels")) == (1, 1)


def test_phash_near_duplicates_at_the_default_distance(spark, planted_tables):
    samples, tables, _ = planted_tables
    precision, recall = _precision_recall(_found(spark, tables, "phash"), _truth(samples, "family"))
    assert precision >= 0.95 and recall >= 0.95, (precision, recall)


def test_one_sample_kept_per_group_and_the_dedup_view(spark, planted_tables):
    samples, tables, summary = planted_tables
    store = TableStore(spark, tables)
    duplicates = store.read("duplicates").collect()
    for method in ("exact", "phash"):
        groups: dict[str, list] = {}
        for row in (r for r in duplicates if r["method"] == method):
            groups.setdefault(row["group_id"], []).append(row)
        for group_id, rows in groups.items():
            kept = [r["sample_id"] for r in rows if not r["is_duplicate"]]
            assert kept == [group_id]
            assert {r["duplicate_of"] for r in rows if r["is_duplicate"]} == {group_id}
    view = {r["sample_id"]: r for r in register_dedup_view(spark, store).collect()}
    assert len(view) == len(samples)
    kept_families = {}
    for n, sample in enumerate(samples):
        if not view[_sample_id(n, sample.key)]["is_duplicate"]:
            kept_families.setdefault(sample.family, []).append(sample.kind)
    families = {s.family for s in samples}
    assert set(kept_families) == families  # no family lost entirely
    assert sum(len(k) for k in kept_families.values()) <= len(families) + 3  # crops may escape
    query = "SELECT count(*) AS n FROM dedup WHERE NOT is_duplicate"
    assert spark.sql(query).first()["n"] == len(samples) - summary.removed


def test_rerun_hashes_nothing_new_and_the_cli_prints_a_summary(spark, planted_tables, capsys):
    _, tables, first = planted_tables
    assert cli.main(["dedup", "--tables", tables, "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "hashed" not in out  # every sample already has a hash
    assert f"{first.removed} duplicates removed" in out
    assert "exact:" in out and "phash:" in out and "semantic" not in out
    assert cli.main(["dedup", "--tables", tables, "--keep", "largest"]) == 2


def test_all_methods_together_keep_exactly_one_per_family(spark, planted_tables, tmp_path):
    """Embeddings that put each family in one tight clump: semantic removes what pHash missed,
    never a sample exact or pHash already removed, and every family keeps one member."""
    samples, tables, _ = planted_tables
    tables = str(shutil.copytree(tables, tmp_path / "tables"))
    rng = np.random.default_rng(0)
    bases = rng.standard_normal((max(s.family for s in samples) + 1, 32))
    ids = [_sample_id(n, s.key) for n, s in enumerate(samples)]
    vectors = [bases[s.family] + 0.01 * rng.standard_normal(32) for s in samples]
    embeddings = pa.table(
        {
            "sample_id": ids,
            "status": ["ok"] * len(ids),
            "vector": pa.array([v.astype(np.float32) for v in vectors], pa.list_(pa.float32())),
        }
    )
    (tmp_path / "tables" / "embeddings").mkdir()
    pq.write_table(embeddings, tmp_path / "tables" / "embeddings" / "part.parquet")

    summary = run_dedup(spark, tables, progress=False)  # no method named: all three
    assert list(summary.methods) == ["exact", "phash", "semantic"]
    store = TableStore(spark, tables)
    rows = store.read("duplicates").filter("is_duplicate").collect()
    by_method = {m: {r["sample_id"] for r in rows if r["method"] == m} for m in summary.methods}
    assert not by_method["semantic"] & (by_method["exact"] | by_method["phash"])
    assert summary.methods["semantic"].new == len(by_method["semantic"])
    survivors = {
        r["sample_id"] for r in register_dedup_view(spark, store).collect() if not r["is_duplicate"]
    }
    family_of = dict(zip(ids, (s.family for s in samples), strict=True))
    kept_per_family = {}
    for sample_id in survivors:
        kept_per_family[family_of[sample_id]] = kept_per_family.get(family_of[sample_id], 0) + 1
    assert kept_per_family == {family: 1 for family in set(family_of.values())}
