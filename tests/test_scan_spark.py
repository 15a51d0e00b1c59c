"""The scan stage end to end on Spark local[2], through the command line."""

from __future__ import annotations

import shutil

import pyarrow.parquet as pq
import pytest

from imgcurate import cli, synth
from imgcurate.spark.tables import TableStore
from imgcurate.stages.scan import run_scan

pytestmark = pytest.mark.spark


@pytest.fixture()
def dataset(img2dataset_dir, tmp_path):
    """A private copy of the img2dataset shards that a test may add to."""
    return shutil.copytree(img2dataset_dir, tmp_path / "shards")


def test_scan_cli_then_sql_cli(spark, dataset, tmp_path, capsys):
    tables = tmp_path / "tables"
    assert cli.main(["scan", "--input", str(dataset), "--tables", str(tables), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "3 shards scanned" in out and "36 samples, 30 ok" in out
    assert "failed_to_download=6" in out

    query = "SELECT status, count(*) AS n FROM samples GROUP BY status ORDER BY status"
    assert cli.main(["sql", "--tables", str(tables), query, "--output-format", "csv"]) == 0
    assert capsys.readouterr().out.strip().splitlines() == [
        "status,n",
        "failed_to_download,6",
        "ok,30",
    ]
    # Tables are plain Parquet folders: readable without Spark.
    samples = pq.read_table(tables / "samples").to_pandas()
    assert len(samples) == 36 and samples["sample_id"].is_unique
    assert pq.read_table(tables / "shards").num_rows == 3


def test_rescan_skips_done_shards_and_picks_up_new_ones(spark, dataset, tmp_path):
    tables = str(tmp_path / "tables")
    first = run_scan(spark, str(dataset), tables, progress=False)
    assert (first.shards, first.samples) == (3, 36)
    again = run_scan(spark, str(dataset), tables, progress=False)
    assert (again.shards, again.skipped, again.samples) == (0, 3, 0)
    synth.make_webdataset(dataset / "more", shards=1, samples_per_shard=5)
    grown = run_scan(spark, str(dataset), tables, progress=False)
    assert (grown.shards, grown.skipped, grown.samples) == (1, 3, 5)
    store = TableStore(spark, tables)
    assert store.read("samples").count() == 41
    assert store.read("samples").select("sample_id").distinct().count() == 41
    assert "more/shard-000000.tar" in {r.shard for r in store.read("shards").collect()}


def test_bad_input_through_spark(spark, bad_dir, tmp_path):
    summary = run_scan(spark, str(bad_dir), str(tmp_path / "tables"), progress=False)
    assert summary.shard_status == {"ok": 1, "truncated": 1, "not_a_tar": 1}
    assert summary.by_status["duplicate_key"] == 1 and summary.by_status["too_large"] == 1
    store = TableStore(spark, str(tmp_path / "tables"))
    shards = {r.shard: r for r in store.read("shards").collect()}
    assert shards["notatar.tar"].samples == 0 and shards["cut.tar"].status == "truncated"
    rows = {r.sample_id: r for r in store.read("samples").collect()}
    assert rows["bad.tar/../escape"].warnings == ["unsafe_key"]
    assert rows["bad.tar/good"].members["jpg"].size > 0


def test_interrupted_runs_are_discarded_or_finished(spark, dataset, tmp_path):
    tables = tmp_path / "tables"
    run_scan(spark, str(dataset / "00000.tar"), str(tables), root=str(dataset), progress=False)
    store = TableStore(spark, str(tables))
    # A run that staged output but crashed before committing: discarded, shard rescanned.
    frame = store.read("samples").limit(1)
    store.stage("19990101T000000-dead00", "samples", frame)
    # A run that committed but crashed while moving files: rolled forward.
    store.stage("19990101T000000-done00", "samples", frame)
    store.fs.write_text(f"{store.root}/_staging/19990101T000000-done00/_COMMITTED", "samples")
    run_scan(spark, str(dataset), str(tables), progress=False)
    assert not (tables / "_staging").exists() or not any((tables / "_staging").iterdir())
    assert store.read("samples").count() == 36 + 1  # one row rolled forward, none from the dead run


def test_catalog_script_registers_views_for_spark_sql(spark, dataset, tmp_path):
    tables = tmp_path / "tables"
    run_scan(spark, str(dataset), str(tables), progress=False)
    script = (tables / "_catalog.sql").read_text()
    assert "CREATE OR REPLACE TEMPORARY VIEW samples USING parquet" in script
    for statement in filter(None, (s.strip() for s in script.split(";"))):
        if not statement.startswith("--"):
            spark.sql(statement)
    assert spark.sql("SELECT count(*) AS n FROM shards").first().n == 3


def test_clear_errors(spark, tmp_path, capsys):
    assert cli.main(["scan", "--input", str(tmp_path / "none"), "--tables", str(tmp_path)]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert cli.main(["sql", "--tables", str(tmp_path), "SELECT * FROM samples"]) == 2
    err = capsys.readouterr().err
    assert "TABLE_OR_VIEW_NOT_FOUND" in err and "tables in" in err and "none" in err


def test_demo_command_runs_the_whole_pipeline(spark, tmp_path, capsys):
    import webdataset as wds

    workdir = tmp_path / "demo"
    args = ["demo", "--workdir", str(workdir), "--shards", "2", "--samples-per-shard", "12"]
    assert cli.main(args) == 0
    out = capsys.readouterr().out
    assert "2 shards scanned" in out and "24 samples, 22 ok" in out
    assert "RANDOM weights" in out and "failed_to_download" in out
    assert (workdir / "shards" / "00001.parquet").exists()
    store = TableStore(spark, str(workdir / "tables"))
    dedup = spark.table("dedup")  # the view the demo registered
    kept = dedup.filter("NOT is_duplicate").count()
    ok = store.read("samples").filter("status = 'ok'")
    written = list(
        wds.WebDataset(
            sorted(str(p) for p in (workdir / "curated").glob("*.tar")), shardshuffle=False
        )
    )
    assert len(written) == ok.join(dedup, "sample_id").filter("NOT is_duplicate").count()
    assert 0 < len(written) <= kept


def test_delta_without_its_jars_stops_at_once_with_the_fix(spark, dataset, tmp_path, capsys):
    from imgcurate.spark.tables import TablesError

    with pytest.raises(TablesError, match="Delta Lake jars"):
        TableStore(spark, str(tmp_path / "tables"), "delta")
    args = ["scan", "--input", str(dataset), "--tables", str(tmp_path / "t"), "--format", "delta"]
    assert cli.main(args) == 2
    err = capsys.readouterr().err
    assert "--packages io.delta:delta-spark" in err and "--format parquet" in err
    assert not (tmp_path / "t").exists()  # nothing was scanned or written
