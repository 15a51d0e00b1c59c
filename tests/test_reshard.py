"""The reshard stage end to end on Spark local[2]: exact shards, byte-identical members."""

from __future__ import annotations

import hashlib
import json
import shutil
import tarfile
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import webdataset as wds

from imgcurate import cli
from imgcurate.io.ranges import read_range
from imgcurate.io.tarindex import is_unsafe_key
from imgcurate.io.tarwriter import END_OF_ARCHIVE, member_span
from imgcurate.spark.tables import TableStore
from imgcurate.stages.reshard import ReshardError, ReshardOptions, run_reshard
from imgcurate.stages.scan import run_scan

pytestmark = pytest.mark.spark


@pytest.fixture(scope="module")
def tables(spark, img2dataset_dir, tmp_path_factory):
    """img2dataset shards (36 samples, 30 ok) scanned into a tables dir."""
    folder = tmp_path_factory.mktemp("reshard-tables")
    run_scan(spark, str(img2dataset_dir), str(folder), progress=False)
    return folder


@pytest.fixture(scope="module")
def stable(spark, tables, tmp_path_factory):
    """A default reshard (status = 'ok', stable order, kept keys) into 7-sample shards."""
    dest = tmp_path_factory.mktemp("reshard-stable") / "out"
    summary = run_reshard(
        spark, str(tables), ReshardOptions(dest=str(dest), samples_per_shard=7), progress=False
    )
    return dest, summary


def samples_by_id(tables: Path) -> dict[str, dict]:
    """The samples table read without Spark, with each row's source path."""
    paths = {r["shard"]: r["path"] for r in pq.read_table(tables / "shards").to_pylist()}
    rows = pq.read_table(tables / "samples").to_pylist()
    return {r["sample_id"]: {**r, "path": paths[r["shard"]]} for r in rows}


def read_shards(dest: Path) -> list[list[tuple[str, bytes]]]:
    """Every output tar, in order, as (member name, bytes) lists."""
    out = []
    for tar_path in sorted(dest.glob("*.tar")):
        with tarfile.open(tar_path) as tar:
            out.append([(m.name, tar.extractfile(m).read()) for m in tar.getmembers()])
    return out


def sidecar_rows(dest: Path) -> list[dict]:
    return [r for p in sorted(dest.glob("*.parquet")) for r in pq.read_table(p).to_pylist()]


def tar_digests(dest: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in dest.glob("*.tar")}


def assert_members_match_sources(dest: Path, tables: Path) -> None:
    """Every written member holds exactly the source member's bytes."""
    samples = samples_by_id(tables)
    shards = read_shards(dest)
    rows = iter(sidecar_rows(dest))
    for members in shards:
        names = [n for n, _ in members]
        while names:
            row = next(rows)
            source = samples[row["sample_id"]]
            for ext, member in sorted(source["members"]):
                name, data = members.pop(0)
                names.pop(0)
                assert name == f"{row['key']}.{ext}"
                assert data == read_range(source["path"], member["offset"], member["size"])
    assert next(rows, None) is None


