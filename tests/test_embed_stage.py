"""The embed stage end to end on Spark local[2], through the command line.

Runs the tiny CLIP with random weights (the real loader and heads, values
meaningless) over scanned shards and checks the tables it writes.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import tarfile
from collections import Counter

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from imgcurate import cli, synth
from imgcurate.synth import add_member
from tests.shards import jpeg, png_declaring

pytestmark = pytest.mark.spark

TINY = ["--model", "openclip:imgcurate-tiny-clip", "--random-weights"]
MODEL = "openclip:imgcurate-tiny-clip"


def run_cli(*argv: str) -> tuple[int, str, str]:
    """Run ``imgcurate ARGV``; return the exit code, stdout and stderr."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main(list(argv))
    return code, out.getvalue(), err.getvalue()


def scan(dataset, tables) -> None:
    code, out, err = run_cli("scan", "--input", str(dataset), "--tables", str(tables), "--quiet")
    assert code == 0, err


def embed(tables, *extra: str) -> str:
    code, out, err = run_cli("embed", "--tables", str(tables), *TINY, "--quiet", *extra)
    assert code == 0, err
    return out


def read(tables, name: str) -> list[dict]:
    return pq.read_table(tables / name).to_pylist()


def eligible_ids(tables) -> set[str]:
    """Samples embed must handle: scan status ok and an image member."""
    return {
        row["sample_id"]
        for row in read(tables, "samples")
        if row["status"] == "ok" and row["image_ext"] is not None
    }


def copy_scan_tables(source, dest):
    """A tables dir holding only ``source``'s scan tables (no embeddings yet)."""
    for name in ("samples", "shards"):
        shutil.copytree(source / name, dest / name)
    return dest


@pytest.fixture(scope="module")
def embedded(spark, img2dataset_dir, tmp_path_factory):
    """img2dataset shards scanned, then embedded in two waves (2 shards, then 1)."""
    root = tmp_path_factory.mktemp("embed")
    dataset = shutil.copytree(img2dataset_dir, root / "shards")
    tables = root / "tables"
    scan(dataset, tables)
    out = embed(tables, "--shards-per-commit", "2")
    return dataset, tables, out


def test_every_ok_sample_gets_one_score_row_and_one_unit_vector(embedded):
    _, tables, out = embedded
    assert "30 images in 3 shards (2 commits), 30 ok, 0 failed" in out
    assert "RANDOM WEIGHTS" in out and "cpu=30" in out
    wanted = eligible_ids(tables)
    failed = {r["sample_id"] for r in read(tables, "samples") if r["status"] != "ok"}
    assert len(wanted) == 30 and len(failed) == 6  # the fixture's failed downloads

    scores = read(tables, "scores")
    assert sorted(r["sample_id"] for r in scores) == sorted(wanted)  # one row each, none else
    for row in scores:
        assert (row["model"], row["status"], row["error"]) == (MODEL, "ok", None)
        assert row["weights"] == "random"
        assert np.isfinite(row["aesthetic"]) and 0.0 <= row["nsfw"] <= 1.0
        assert -1.0 <= row["clip_score"] <= 1.0  # every sample here has a caption

    embeddings = pq.read_table(tables / "embeddings")
    assert embeddings.column_names == ["sample_id", "model", "vector"]
    assert sorted(embeddings.column("sample_id").to_pylist()) == sorted(wanted)
    vectors = np.array(embeddings.column("vector").to_pylist(), dtype=np.float32)
    assert vectors.shape == (30, 768)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)
    # Two waves, two commits; one task (so one embeddings file) per shard in each wave.
    files = [n for n in os.listdir(tables / "embeddings") if n.endswith(".parquet")]
    per_run = Counter(name.split("-part-")[0] for name in files)
    assert sorted(per_run.values()) == [1, 2]


def test_embed_hashes_what_it_decodes_for_dedup(embedded):
    from imgcurate.dedup.hashes import hash_shard

    dataset, tables, _ = embedded
    hashes = {row["sample_id"]: row for row in read(tables, "hashes")}
    assert set(hashes) == eligible_ids(tables)  # small images: all decoded at full size
    assert {row["source"] for row in hashes.values()} == {"embed"}
    samples = [r for r in read(tables, "samples") if r["shard"] == "00000.tar" and r["members"]]
    images = [(r["sample_id"], *_image_range(r)) for r in samples]
    expected = hash_shard(str(dataset / "00000.tar"), images).to_pylist()  # dedup's own pass
    for row in expected:
        got = hashes[row["sample_id"]]
        assert (got["phash"], got["pixel_hash"]) == (row["phash"], row["pixel_hash"])


def _image_range(sample: dict) -> tuple[int, int]:
    place = dict(sample["members"])[sample["image_ext"]]
    return place["offset"], place["size"]


def test_rerun_embeds_nothing_and_a_new_shard_is_embedded_next_time(embedded, tmp_path):
    dataset, first_tables, _ = embedded
    tables = shutil.copytree(first_tables, tmp_path / "tables")
    out = embed(tables)
    assert "nothing to embed" in out and "30 of 30 scanned images already had scores" in out
    assert len(read(tables, "scores")) == 30

    synth.make_webdataset(dataset / "more", shards=1, samples_per_shard=5)
    scan(dataset, tables)
    out = embed(tables)
    assert "5 images in 1 shards (1 commits), 5 ok" in out
    scores = read(tables, "scores")
    assert len(scores) == 35 and len({r["sample_id"] for r in scores}) == 35
    assert {r["sample_id"] for r in scores} == eligible_ids(tables)
    assert pq.read_table(tables / "embeddings").num_rows == 35

    # Scores from other weights for the same model: the run says the tables now mix them.
    other = pq.read_table(tables / "scores").slice(0, 1)
    other = other.set_column(7, "weights", pa.array(["embedder=x.safetensors@sha256:abc"]))
    pq.write_table(other, tables / "scores" / "other-weights.parquet")
    out = embed(tables)
    assert "already exist with other weights (embedder=x.safetensors@sha256:abc)" in out


