"""Scanning one shard: sample grouping, offsets, hashes, captions, sidecars, bad input."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile

import pyarrow.parquet as pq
import pytest
from PIL import Image

from imgcurate.io.ranges import read_range
from imgcurate.io.tarindex import is_unsafe_key, scan_shard, split_member_name
from tests.shards import BAD_SAMPLES


def _tar_members(path) -> dict[str, bytes]:
    with tarfile.open(path) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}


def test_split_member_name_follows_webdataset():
    assert split_member_name("000123.jpg") == ("000123", "jpg")
    assert split_member_name("dir/000123.seg.JPG") == ("dir/000123", "seg.jpg")
    assert split_member_name("README") == ("README", "")
    assert is_unsafe_key("../x") and is_unsafe_key("/abs/x") and not is_unsafe_key("a/b")


def test_img2dataset_shard_rows_offsets_hashes_and_fields(img2dataset_dir):
    path = img2dataset_dir / "00001.tar"
    result = scan_shard(str(path), "00001.tar")
    sidecar = pq.read_table(img2dataset_dir / "00001.parquet").to_pylist()
    members = _tar_members(path)
    assert result.shard["status"] == "ok"
    assert result.shard["has_sidecar"] is True
    assert len(result.samples) == len(sidecar) == 12
    by_key = {row["key"]: row for row in result.samples}
    assert set(by_key) == {row["key"] for row in sidecar}
    assert all(len(k) == 9 and k.startswith("00001") for k in by_key)  # e.g. 000010005
    for expected in sidecar:
        row = by_key[expected["key"]]
        assert row["sample_id"] == f"00001.tar/{expected['key']}"
        assert row["url"] == expected["url"] and row["caption"] == expected["caption"]
        if expected["status"] != "success":
            assert row["status"] == "failed_to_download" and row["members"] == []
            assert row["error"] == expected["error_message"]
            continue
        assert row["status"] == "ok" and row["image_format"] == "JPEG"
        for ext, place in row["members"]:
            data = read_range(str(path), place["offset"], place["size"])
            assert data == members[f"{row['key']}.{ext}"]
        image = members[f"{row['key']}.jpg"]
        assert row["sha256"] == hashlib.sha256(image).hexdigest() == expected["sha256"]
        assert (row["width"], row["height"]) == Image.open(io.BytesIO(image)).size
        assert row["image_nbytes"] == len(image)
        assert json.loads(row["json"])["key"] == expected["key"]
        assert row["original_width"] == expected["original_width"]
        assert row["download_status"] == "success"
        assert sorted(ext for ext, _ in row["members"]) == ["jpg", "json", "txt"]


def test_plain_webdataset_shard(webdataset_dir):
    path = webdataset_dir / "shard-000000.tar"
    result = scan_shard(str(path), "shard-000000.tar")
    members = _tar_members(path)
    assert result.shard["has_sidecar"] is False
    assert [r["key"] for r in result.samples] == [f"sample{i:06d}" for i in range(8)]
    for row in result.samples:
        assert row["status"] == "ok"
        assert row["caption"] == members[f"{row['key']}.txt"].decode()
        assert row["url"] is None and row["json"] is None


@pytest.mark.parametrize("key", sorted(BAD_SAMPLES))
def test_bad_input_is_a_row_with_a_status(bad_dir, key):
    result = scan_shard(str(bad_dir / "bad.tar"), "bad.tar")
    rows = {row["sample_id"]: row for row in result.samples}
    _, status, warning = BAD_SAMPLES[key]
    row = rows[f"bad.tar/{key}"]
    assert row["status"] == status, row["error"]
    assert (row["error"] is None) == (status == "ok")
    if warning:
        assert warning in row["warnings"]


def test_bad_tar_keeps_every_sample_and_flags_the_repeated_key(bad_dir):
    result = scan_shard(str(bad_dir / "bad.tar"), "bad.tar")
    assert result.shard["status"] == "ok"
    assert len(result.samples) == len(BAD_SAMPLES) + 1
    repeat = next(r for r in result.samples if r["sample_id"] == "bad.tar/dupkey#1")
    assert repeat["status"] == "duplicate_key" and repeat["caption"] == "second"
    assert len({r["sample_id"] for r in result.samples}) == len(result.samples)


def test_specific_bad_values(bad_dir):
    rows = {r["key"]: r for r in scan_shard(str(bad_dir / "bad.tar"), "bad.tar").samples}
    assert (rows["bomb"]["width"], rows["bomb"]["height"]) == (50_000, 50_000)
    assert rows["bomb"]["image_format"] == "PNG"
    assert "\ufffd" in rows["badutf8"]["caption"] and rows["badutf8"]["caption"].startswith("caf")
    rotated = rows["rotated"]
    assert rotated["height"] > rotated["width"]  # EXIF orientation 6 swaps a landscape crop
    assert rows["onlyimage"]["caption"] is None
    assert rows["noimage"]["caption"] == "caption only" and rows["noimage"]["url"] == "u"
    assert rows["empty"]["image_nbytes"] == 0


def test_truncated_tar_keeps_samples_before_the_cut(bad_dir):
    result = scan_shard(str(bad_dir / "cut.tar"), "cut.tar")
    assert result.shard["status"] == "truncated"
    statuses = [r["status"] for r in result.samples]
    assert statuses == ["ok", "ok", "ok", "truncated"]
    assert [r["caption"] for r in result.samples[:3]] == ["caption 0", "caption 1", "caption 2"]


def test_tar_cut_at_a_member_boundary_is_truncated(img2dataset_dir, tmp_path):
    data = (img2dataset_dir / "00000.tar").read_bytes()
    with tarfile.open(img2dataset_dir / "00000.tar") as tar:
        boundary = tar.getmembers()[3].offset  # header of the 4th member
    cut = tmp_path / "boundary.tar"
    cut.write_bytes(data[:boundary])
    result = scan_shard(str(cut), "boundary.tar")
    assert result.shard["status"] == "truncated"
    assert sum(r["status"] == "ok" for r in result.samples) >= 1


def test_not_a_tar_and_missing_shard(bad_dir, tmp_path):
    not_tar = scan_shard(str(bad_dir / "notatar.tar"), "notatar.tar")
    assert not_tar.shard["status"] == "not_a_tar" and not_tar.samples == []
    assert "not a readable tar" in not_tar.shard["error"]
    missing = scan_shard(str(tmp_path / "gone.tar"), "gone.tar")
    assert missing.shard["status"] == "missing" and missing.samples == []


def test_sidecar_row_missing_from_tar_is_reported(img2dataset_dir, tmp_path):
    import shutil

    import pyarrow as pa

    shutil.copy(img2dataset_dir / "00000.tar", tmp_path / "00000.tar")
    table = pq.read_table(img2dataset_dir / "00000.parquet").to_pylist()
    table.append({**table[0], "key": "000009999"})
    pq.write_table(pa.Table.from_pylist(table), tmp_path / "00000.parquet")
    rows = {r["key"]: r for r in scan_shard(str(tmp_path / "00000.tar"), "00000.tar").samples}
    assert rows["000009999"]["status"] == "missing_from_tar"
