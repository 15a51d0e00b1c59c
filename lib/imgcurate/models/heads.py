"""Scores computed from the image embedding: aesthetic, NSFW, CLIP score.

The two MLPs are the LAION models the field filters with, rebuilt layer for
layer so that their published checkpoints load with ``strict`` key matching:

- ``aesthetic``: the improved aesthetic predictor (``layers.{0,2,4,6,7}``,
  Linear 768→1024→128→64→16→1 with dropout between, no activations) on
  L2-normalised CLIP ViT-L/14 embeddings; scores are roughly 1 to 10.
- ``nsfw``: the PyTorch port of the CLIP-based NSFW detector (``norm.mean``,
  ``norm.variance``, ``linear_1..4``): Keras-style normalisation, then
  768→64→512→256→1 with ReLU and a sigmoid; a probability of NSFW content.

``clip_score`` has no weights: it is the cosine similarity between the image
embedding and the caption's embedding from the same CLIP model.

Checkpoints are read safely: safetensors, or ``torch.load(weights_only=True)``,
which refuses pickled code.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

#: Input width each head was trained on (the CLIP ViT-L/14 embedding).
HEAD_INPUT_DIM = {"aesthetic": 768, "nsfw": 768}
TEXT_HEADS = ("clip_score",)


class HeadMismatchError(ValueError):
    """A head was asked for that cannot run on this embedder."""


class AestheticMLP(nn.Module):
    """LAION improved aesthetic predictor: a linear stack (dropout is inactive at inference)."""

    def __init__(self, input_dim: int = 768) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            nn.Linear(input_dim, 1024),
            nn.Dropout(0.2),
            nn.Linear(1024, 128),
            nn.Dropout(0.2),
            nn.Linear(128, 64),
            nn.Dropout(0.1),
            nn.Linear(64, 16),
            nn.Linear(16, 1),
        )

    def forward(self, embedding: torch.Tensor) -> torch.Tensor:
        return self.layers(embedding).squeeze(-1)


class Normalization(nn.Module):
    """Keras ``Normalization``: ``(x - mean) / sqrt(variance)`` with stored statistics."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("variance", torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.variance.sqrt()


class NsfwMLP(nn.Module):
    """LAION CLIP-based NSFW detector (PyTorch port of the AutoKeras model)."""

    def __init__(self, input_dim: int = 768) -> None:
        super().__init__()
        self.norm = Normalization(input_dim)
        self.linear_1 = nn.Linear(input_dim, 64)
        self.linear_2 = nn.Linear(64, 512)
        self.linear_3 = nn.Linear(512, 256)
        self.linear_4 = nn.Linear(256, 1)

    def forward(self, embedding: torch.Tensor) -> torch.Tensor:
        x = self.norm(embedding)
        x = torch.relu(self.linear_1(x))
        x = torch.relu(self.linear_2(x))
        x = torch.relu(self.linear_3(x))
        return torch.sigmoid(self.linear_4(x)).squeeze(-1)


_BUILDERS = {"aesthetic": AestheticMLP, "nsfw": NsfwMLP}


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Tensors from a safetensors file or a pickled state dict, without running pickled code.

    Unwraps the usual containers (``{"state_dict": ...}``, ``{"model": ...}``) and
    the ``module.`` prefix that ``DataParallel`` adds when a model is saved.
    """
    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(path), device="cpu")
    else:
        state = torch.load(path, map_location="cpu", weights_only=True)
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict):
        raise ValueError(f"{path.name}: expected a state dict, found {type(state).__name__}")
    return {k.removeprefix("module."): v for k, v in state.items()}


def load_head(name: str, path: str | Path | None) -> nn.Module:
    """Build head ``name`` and load its published checkpoint (``None``: keep random init)."""
    head = _BUILDERS[name](HEAD_INPUT_DIM[name])
    if path is not None:
        state = read_state_dict(path)
        if name == "nsfw":
            state = _fit_normalization(state, HEAD_INPUT_DIM[name])
        try:
            head.load_state_dict(state, strict=True)
        except RuntimeError as error:
            raise ValueError(f"{Path(path).name} does not fit the {name} head: {error}") from None
    return head.eval()


def _fit_normalization(state: dict[str, torch.Tensor], dim: int) -> dict[str, torch.Tensor]:
    """Keras keeps the statistics as ``(1, dim)`` and a sample ``count``; we keep ``(dim,)``."""
    state = dict(state)
    state.pop("norm.count", None)
    for key in ("norm.mean", "norm.variance"):
        if key in state and state[key].numel() == dim:
            state[key] = state[key].reshape(dim)
    return state


def choose_heads(requested: Sequence[str] | None, dim: int, has_text: bool) -> tuple[str, ...]:
    """The heads to run: those asked for, or by default every head that fits.

    A head that was asked for explicitly and does not fit is an error, raised
    before any work starts, rather than a column of nulls discovered later.
    """
    names = ("aesthetic", "nsfw", "clip_score")
    if requested is None:
        return tuple(n for n in names if _misfit(n, dim, has_text) is None)
    unknown = [h for h in requested if h not in names]
    if unknown:
        raise HeadMismatchError(f"unknown head(s) {', '.join(unknown)}; known: {', '.join(names)}")
    problems = [p for p in (_misfit(h, dim, has_text) for h in requested) if p]
    if problems:
        raise HeadMismatchError("; ".join(problems))
    return tuple(n for n in names if n in requested)


def _misfit(head: str, dim: int, has_text: bool) -> str | None:
    if head in TEXT_HEADS:
        return None if has_text else f"{head} needs an embedder with a text tower (a CLIP model)"
    expected = HEAD_INPUT_DIM[head]
    if dim != expected:
        return (
            f"{head} was trained on {expected}-dimensional CLIP ViT-L/14 embeddings, "
            f"but this embedder produces {dim}-dimensional vectors"
        )
    return None


def cosine(image: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
    """Row-wise cosine similarity of two batches of vectors."""
    image = nn.functional.normalize(image.float(), dim=-1)
    text = nn.functional.normalize(text.float(), dim=-1)
    return (image * text).sum(dim=-1)
