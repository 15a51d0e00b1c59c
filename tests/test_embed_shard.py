"""The executor function on a real tar shard: rows, order, batching, and bad input as data."""

from __future__ import annotations

import io
import os
import tarfile

os.environ["HF_HUB_OFFLINE"] = "1"

import numpy as np
import pytest
from PIL import Image
from skimage import data as photos

from imgcurate.embed import embed_shard, output_schema
from imgcurate.images.decode import decode_image
from imgcurate.models import ModelSpec, load_models

SPEC = ModelSpec("openclip:imgcurate-tiny-clip", random_weights=True)
ARRAYS = [photos.astronaut(), photos.coffee(), photos.chelsea(), photos.rocket()]
CORRUPT = b"\xff\xd8\xff\xe0 this is not really a JPEG"


def encode(array: np.ndarray, fmt: str = "JPEG") -> bytes:
    out = io.BytesIO()
    Image.fromarray(array).save(out, fmt)
    return out.getvalue()


def write_shard(path, images: list[bytes]) -> list[tuple]:
    """A WebDataset tar (jpg + txt per sample); returns ``(sample_id, offset, size, caption)``."""
    with tarfile.open(path, "w") as tar:
        for index, data in enumerate(images):
            for ext, payload in (("jpg", data), ("txt", f"photo number {index}".encode())):
                info = tarfile.TarInfo(f"{index:05d}.{ext}")
                info.size = len(payload)
                tar.addfile(info, io.BytesIO(payload))
    with tarfile.open(path) as tar:
        return [
            (f"s/{m.name[:5]}", m.offset_data, m.size, f"photo number {int(m.name[:5])}")
            for m in tar.getmembers()
            if m.name.endswith(".jpg")
        ]


@pytest.fixture(scope="module")
def models():
    return load_models(SPEC, "cpu")


@pytest.fixture(scope="module")
def shard(tmp_path_factory):
    """Six samples: four photos, a corrupt image at index 2 (mid-batch), a PNG."""
    images = [encode(a) for a in ARRAYS]
    images.insert(2, CORRUPT)
    images.append(encode(ARRAYS[0][::2, ::2], "PNG"))
    path = tmp_path_factory.mktemp("shards") / "00000.tar"
    return str(path), write_shard(path, images)


def test_corrupt_image_mid_batch_leaves_the_rest_scored(models, shard):
    path, refs = shard
    table = embed_shard(path, refs, models, batch_size=4)
    assert table.schema == output_schema()
    rows = table.to_pylist()
    assert [r["sample_id"] for r in rows] == [r[0] for r in refs]
    bad = rows[2]
    assert bad["status"] == "decode_error" and bad["error"]
    assert bad["vector"] is None
    assert bad["aesthetic"] is None and bad["nsfw"] is None and bad["clip_score"] is None
    good = [r for i, r in enumerate(rows) if i != 2]
    for row in good:
        assert row["status"] == "ok" and row["error"] is None
        vector = np.array(row["vector"], dtype=np.float32)
        assert vector.shape == (768,)
        assert abs(np.linalg.norm(vector) - 1) < 1e-4
        assert np.isfinite(row["aesthetic"])
        assert 0.0 <= row["nsfw"] <= 1.0
        assert -1.0 <= row["clip_score"] <= 1.0
        assert row["model"] == "openclip:imgcurate-tiny-clip"
        assert row["weights"] == "random"


def test_rows_match_a_direct_forward_whatever_the_batching(models, shard):
    path, refs = shard
    one = embed_shard(path, refs, models, batch_size=1, fast_decode=False)
    many = embed_shard(path, refs, models, batch_size=4, fast_decode=False)
    for column in ("vector", "aesthetic", "nsfw", "clip_score"):
        a, b = one.column(column).to_pylist(), many.column(column).to_pylist()
        for x, y in zip(a, b, strict=True):
            assert (x is None) == (y is None)
            if x is not None:
                np.testing.assert_allclose(x, y, atol=1e-5)
    # and the first photo's vector is the model's output for that photo
    pixels = models.embedder.preprocess(decode_image(encode(ARRAYS[0])))[None]
    direct = models.forward(pixels, [refs[0][3]])
    np.testing.assert_allclose(one.column("vector")[0].as_py(), direct["vector"][0], atol=1e-5)
    np.testing.assert_allclose(
        one.column("clip_score")[0].as_py(), direct["clip_score"][0], atol=1e-5
    )


