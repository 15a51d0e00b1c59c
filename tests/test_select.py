"""The selection view and the checks on --where / --select-sql, on Spark local[2]."""

from __future__ import annotations

import shutil

import pytest

from imgcurate.select import SelectionError, select, selection_view
from imgcurate.spark.tables import TableStore, new_run_id
from imgcurate.stages.scan import run_scan

pytestmark = pytest.mark.spark


@pytest.fixture(scope="module")
def tables(spark, img2dataset_dir, tmp_path_factory):
    """img2dataset shards scanned (36 samples, 30 ok), plus scores and duplicates tables."""
    folder = tmp_path_factory.mktemp("select-tables")
    plain = folder / "plain"
    run_scan(spark, str(img2dataset_dir), str(plain), progress=False)
    joined = shutil.copytree(plain, folder / "joined")
    store = TableStore(spark, str(joined))
    ids = sorted(r.sample_id for r in store.read("samples").collect())
    default, other = "openclip:ViT-L-14/openai", "aaa:another-model"
    scores = [(sid, default, float(i % 10), "run-a") for i, sid in enumerate(ids)]
    scores += [(sid, other, 100.0, "run-b") for sid in ids]  # sorts first by name
    duplicates = [(sid, i % 2 == 0) for i, sid in enumerate(ids[:8])]
    run_id = new_run_id()
    scores_schema = "sample_id string, model string, aesthetic double, shard string"
    store.stage(run_id, "scores", spark.createDataFrame(scores, scores_schema))
    dup_schema = "sample_id string, is_duplicate boolean"
    store.stage(run_id, "duplicates", spark.createDataFrame(duplicates, dup_schema))
    store.commit(run_id, ["scores", "duplicates"])
    return {"plain": str(plain), "joined": str(joined), "ids": ids}


def test_view_of_samples_alone_has_is_duplicate_false(spark, tables):
    view = selection_view(spark, TableStore(spark, tables["plain"]))
    assert view.count() == 36
    assert "is_duplicate" in view.columns
    assert spark.sql("SELECT count(*) FROM selection WHERE is_duplicate").first()[0] == 0


def test_scores_and_duplicates_join_in(spark, tables):
    store = TableStore(spark, tables["joined"])
    view = selection_view(spark, store)
    assert view.count() == 36 and "aesthetic" in view.columns  # one row per sample
    assert {r.model for r in view.select("model").collect()} == {"openclip:ViT-L-14/openai"}
    # the scores table's own "shard" column does not replace the sample's
    assert view.filter("shard = 'run-a'").count() == 0
    assert view.filter("is_duplicate").count() == 4  # 8 listed, 4 marked true
    picked = select(spark, store, where="aesthetic >= 5 AND NOT is_duplicate")
    expected = sum(
        1 for i, _ in enumerate(tables["ids"]) if i % 10 >= 5 and not (i < 8 and i % 2 == 0)
    )
    assert picked.count() == expected


def test_default_selection_is_status_ok(spark, tables):
    assert select(spark, TableStore(spark, tables["plain"])).count() == 30


def test_unknown_column_lists_the_available_ones(spark, tables):
    store = TableStore(spark, tables["plain"])
    with pytest.raises(SelectionError) as error:
        select(spark, store, where="status = 'ok' AND aesthetic >= 5")
    message = str(error.value)
    assert "aesthetic" in message and "available columns:" in message
    assert "width" in message and "is_duplicate" in message


@pytest.mark.parametrize(
    ("where", "fragment"),
    [("width >", "not valid SQL"), ("width + 1", "true/false condition")],
)
def test_bad_predicates_fail_clearly(spark, tables, where, fragment):
    with pytest.raises(SelectionError, match=fragment):
        select(spark, TableStore(spark, tables["plain"]), where=where)


def test_select_sql(spark, tables):
    store = TableStore(spark, tables["joined"])
    query = "SELECT sample_id, aesthetic * 2 AS doubled FROM selection WHERE aesthetic >= 8"
    picked = select(spark, store, select_sql=query)
    assert picked.count() == sum(1 for i, _ in enumerate(tables["ids"]) if i % 10 >= 8)
    assert "doubled" in picked.columns and "caption" in picked.columns
    with pytest.raises(SelectionError, match="sample_id"):
        select(spark, store, select_sql="SELECT key FROM samples")
    with pytest.raises(SelectionError, match="not both"):
        select(spark, store, where="true", select_sql="SELECT sample_id FROM samples")
