"""The executor side of reshard without Spark: writing one shard, and the greedy fill."""

from __future__ import annotations

import hashlib
import io
import json
import random
import tarfile
from pathlib import Path

import fsspec
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from imgcurate import synth
from imgcurate.io.ranges import MissingShardError, read_range
from imgcurate.io.tarindex import scan_shard
from imgcurate.io.tarwriter import END_OF_ARCHIVE
from imgcurate.reshard import SampleCopy, is_complete, plan_digest, shard_files, write_shard
from imgcurate.stages.reshard import Packer, renumber_digits


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    """Two source tars and their samples as scan indexed them."""
    folder = synth.make_webdataset(
        tmp_path_factory.mktemp("writer-src"), shards=2, samples_per_shard=6
    )
    rows = []
    for tar in sorted(folder.glob("*.tar")):
        rows += scan_shard(str(tar), tar.name).samples
    return folder, rows


def copies(folder, rows, keys=None) -> list[SampleCopy]:
    return [
        SampleCopy(
            key=(keys[i] if keys else row["key"]),
            source=str(folder / row["shard"]),
            members=tuple((ext, m["offset"], m["size"]) for ext, m in row["members"]),
            sample_id=row["sample_id"],
        )
        for i, row in enumerate(rows)
    ]


def test_members_are_copied_byte_for_byte(sources, tmp_path):
    folder, rows = sources
    # interleave the two sources so reads and writes are out of order
    chosen = rows[6:9] + rows[0:3] + rows[11:12]
    result = write_shard(str(tmp_path), "00000", copies(folder, chosen))
    assert (result.count, result.skipped) == (7, False)
    data = (tmp_path / "00000.tar").read_bytes()
    assert len(data) == result.bytes and data.endswith(END_OF_ARCHIVE)
    with tarfile.open(tmp_path / "00000.tar") as tar:
        names = [m.name for m in tar.getmembers()]
        expected_names = [f"{r['key']}.{ext}" for r in chosen for ext in ("jpg", "txt")]
        assert names == expected_names
        for row in chosen:
            for ext, member in row["members"]:
                source = read_range(str(folder / row["shard"]), member["offset"], member["size"])
                assert tar.extractfile(f"{row['key']}.{ext}").read() == source


def test_rerun_skips_and_rewrite_is_identical(sources, tmp_path):
    folder, rows = sources
    samples = copies(folder, rows)
    first = write_shard(str(tmp_path), "00003", samples)
    before = (tmp_path / "00003.tar").read_bytes()
    assert write_shard(str(tmp_path), "00003", samples).skipped
    (tmp_path / "00003.tar").unlink()
    again = write_shard(str(tmp_path), "00003", samples)
    assert not again.skipped and again.bytes == first.bytes
    assert (tmp_path / "00003.tar").read_bytes() == before
    assert not [p for p in tmp_path.iterdir() if ".tmp-" in p.name]


def test_a_different_plan_is_not_complete(sources, tmp_path):
    folder, rows = sources
    samples = copies(folder, rows[:4])
    write_shard(str(tmp_path), "00000", samples)
    renamed = copies(folder, rows[:4], keys=["a", "b", "c", "d"])
    stats = json.loads((tmp_path / "00000_stats.json").read_text())
    assert is_complete(str(tmp_path), "00000", stats["plan"]) is not None
    assert is_complete(str(tmp_path), "00000", plan_digest(renamed)) is None
    assert write_shard(str(tmp_path), "00000", samples).skipped
    assert not write_shard(str(tmp_path), "00000", renamed).skipped
    with tarfile.open(tmp_path / "00000.tar") as tar:
        assert tar.getnames()[:2] == ["a.jpg", "a.txt"]


def test_sidecar_and_stats(sources, tmp_path):
    folder, rows = sources
    samples = copies(folder, rows[:3])
    sidecar = pa.table({"key": [s.key for s in samples], "score": [1.0, 2.0, 3.0]})
    result = write_shard(str(tmp_path), "00007", samples, sidecar)
    files = shard_files(str(tmp_path), "00007")
    assert pq.read_table(files["parquet"]).to_pydict() == sidecar.to_pydict()
    stats = json.loads(Path(files["stats"]).read_text())
    assert stats["count"] == 3 and stats["bytes"] == result.bytes and stats["sources"] == 1
    assert stats["plan"] == plan_digest(samples, sidecar)


