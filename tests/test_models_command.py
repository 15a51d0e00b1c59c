"""``imgcurate models list|fetch`` without network."""

from __future__ import annotations

import argparse

import pytest

from imgcurate.commands import models as command


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="imgcurate")
    command.add_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(argv)


@pytest.fixture(autouse=True)
def offline(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setenv("IMGCURATE_CACHE", str(tmp_path / "own"))
    monkeypatch.delenv("IMGCURATE_WEIGHTS_DIR", raising=False)


def test_list_shows_each_file_its_source_and_whether_it_is_here(tmp_path, capsys):
    present = tmp_path / "w" / "ttj/sac-logos-ava1-l14-linearMSE/model.safetensors"
    present.parent.mkdir(parents=True)
    present.write_bytes(b"x")
    args = parse(["models", "list", "--weights-dir", str(tmp_path / "w")])
    assert args.run(args) == 0
    out = capsys.readouterr().out
    assert "openclip:ViT-L-14/openai" in out and "aesthetic, nsfw, clip_score" in out
    assert f"found {present}" in out
    assert out.count("MISSING") == 2
    assert "imgcurate models fetch --model openclip:ViT-L-14/openai" in out


def test_list_for_a_timm_model_runs_only_the_heads_that_fit(capsys):
    args = parse(["models", "list", "--model", "timm:test_vit.r160_in1k"])
    assert args.run(args) == 0
    out = capsys.readouterr().out
    assert "heads      none fit" in out and "timm/test_vit.r160_in1k/model.safetensors" in out


def test_fetch_offline_fails_clearly(tmp_path, capsys):
    args = parse(["models", "fetch", "--dest", str(tmp_path / "dest")])
    assert args.run(args) == 2
    assert "HF_HUB_OFFLINE" in capsys.readouterr().err
    assert not (tmp_path / "dest").exists()


def test_fetch_online_writes_every_file_under_dest(tmp_path, monkeypatch, capsys):
    from imgcurate.models import weights

    monkeypatch.delenv("HF_HUB_OFFLINE")
    fetched = []

    def fake_download(weight, dest):  # stands in for the network
        fetched.append((weight.role, dest))
        return f"{dest}/{weight.relpath}"

    monkeypatch.setattr(weights, "download", fake_download)
    args = parse(["models", "fetch", "--dest", "D", "--heads", "aesthetic"])
    assert args.run(args) == 0
    assert fetched == [("embedder", "D"), ("aesthetic", "D")]
    assert "--weights-dir D" in capsys.readouterr().out


def test_unknown_heads_are_rejected_by_the_parser():
    with pytest.raises(SystemExit):
        parse(["models", "list", "--heads", "aesthetic,beauty"])
