"""Weight resolution: weights dir, then the Hugging Face cache, then (never here) a download."""

from __future__ import annotations

import hashlib
import os
import zipfile

os.environ["HF_HUB_OFFLINE"] = "1"

import pytest

from imgcurate.models import ModelSpec, plan_models, weights
from imgcurate.models.catalog import AESTHETIC_WEIGHTS, NSFW_WEIGHTS
from imgcurate.models.weights import (
    MissingWeightsError,
    WeightFile,
    WeightsPolicy,
    find_local,
    provenance,
    resolve,
)


@pytest.fixture(autouse=True)
def isolated_caches(tmp_path, monkeypatch):
    """Empty caches in a temporary folder; downloads fail the test if attempted."""
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setenv("IMGCURATE_CACHE", str(tmp_path / "own"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("IMGCURATE_WEIGHTS_DIR", raising=False)

    def no_download(*args, **kwargs):
        raise AssertionError("a download was attempted")

    monkeypatch.setattr(weights, "download", no_download)


def put_in_hf_cache(root, repo: str, filename: str, payload: bytes):
    """Lay a file out the way huggingface_hub stores it: blob named by SHA-256, snapshot link."""
    folder = root / ("models--" + repo.replace("/", "--"))
    commit = "0" * 40
    digest = hashlib.sha256(payload).hexdigest()
    (folder / "blobs").mkdir(parents=True)
    (folder / "blobs" / digest).write_bytes(payload)
    (folder / "refs").mkdir()
    (folder / "refs" / "main").write_text(commit)
    snapshot = folder / "snapshots" / commit
    snapshot.mkdir(parents=True)
    (snapshot / filename).symlink_to(os.path.relpath(folder / "blobs" / digest, snapshot))
    return digest


def put_in_dir(root, weight: WeightFile, payload: bytes, name: str | None = None):
    path = root / weight.source / (name or weight.names[0])
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(payload)
    return path


def test_weights_dir_comes_before_the_hf_cache(tmp_path):
    digest = put_in_hf_cache(
        tmp_path / "hf", AESTHETIC_WEIGHTS.hf_repo, "model.safetensors", b"hub"
    )
    cached = find_local(AESTHETIC_WEIGHTS, None)
    assert cached is not None and provenance(cached) == f"model.safetensors@sha256:{digest[:12]}"
    local = put_in_dir(tmp_path / "w", AESTHETIC_WEIGHTS, b"mine")
    assert find_local(AESTHETIC_WEIGHTS, str(tmp_path / "w")) == local
    mine = hashlib.sha256(b"mine").hexdigest()[:12]
    assert provenance(local) == f"model.safetensors@sha256:{mine}"


def test_published_names_are_accepted_at_the_root_of_the_weights_dir(tmp_path):
    original = tmp_path / "sac+logos+ava1-l14-linearMSE.pth"
    original.write_bytes(b"x")
    assert find_local(AESTHETIC_WEIGHTS, str(tmp_path)) == original


def test_env_var_names_the_weights_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("IMGCURATE_WEIGHTS_DIR", str(tmp_path))
    assert WeightsPolicy.from_args().weights_dir == str(tmp_path)
    assert WeightsPolicy.from_args("elsewhere").weights_dir == "elsewhere"


def test_offline_and_missing_names_every_file_and_the_fetch_command(tmp_path):
    put_in_dir(tmp_path, AESTHETIC_WEIGHTS, b"present")
    spec = ModelSpec(weights_dir=str(tmp_path))  # the default: ViT-L/14 + every head
    with pytest.raises(MissingWeightsError) as caught:
        plan_models(spec)
    message = str(caught.value)
    assert {w.role for w in caught.value.missing} == {"embedder", "nsfw"}
    assert "timm/vit_large_patch14_clip_224.openai/open_clip_model.safetensors" in message
    assert "laion/clip-autokeras-binary-nsfw/clip_autokeras_binary_nsfw.pth" in message
    assert "aesthetic" not in message.split("looked in")[0]
    assert "HF_HUB_OFFLINE" in message
    assert (
        "imgcurate models fetch --model openclip:ViT-L-14/openai --heads aesthetic,nsfw "
        "--dest DIR" in message
    )


def test_random_weights_need_no_files_and_say_so():
    plan = plan_models(ModelSpec(random_weights=True))
    assert plan.weights == "random" and plan.files == {}
    assert plan.heads == ("aesthetic", "nsfw", "clip_score") and plan.dim == 768


def test_downloads_are_not_tried_when_not_allowed(tmp_path, monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE")
    policy = WeightsPolicy(str(tmp_path), allow_download=False)
    with pytest.raises(MissingWeightsError, match="downloads not allowed"):
        resolve([NSFW_WEIGHTS], policy, "imgcurate models fetch --dest DIR")


def test_archive_download_extracts_the_member(tmp_path, monkeypatch):
    monkeypatch.undo()  # the real download function, with a local file:// source
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    archive = tmp_path / "bundle.zip"
    with zipfile.ZipFile(archive, "w") as bundle:
        bundle.writestr("clip_autokeras_binary_nsfw.pth", b"weights")
    source = WeightFile(
        role="nsfw",
        source="laion/clip-autokeras-binary-nsfw",
        names=("clip_autokeras_binary_nsfw.pth",),
        url=archive.as_uri(),
        archive_member="clip_autokeras_binary_nsfw.pth",
    )
    path = weights.download(source, str(tmp_path / "dest"))
    assert path == tmp_path / "dest" / source.relpath
    assert path.read_bytes() == b"weights"


def test_download_refuses_when_offline(tmp_path, monkeypatch):
    monkeypatch.undo()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(OSError, match="HF_HUB_OFFLINE"):
        weights.download(NSFW_WEIGHTS, str(tmp_path))