def test_selection_is_written_exactly(spark, tables, stable):
    dest, summary = stable
    TableStore(spark, str(tables)).register_views()
    expected = spark.sql("SELECT count(*) FROM samples WHERE status = 'ok'").first()[0]
    assert expected == 30 and summary.samples == 30
    assert (summary.shards, summary.written, summary.complete) == (5, 5, 0)
    assert [len(m) // 3 for m in read_shards(dest)] == [7, 7, 7, 7, 2]  # jpg+json+txt each
    loader = wds.WebDataset(f"{dest}/{{00000..00004}}.tar", shardshuffle=False, empty_check=False)
    read_back = list(loader)
    assert len(read_back) == expected
    assert_members_match_sources(dest, tables)

    rows = sidecar_rows(dest)
    samples = samples_by_id(tables)
    assert [r["key"] for r in rows] == [r["source_key"] for r in rows]  # keys kept
    stable_order = sorted((samples[r["sample_id"]]["shard"], r["source_key"]) for r in rows)
    assert [(r["source_shard"], r["source_key"]) for r in rows] == stable_order
    assert [s["__key__"] for s in read_back] == [r["key"] for r in rows]
    assert {"caption", "width", "status", "is_duplicate"} <= set(rows[0])
    assert "members" not in rows[0]
    stats = json.loads((dest / "00004_stats.json").read_text())
    assert stats["count"] == 2 and stats["bytes"] == (dest / "00004.tar").stat().st_size


def test_manifest_maps_output_to_source(spark, tables, stable):
    dest, _ = stable
    manifest = TableStore(spark, str(tables)).read("reshard").toPandas()
    assert len(manifest) == 30 and set(manifest["dest"]) == {str(dest)}
    first = manifest.sort_values(["output_shard", "position"]).iloc[0]
    row = sidecar_rows(dest)[0]
    assert (first["output_shard"], first["position"], first["sample_id"]) == (
        "00000.tar",
        0,
        row["sample_id"],
    )


@pytest.mark.slow
def test_rerun_rewrites_only_the_missing_shard(spark, tables, stable, tmp_path):
    dest, _ = stable
    before = tar_digests(dest)
    (dest / "00002.tar").unlink()
    again = run_reshard(
        spark, str(tables), ReshardOptions(dest=str(dest), samples_per_shard=7), progress=False
    )
    assert (again.written, again.complete, again.samples) == (1, 4, 30)
    assert tar_digests(dest) == before
    fresh = tmp_path / "fresh"
    run_reshard(
        spark, str(tables), ReshardOptions(dest=str(fresh), samples_per_shard=7), progress=False
    )
    assert tar_digests(fresh) == before
    with pytest.raises(ReshardError, match="different reshard"):
        run_reshard(
            spark, str(tables), ReshardOptions(dest=str(dest), samples_per_shard=5), progress=False
        )


def test_renumbered_shuffled_byte_limited(spark, tables, tmp_path):
    limit = 60_000
    options = dict(samples_per_shard=8, max_shard_bytes=limit, keys="renumber", shuffle_seed=3)
    dest = tmp_path / "a"
    summary = run_reshard(spark, str(tables), ReshardOptions(dest=str(dest), **options))
    assert summary.samples == 30
    shards = read_shards(dest)
    assert len(shards) == summary.shards > 1
    spans = []  # bytes each sample takes, per shard
    for index, members in enumerate(shards):
        keys = [name.split(".")[0] for name, _ in members[::3]]
        assert keys == [f"{index:05d}{position}" for position in range(len(keys))]
        spans.append(
            [
                sum(member_span(n, len(d)) for n, d in members[i : i + 3])
                for i in range(0, len(members), 3)
            ]
        )
    sizes = [p.stat().st_size for p in sorted(dest.glob("*.tar"))]
    assert sizes == [sum(s) + len(END_OF_ARCHIVE) for s in spans]
    for index, size in enumerate(sizes[:-1]):  # full: the next sample would not fit
        assert size <= limit
        assert len(spans[index]) == 8 or size + spans[index + 1][0] > limit
    assert_members_match_sources(dest, tables)
    rows = sidecar_rows(dest)
    assert len({r["sample_id"] for r in rows}) == 30
    assert [r["source_shard"] for r in rows] != sorted(r["source_shard"] for r in rows)

    same = tmp_path / "b"
    run_reshard(spark, str(tables), ReshardOptions(dest=str(same), **options), progress=False)
    assert tar_digests(same) == tar_digests(dest)


@pytest.mark.slow
def test_missing_source_shard(spark, img2dataset_dir, tmp_path):
    shards = shutil.copytree(img2dataset_dir, tmp_path / "shards")
    tables = tmp_path / "tables"
    run_scan(spark, str(shards), str(tables), progress=False)
    (shards / "00001.tar").unlink()
    with pytest.raises(ReshardError, match="00001.tar") as error:
        run_reshard(spark, str(tables), ReshardOptions(dest=str(tmp_path / "out")))
    assert "--skip-missing" in str(error.value)
    assert not list((tmp_path / "out").glob("*.tar")) if (tmp_path / "out").exists() else True
    summary = run_reshard(
        spark,
        str(tables),
        ReshardOptions(dest=str(tmp_path / "out"), skip_missing=True),
        progress=False,
    )
    assert summary.samples == 20 and summary.not_written == {"missing_source": 10}
    assert "missing_source=10" in "\n".join(summary.lines())
    assert {r["source_shard"] for r in sidecar_rows(tmp_path / "out")} == {"00000.tar", "00002.tar"}


def test_unsafe_and_repeated_keys(spark, bad_dir, tmp_path):
    tables = tmp_path / "tables"
    run_scan(spark, str(bad_dir), str(tables), progress=False)
    dest = tmp_path / "out"
    summary = run_reshard(
        spark, str(tables), ReshardOptions(dest=str(dest), where="true"), progress=False
    )
    assert summary.not_written == {"truncated": 1}  # the sample cut off at the end of cut.tar
    names = [name for members in read_shards(dest) for name, _ in members]
    assert names and not any(is_unsafe_key(n) or ".." in n for n in names)
    keys = {r["source_key"]: r["key"] for r in sidecar_rows(dest) if r["source_shard"] == "bad.tar"}
    assert keys["../escape"] == "___escape"
    assert sorted(r["key"] for r in sidecar_rows(dest) if r["source_key"] == "dupkey") == [
        "dupkey",
        "dupkey#1",
    ]
    assert len({r["key"] for r in sidecar_rows(dest)}) == summary.samples == 16
    assert_members_match_sources(dest, tables)


def test_cli_reports_unknown_columns(spark, tables, tmp_path, capsys):
    args = ["reshard", "--tables", str(tables), "--dest", str(tmp_path / "out"), "--quiet"]
    assert cli.main([*args, "--where", "status = 'ok' AND aesthetic >= 5"]) == 2
    err = capsys.readouterr().err
    assert "aesthetic" in err and "available columns:" in err and "caption" in err
    assert not (tmp_path / "out").exists()
    assert cli.main([*args, "--where", "width >= 200", "--samples-per-shard", "100"]) == 0
    assert "reshard: 1 shards (1 written" in capsys.readouterr().out


@pytest.mark.slow
def test_job_under_spark_submit(tables, tmp_path):
    import os
    import subprocess
    import sys

    import pyspark

    submit = Path(pyspark.__file__).parent / "bin" / "spark-submit"
    job = Path(__file__).resolve().parent.parent / "jobs" / "reshard.py"
    env = {**os.environ, "PYSPARK_PYTHON": sys.executable, "PYSPARK_DRIVER_PYTHON": sys.executable}
    dest = tmp_path / "out"
    args = ["--tables", str(tables), "--dest", str(dest), "--samples-per-shard", "16", "--quiet"]
    done = subprocess.run(
        [str(submit), "--master", "local[1]", str(job), *args],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "reshard: 2 shards (2 written" in done.stdout and "30 samples" in done.stdout
    assert sorted(p.name for p in dest.glob("*.tar")) == ["00000.tar", "00001.tar"]