def test_float16_vectors_round_trip(embedded, tmp_path):
    _, float32_tables, _ = embedded
    tables = copy_scan_tables(float32_tables, tmp_path / "tables")
    embed(tables, "--vector-dtype", "float16")
    stored = pq.read_table(tables / "embeddings")
    assert str(stored.schema.field("vector").type) == "binary"
    half = {
        row["sample_id"]: np.frombuffer(row["vector"], "<f2").astype(np.float32)
        for row in stored.to_pylist()
    }
    full = {r["sample_id"]: np.array(r["vector"]) for r in read(float32_tables, "embeddings")}
    assert half.keys() == full.keys()
    for sample_id, vector in half.items():
        assert vector.shape == (768,)
        np.testing.assert_allclose(vector, full[sample_id], atol=1e-3)

    # One tables dir keeps one vector type: adding float32 vectors is refused.
    code, _, err = run_cli("embed", "--tables", str(tables), *TINY, "--vector-dtype", "float32")
    assert code == 2 and "stores float16 vectors" in err


def write_tar(path, members: list[tuple[str, bytes]]) -> None:
    with tarfile.open(path, "w") as tar:
        for name, payload in members:
            add_member(tar, name, payload)


@pytest.mark.slow
def test_bad_input_becomes_status_rows_without_vectors(spark, bad_dir, tmp_path):
    dataset = shutil.copytree(bad_dir, tmp_path / "shards")
    # Header fine (scan says ok), body broken: only a full decode finds out, mid-batch.
    photos = [jpeg(seed) for seed in range(4)]
    write_tar(
        dataset / "midbody.tar",
        [("a.jpg", photos[0]), ("b.png", png_declaring(64, 48)), ("c.jpg", photos[1])],
    )
    write_tar(dataset / "shrunk.tar", [(f"{k}.jpg", photos[i]) for i, k in enumerate("pqrs")])
    write_tar(dataset / "gone.tar", [("x.jpg", photos[2]), ("y.jpg", photos[3])])
    tables = tmp_path / "tables"
    scan(dataset, tables)
    # After the scan the shards change under the tables: one is cut, one deleted.
    with tarfile.open(dataset / "shrunk.tar") as tar:
        second = tar.getmember("q.jpg")
    os.truncate(dataset / "shrunk.tar", second.offset_data + second.size // 2)
    os.remove(dataset / "gone.tar")

    out = embed(tables, "--batch-size", "4")
    scores = {r["sample_id"]: r for r in read(tables, "scores")}
    assert set(scores) == eligible_ids(tables)  # scan's non-ok samples get no row at all
    assert "bad.tar/corrupt" not in scores and "bad.tar/good" in scores
    statuses = {sid: r["status"] for sid, r in scores.items()}
    assert statuses["midbody.tar/b"] == "decode_error"
    assert "truncated" in scores["midbody.tar/b"]["error"]
    assert statuses["midbody.tar/a"] == statuses["midbody.tar/c"] == "ok"
    assert [statuses[f"shrunk.tar/{k}"] for k in "pqrs"] == ["ok"] + ["short_read"] * 3
    assert statuses["gone.tar/x"] == statuses["gone.tar/y"] == "missing_shard"
    assert "decode_error=1" in out and "short_read=3" in out and "missing_shard=2" in out

    failed = {sid for sid, status in statuses.items() if status != "ok"}
    for sid in failed:
        row = scores[sid]
        assert row["error"] and row["aesthetic"] is None and row["nsfw"] is None
    vectors = {r["sample_id"] for r in read(tables, "embeddings")}
    assert vectors == set(scores) - failed  # a failure has no embedding row


def job_ids(spark) -> set[int]:
    return set(spark.sparkContext.statusTracker().getJobIdsForGroup(None) or [])


def test_missing_weights_offline_fails_before_any_spark_job(spark, embedded, tmp_path, monkeypatch):
    _, tables, _ = embedded
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setenv("IMGCURATE_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("IMGCURATE_WEIGHTS_DIR", raising=False)
    (tmp_path / "weights").mkdir()
    before = job_ids(spark)
    code, _, err = run_cli(
        "embed", "--tables", str(tables), "--weights-dir", str(tmp_path / "weights")
    )
    assert code == 2
    assert "model weights not found" in err
    for path in (
        "timm/vit_large_patch14_clip_224.openai/open_clip_model.safetensors",
        "ttj/sac-logos-ava1-l14-linearMSE/model.safetensors",
        "laion/clip-autokeras-binary-nsfw/clip_autokeras_binary_nsfw.pth",
    ):
        assert path in err
    assert "imgcurate models fetch --model openclip:ViT-L-14/openai --heads aesthetic,nsfw" in err
    assert "Traceback" not in err
    assert job_ids(spark) == before


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--model", "openclip:no-such-arch", "--random-weights"], "no-such-arch"),
        ([*TINY[:2], "--random-weights", "--heads", "aesthetic", "--batch-size", "0"], "batch"),
        (["--model", "timm:resnet18", "--random-weights", "--heads", "aesthetic"], "aesthetic"),
    ],
)
def test_bad_model_options_are_user_errors(spark, embedded, argv, message):
    _, tables, _ = embedded
    before = job_ids(spark)
    code, _, err = run_cli("embed", "--tables", str(tables), *argv)
    assert code == 2 and "imgcurate embed: error:" in err and message in err
    assert "Traceback" not in err
    assert job_ids(spark) == before
