"""``bench/gpu_embed.py`` parses its arguments and falls back to the CPU, loudly, without CUDA."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest
import torch

os.environ["HF_HUB_OFFLINE"] = "1"

BENCH = Path(__file__).resolve().parents[1] / "bench" / "gpu_embed.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("gpu_embed", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_defaults_are_the_production_setting(bench):
    args = bench.build_parser().parse_args([])
    assert args.model == "openclip:ViT-L-14/openai"
    assert (args.device, args.precision, args.batch_size) == ("cuda", "fp16", 256)
    args = bench.build_parser().parse_args(["--random-weights", "--device", "cpu"])
    assert args.random_weights and args.device == "cpu"
    with pytest.raises(SystemExit):
        bench.build_parser().parse_args(["--random-weights", "--weights-dir", "w"])


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the fallback of a CPU-only machine")
def test_cuda_request_falls_back_to_cpu_with_a_warning(bench):
    device, note = bench.resolve_device("cuda")
    assert device == "cpu" and "not GPU numbers" in note
    assert bench.resolve_device("cpu") == ("cpu", None)


def test_runs_end_to_end_on_a_tiny_model(bench, capsys):
    argv = ["--model", "openclip:imgcurate-tiny-clip", "--random-weights", "--device", "cpu"]
    argv += ["--num-shards", "1", "--per-shard", "4", "--side", "256", "--batch-size", "2"]
    argv += ["--model-batches", "1", "--warmup", "0", "--threads", "2"]
    assert bench.main(argv) == 0
    out = capsys.readouterr().out
    assert (
        "model only" in out and "end-to-end / model-only" in out and "weights       random" in out
    )
