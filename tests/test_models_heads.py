"""Heads: published checkpoint layouts load through the real loaders and compute the same
function as the same layers written out by hand."""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"

import pytest
import torch
from safetensors.torch import save_file

from imgcurate.models.heads import (
    HeadMismatchError,
    choose_heads,
    cosine,
    load_head,
    read_state_dict,
)

AESTHETIC_SHAPES = [(1024, 768), (128, 1024), (64, 128), (16, 64), (1, 16)]
AESTHETIC_INDICES = [0, 2, 4, 6, 7]  # Linear layers of the Sequential, between dropouts
NSFW_SHAPES = [(64, 768), (512, 64), (256, 512), (1, 256)]


def aesthetic_checkpoint(seed: int = 1) -> dict[str, torch.Tensor]:
    """The key layout of ``sac+logos+ava1-l14-linearMSE.pth``, filled with random values."""
    g = torch.Generator().manual_seed(seed)
    state = {}
    for index, (out, inp) in zip(AESTHETIC_INDICES, AESTHETIC_SHAPES, strict=True):
        state[f"layers.{index}.weight"] = torch.randn(out, inp, generator=g) / inp**0.5
        state[f"layers.{index}.bias"] = torch.randn(out, generator=g) * 0.1
    return state


def nsfw_checkpoint(seed: int = 2, keras_shapes: bool = False) -> dict[str, torch.Tensor]:
    """The key layout of the PyTorch port of ``clip_autokeras_binary_nsfw``, random values."""
    g = torch.Generator().manual_seed(seed)
    shape = (1, 768) if keras_shapes else (768,)
    state = {
        "norm.mean": torch.randn(shape, generator=g) * 0.02,
        "norm.variance": torch.rand(shape, generator=g) * 0.01 + 1e-4,
    }
    for number, (out, inp) in enumerate(NSFW_SHAPES, start=1):
        state[f"linear_{number}.weight"] = torch.randn(out, inp, generator=g) / inp**0.5
        state[f"linear_{number}.bias"] = torch.randn(out, generator=g) * 0.1
    if keras_shapes:
        state["norm.count"] = torch.tensor(1000)
    return state


def aesthetic_by_hand(state, x):
    for index in AESTHETIC_INDICES:
        x = x @ state[f"layers.{index}.weight"].T + state[f"layers.{index}.bias"]
    return x[:, 0]


def nsfw_by_hand(state, x):
    x = (x - state["norm.mean"].reshape(-1)) / torch.sqrt(state["norm.variance"].reshape(-1))
    for number in (1, 2, 3):
        x = torch.clamp(x @ state[f"linear_{number}.weight"].T + state[f"linear_{number}.bias"], 0)
    return torch.sigmoid(x @ state["linear_4.weight"].T + state["linear_4.bias"])[:, 0]


def embeddings(n: int = 16) -> torch.Tensor:
    x = torch.randn(n, 768, generator=torch.Generator().manual_seed(3))
    return torch.nn.functional.normalize(x, dim=-1)


@pytest.mark.parametrize("fmt", ["pth", "safetensors"])
def test_aesthetic_checkpoint_loads_and_matches_hand_built_layers(tmp_path, fmt):
    state = aesthetic_checkpoint()
    path = tmp_path / f"aesthetic.{fmt}"
    torch.save(state, path) if fmt == "pth" else save_file(state, str(path))
    head = load_head("aesthetic", path)
    x = embeddings()
    with torch.inference_mode():
        out = head(x)
    assert out.shape == (16,)
    torch.testing.assert_close(out, aesthetic_by_hand(state, x), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("keras_shapes", [False, True])
def test_nsfw_checkpoint_loads_and_matches_hand_built_layers(tmp_path, keras_shapes):
    state = nsfw_checkpoint(keras_shapes=keras_shapes)
    path = tmp_path / "clip_autokeras_binary_nsfw.pth"
    torch.save(state, path)
    head = load_head("nsfw", path)
    x = embeddings()
    with torch.inference_mode():
        out = head(x)
    assert out.shape == (16,)
    assert torch.all((out >= 0) & (out <= 1))
    torch.testing.assert_close(out, nsfw_by_hand(state, x), atol=1e-5, rtol=1e-5)


def test_wrapped_checkpoints_are_unwrapped(tmp_path):
    state = aesthetic_checkpoint()
    path = tmp_path / "wrapped.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}}, path)
    assert read_state_dict(path).keys() == state.keys()


def test_a_wrong_checkpoint_is_a_clear_error(tmp_path):
    path = tmp_path / "nsfw-as-aesthetic.pth"
    torch.save(nsfw_checkpoint(), path)
    with pytest.raises(ValueError, match="does not fit the aesthetic head"):
        load_head("aesthetic", path)


def test_pickled_code_is_refused(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"layers.0.weight": torch.zeros(1), "extra": object()}, path)
    with pytest.raises(Exception, match="[Ww]eights only"):
        read_state_dict(path)


def test_default_heads_are_those_that_fit():
    assert choose_heads(None, 768, True) == ("aesthetic", "nsfw", "clip_score")
    assert choose_heads(None, 768, False) == ("aesthetic", "nsfw")
    assert choose_heads(None, 512, True) == ("clip_score",)
    assert choose_heads(None, 64, False) == ()
    assert choose_heads(["nsfw"], 768, True) == ("nsfw",)


def test_explicit_heads_that_do_not_fit_fail_clearly():
    with pytest.raises(HeadMismatchError, match="768-dimensional.*512-dimensional"):
        choose_heads(["aesthetic", "clip_score"], 512, True)
    with pytest.raises(HeadMismatchError, match="text tower"):
        choose_heads(["clip_score"], 768, False)
    with pytest.raises(HeadMismatchError, match="unknown head"):
        choose_heads(["beauty"], 768, True)


def test_cosine_is_bounded_and_exact_on_itself():
    x = embeddings(4)
    torch.testing.assert_close(cosine(x, x), torch.ones(4))
    assert torch.all(cosine(x, -x) <= -0.999)