def test_output_follows_input_order_not_offset_order(models, shard):
    path, refs = shard
    shuffled = [refs[i] for i in (4, 0, 5, 2, 1, 3)]
    table = embed_shard(path, shuffled, models, batch_size=2)
    assert table.column("sample_id").to_pylist() == [r[0] for r in shuffled]
    assert table.column("status").to_pylist()[3] == "decode_error"


def test_missing_caption_and_missing_image(models, shard):
    path, refs = shard
    sample_id, offset, size, _ = refs[0]
    samples = [(sample_id, offset, size, None), ("s/no-image", None, None, "caption")]
    rows = embed_shard(path, samples, models).to_pylist()
    assert rows[0]["status"] == "ok" and rows[0]["clip_score"] is None
    assert rows[0]["aesthetic"] is not None
    assert rows[1]["status"] == "no_image" and rows[1]["vector"] is None


def test_missing_shard_is_a_status_for_every_row(models, shard, tmp_path):
    _, refs = shard
    table = embed_shard(str(tmp_path / "gone.tar"), refs, models)
    assert set(table.column("status").to_pylist()) == {"missing_shard"}
    assert table.column("vector").null_count == len(refs)


def test_cut_shard_scores_what_it_can(models, shard, tmp_path):
    path, refs = shard
    cut = tmp_path / "cut.tar"
    with open(path, "rb") as source:
        cut.write_bytes(source.read(refs[1][1] + refs[1][2]))  # ends after the second image
    statuses = embed_shard(str(cut), refs, models).column("status").to_pylist()
    assert statuses[:2] == ["ok", "ok"]
    assert statuses[2:] == ["short_read"] * (len(refs) - 2)


def test_float16_vectors_and_loading_from_a_spec(shard):
    path, refs = shard
    table = embed_shard(path, refs[:2], SPEC, "cpu", vector_dtype="float16")
    assert table.schema == output_schema("float16")
    full = embed_shard(path, refs[:2], load_models(SPEC, "cpu"))
    half = np.frombuffer(table.column("vector")[0].as_py(), dtype="<f2")
    np.testing.assert_allclose(half, full.column("vector")[0].as_py(), atol=1e-3)


def test_the_fast_path_changes_vectors_only_slightly(models, tmp_path):
    big = [Image.fromarray(a).resize((a.shape[1] * 3, a.shape[0] * 3)) for a in ARRAYS]
    images = []
    for image in big:  # at 3x every photo is large enough to be decoded at a reduced scale
        out = io.BytesIO()
        image.save(out, "JPEG", quality=90)
        images.append(out.getvalue())
    refs = write_shard(tmp_path / "big.tar", images)
    path = str(tmp_path / "big.tar")
    fast = embed_shard(path, refs, models, fast_decode=True).column("vector").to_pylist()
    slow = embed_shard(path, refs, models, fast_decode=False).column("vector").to_pylist()
    for a, b in zip(fast, slow, strict=True):
        assert a != b  # the fast path really ran
        assert float(np.dot(a, b)) > 0.99


def test_no_samples_no_rows(models, shard):
    path, _ = shard
    table = embed_shard(path, [], models)
    assert table.num_rows == 0 and table.schema == output_schema()


def test_bad_arguments_fail_early(models, shard):
    path, refs = shard
    with pytest.raises(ValueError):
        embed_shard(path, refs, models, batch_size=0)
    with pytest.raises(ValueError):
        embed_shard(path, refs, models, vector_dtype="int8")
