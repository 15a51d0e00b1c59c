"""Semantic dedup on Spark: constructed embeddings with known near-duplicate groups.

Four well-separated clusters (orthogonal centres, spread-out background
members) each hold planted groups of copies lying on a ray away from the
centre: ``centre + t·w`` for t = 0.50, 0.52, 0.54 (pairwise cosine > 0.999)
and t = 0.75 (cosine 0.984 to the rest: a copy at eps 0.05, not at 0.01).
Larger t is farther from the centroid, so each keep rule has one right answer.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from imgcurate import schema
from imgcurate.dedup.keep import KeepRule
from imgcurate.dedup.semantic import SemanticConfig, semantic_duplicates
from imgcurate.spark.tables import TableStore
from imgcurate.stages.dedup import DedupOptions, run_dedup

pytestmark = pytest.mark.spark

DIM = 48
CLUSTERS = 4
GROUPS_PER_CLUSTER = 2
RAY = (0.50, 0.52, 0.54, 0.75)
EPS = (0.01, 0.05)


def constructed(seed: int = 0) -> tuple[list[str], np.ndarray, dict[str, float], list[list[str]]]:
    """Ids, unit vectors, an ``aesthetic`` score per id, and the planted groups (by t)."""
    rng = np.random.default_rng(seed)
    eye = np.eye(DIM)
    noise_space = eye[CLUSTERS + CLUSTERS * GROUPS_PER_CLUSTER :]
    ids, vectors, groups = [], [], []
    for c in range(CLUSTERS):
        for n in range(25):
            z = rng.standard_normal(len(noise_space)) @ noise_space
            z /= np.linalg.norm(z)
            for sign in (1, -1):  # symmetric pairs keep the cluster mean on its centre
                ids.append(f"c{c}/bg{n}{'+' if sign > 0 else '-'}")
                vectors.append(eye[c] + sign * 0.8 * z)
        for g in range(GROUPS_PER_CLUSTER):
            w = eye[CLUSTERS + c * GROUPS_PER_CLUSTER + g]
            members = [f"c{c}/g{g}/t{t:.2f}" for t in RAY]
            ids += members
            vectors += [eye[c] + t * w for t in RAY]
            groups.append(members)
    units = np.asarray(vectors, dtype=np.float32)
    units /= np.linalg.norm(units, axis=1, keepdims=True)
    scores = {sample_id: float(rng.uniform(1, 10)) for sample_id in ids}
    return ids, units, scores, groups


@pytest.fixture(scope="module")
def data():
    return constructed()


@pytest.fixture(scope="module")
def frames(spark, data):
    ids, units, scores, _ = data
    vectors = pa.FixedSizeListArray.from_arrays(pa.array(units.ravel()), DIM)
    table = pa.table({"sample_id": ids, "vector": vectors.cast(pa.list_(pa.float32()))})
    embeddings = spark.createDataFrame(table.to_pandas()).cache()
    preferences = spark.createDataFrame(
        [(i, 1000 * 1000, scores[i]) for i in ids], "sample_id string, pixels long, score double"
    ).cache()
    return embeddings, preferences


def run_rule(spark, frames, rule: KeepRule) -> dict[str, dict]:
    embeddings, preferences = frames
    config = SemanticConfig(eps=EPS, clusters=CLUSTERS, keep=rule, seed=1)
    rows, info = semantic_duplicates(spark, embeddings, preferences, config)
    assert info == {"vectors": embeddings.count(), "clusters": CLUSTERS}
    return {r["sample_id"]: r.asDict() for r in rows.collect()}


def kept(rows: dict, group: list[str], column: str) -> list[str]:
    return [m for m in group if not rows.get(m, {}).get(column, False)]


def test_hard_and_easy_keep_the_farthest_and_the_closest(spark, frames, data):
    _, _, _, groups = data
    hard = run_rule(spark, frames, KeepRule("hard"))
    easy = run_rule(spark, frames, KeepRule("easy"))
    for group in groups:
        close = group[:3]  # t = 0.50, 0.52, 0.54
        assert kept(hard, group, "eps_0_01") == [group[2], group[3]]
        assert kept(hard, group, "eps_0_05") == [group[3]]
        assert kept(easy, group, "eps_0_01") == [group[0], group[3]]
        assert kept(easy, group, "eps_0_05") == [group[0]]
        assert {hard[m]["duplicate_of"] for m in close[:2]} == {group[2]}
        assert hard[group[2]]["is_duplicate"] is False  # listed as the kept one at eps 0.01
        assert all(hard[m]["similarity"] > 0.999 for m in close[:2])
    background = [sample_id for sample_id in hard if "/bg" in sample_id]
    assert background == []


def test_best_keeps_the_highest_score(spark, frames, data):
    _, _, scores, groups = data
    best = run_rule(spark, frames, KeepRule("best", "aesthetic"))
    for group in groups:
        close = group[:3]
        winner = max(close, key=scores.get)
        assert kept(best, close, "eps_0_01") == [winner]
        assert kept(best, group, "eps_0_05") == [max(group, key=scores.get)]
        assert all(best[m]["group_id"] == winner for m in close if m != winner)
        assert best[winner]["duplicate_of"] is None  # at eps 0.01 (the first eps) it is kept


def test_random_is_seeded(spark, frames, data):
    _, _, _, groups = data
    first = run_rule(spark, frames, KeepRule("random", seed=5))
    again = run_rule(spark, frames, KeepRule("random", seed=5))
    other = run_rule(spark, frames, KeepRule("random", seed=6))
    picks = [kept(first, g[:3], "eps_0_01") for g in groups]
    assert all(len(p) == 1 for p in picks)
    assert picks == [kept(again, g[:3], "eps_0_01") for g in groups]
    assert picks != [kept(other, g[:3], "eps_0_01") for g in groups]
    assert (
        len({g[:3].index(p[0]) for g, p in zip(groups, picks, strict=True)}) > 1
    )  # not always one position


def write_tables(root, data, vector_type: str) -> str:
    """A samples table and an embeddings table (float16 bytes or float32 arrays)."""
    ids, units, scores, _ = data
    samples = [
        {
            "sample_id": i,
            "shard": "s.tar",
            "key": i,
            "image_ext": "jpg",
            "status": "ok",
            "width": 640,
            "height": 480,
        }
        for i in ids
    ]
    (root / "samples").mkdir(parents=True)
    pq.write_table(schema.table_from_rows(samples, schema.SAMPLES), root / "samples/p.parquet")
    if vector_type == "float16":
        vectors = pa.array([v.astype("<f2").tobytes() for v in units], pa.binary())
    else:
        vectors = pa.array(list(units), pa.list_(pa.float32()))
    embeddings = pa.table(
        {
            "sample_id": ids,
            "model": ["vit-l-14"] * len(ids),
            "status": ["ok"] * len(ids),
            "vector": vectors,
            "aesthetic": pa.array([scores[i] for i in ids], pa.float32()),
        }
    )
    (root / "embeddings").mkdir()
    pq.write_table(embeddings, root / "embeddings/p.parquet")
    return str(root)


def test_stage_on_float16_embeddings_writes_flags_and_the_view(spark, data, tmp_path):
    _, _, scores, groups = data
    tables = write_tables(tmp_path / "tables", data, "float16")
    config = SemanticConfig(eps=EPS, clusters=CLUSTERS, keep=KeepRule("best", "aesthetic"))
    options = DedupOptions(methods=("semantic",), keep=config.keep, semantic=config)
    summary = run_dedup(spark, tables, options, progress=False)
    assert summary.removed == 2 * len(groups)
    assert summary.eps_removed == {0.01: 2 * len(groups), 0.05: 3 * len(groups)}
    assert any("semantic at eps 0.05: 24" in line for line in summary.lines())
    store = TableStore(spark, tables)
    columns = store.read("duplicates").columns
    assert {"eps_0_01", "eps_0_05", "is_duplicate", "duplicate_of", "similarity"} <= set(columns)
    query = "SELECT sample_id FROM dedup WHERE NOT is_duplicate"
    survivors = {r["sample_id"] for r in spark.sql(query).collect()}
    for group in groups:
        assert survivors & set(group[:3]) == {max(group[:3], key=scores.get)}