def test_missing_source_names_it(sources, tmp_path):
    folder, rows = sources
    samples = copies(folder, rows[:2])
    gone = [SampleCopy(s.key, str(tmp_path / "gone.tar"), s.members) for s in samples]
    with pytest.raises(MissingShardError, match="gone.tar"):
        write_shard(str(tmp_path / "out"), "00000", gone)
    assert not (tmp_path / "out" / "00000.tar").exists()


def test_fsspec_source_and_dest(sources):
    folder, rows = sources
    memory = fsspec.filesystem("memory")
    tar_name = rows[0]["shard"]
    memory.pipe(f"/src/{tar_name}", (folder / tar_name).read_bytes())
    samples = [
        SampleCopy(s.key, f"memory://src/{tar_name}", s.members) for s in copies(folder, rows[:6])
    ]
    result = write_shard("memory://out", "00000", samples, pa.table({"key": [1] * 6}))
    local = write_shard(str(folder.parent / "local-copy"), "00000", copies(folder, rows[:6]))
    remote_bytes = memory.cat("/out/00000.tar")
    assert (
        hashlib.sha256(remote_bytes).digest()
        == hashlib.sha256((folder.parent / "local-copy" / "00000.tar").read_bytes()).digest()
    )
    assert result.bytes == local.bytes
    assert write_shard("memory://out", "00000", samples, pa.table({"key": [1] * 6})).skipped
    with tarfile.open(fileobj=io.BytesIO(remote_bytes)) as tar:
        assert len(tar.getmembers()) == 12


# -- the greedy fill --------------------------------------------------------------------------


def reference_fill(sizes, max_samples, max_bytes):
    """The obvious sequential greedy fill: (shard, position) for every sample."""
    capacity = max_bytes - len(END_OF_ARCHIVE) if max_bytes else None
    out, shard, count, fill = [], 0, 0, 0
    for size in sizes:
        full = (max_samples and count == max_samples) or (
            capacity is not None and count and fill + size > capacity
        )
        if full:
            shard, count, fill = shard + 1, 0, 0
        out.append((shard, count))
        count, fill = count + 1, fill + size
    return out


def packed(groups, max_samples, max_bytes):
    """Place samples with the Packer, then expand its per-group plans."""
    packer = Packer(max_samples, max_bytes)
    out = []
    for g, sizes in enumerate(groups):
        plan = packer.add(g, len(sizes), np.asarray(sizes, dtype=np.int64))
        for rank in range(len(sizes)):
            passed = sum(1 for b in plan.bounds if b <= rank)
            if passed == 0:
                out.append((plan.first_shard, plan.first_position + rank))
            else:
                out.append((plan.first_shard + passed, rank - plan.bounds[passed - 1]))
    return out, packer


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize(
    ("max_samples", "max_bytes"), [(7, None), (None, 20_000), (5, 9_000), (3, 4_096)]
)
def test_packer_matches_the_sequential_fill(seed, max_samples, max_bytes):
    rng = random.Random(seed)
    groups = [
        [rng.choice([512, 1024, 2560, 5120, 12288]) for _ in range(rng.randint(1, 30))]
        for _ in range(rng.randint(1, 8))
    ]
    flat = [s for g in groups for s in g]
    placed, packer = packed(groups, max_samples, max_bytes)
    assert placed == reference_fill(flat, max_samples, max_bytes)
    assert packer.shards == placed[-1][0] + 1


def test_every_shard_but_the_last_is_full():
    groups = [[1000] * 10, [3000] * 3, [1000] * 9]
    placed, _ = packed(groups, None, 6000)
    flat = [s for g in groups for s in g]
    per_shard: dict[int, int] = {}
    for (shard, _), size in zip(placed, flat, strict=True):
        per_shard[shard] = per_shard.get(shard, 0) + size
    shards = sorted(per_shard)
    capacity = 6000 - len(END_OF_ARCHIVE)
    for shard in shards[:-1]:
        next_first = flat[[p[0] for p in placed].index(shard + 1)]
        assert per_shard[shard] <= capacity < per_shard[shard] + next_first


def test_a_sample_bigger_than_the_limit_gets_its_own_shard():
    placed, packer = packed([[1000, 50_000, 1000]], None, 10_000)
    assert placed == [(0, 0), (1, 0), (2, 0)]
    assert packer.shards == 3


def test_renumber_digits_follow_img2dataset():
    assert renumber_digits(10_000, 0) == 4
    assert renumber_digits(10, 0) == 1
    assert renumber_digits(11, 0) == 2
    assert renumber_digits(None, 250) == 3
    key = synth.img2dataset_key(3, 7, 10_000)
    assert key == f"{3:05d}{7:0{renumber_digits(10_000, 0)}d}"
