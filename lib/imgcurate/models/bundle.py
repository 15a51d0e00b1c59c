"""The models of one embed run: planned on the driver, loaded once per Python worker.

A :class:`ModelSpec` is the small, picklable description that travels to
executors. :func:`plan_models` turns it into decisions (which heads run, which
files, their provenance) without building the large model, so the driver can
fail at start-up on a head that does not fit or a file that is missing.
:func:`load_models` builds everything once per process and keeps it: the next
shard reuses the same weights, already on the device.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from imgcurate.models import catalog
from imgcurate.models.catalog import DEFAULT_MODEL, ModelName, parse_model
from imgcurate.models.embedders import Embedder, build_embedder, is_projection_head
from imgcurate.models.heads import HEAD_INPUT_DIM, choose_heads, cosine, load_head
from imgcurate.models.weights import WeightFile, WeightsPolicy, provenance, resolve

#: Seed for ``--random-weights``, so every worker builds the same random model.
RANDOM_SEED = 0
PRECISIONS = ("fp16", "bf16", "fp32")


@dataclass(frozen=True)
class ModelSpec:
    """What to run: embedder name, heads (``None``: all that fit), where weights come from."""

    model: str = DEFAULT_MODEL
    heads: tuple[str, ...] | None = None
    weights_dir: str | None = None
    random_weights: bool = False
    allow_download: bool = True
    precision: str = "fp16"

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision {self.precision!r}: expected one of {PRECISIONS}")

    @property
    def policy(self) -> WeightsPolicy:
        return WeightsPolicy.from_args(self.weights_dir, self.random_weights, self.allow_download)


@dataclass(frozen=True)
class Plan:
    """A spec resolved: the parsed name, vector width, heads, files and provenance."""

    model: ModelName
    dim: int
    has_text: bool
    heads: tuple[str, ...]
    files: dict[str, Path] = field(default_factory=dict)
    weights: str = "random"


@dataclass(frozen=True)
class Requirements:
    """What a spec needs before anything is resolved: heads that run and files to find."""

    model: ModelName
    dim: int
    has_text: bool
    heads: tuple[str, ...]
    files: tuple[WeightFile, ...]

    @property
    def fetch_command(self) -> str:
        return catalog.fetch_command(self.model, self.heads)


def requirements(spec: ModelSpec) -> Requirements:
    """Parse the name, choose the heads and list the files, without touching any weights.

    Errors: :class:`~imgcurate.models.catalog.UnknownModelError`,
    :class:`~imgcurate.models.heads.HeadMismatchError`.
    """
    model = parse_model(spec.model)
    dim, has_text = _shape_of(model, spec.policy)
    heads = choose_heads(spec.heads, dim, has_text)
    files = (
        ()
        if spec.random_weights
        else tuple(catalog.embedder_files(model) + catalog.head_files(heads))
    )
    return Requirements(model, dim, has_text, heads, files)


def plan_models(spec: ModelSpec) -> Plan:
    """Decide heads and locate every weights file; raises before any heavy work.

    Errors: those of :func:`requirements`, and
    :class:`~imgcurate.models.weights.MissingWeightsError` naming every missing file.
    """
    needs = requirements(spec)
    if spec.random_weights:
        return Plan(needs.model, needs.dim, needs.has_text, needs.heads)
    found = resolve(needs.files, spec.policy, needs.fetch_command)
    files = {w.role: path for w, path in found.items()}
    parts = [f"{role}={provenance(path)}" for role, path in files.items()]
    if needs.model.kind == "custom":
        parts.insert(0, f"embedder={_custom_embedder(needs.model, spec.policy).weights}")
    return Plan(needs.model, needs.dim, needs.has_text, needs.heads, files, ";".join(parts))


def _shape_of(model: ModelName, policy: WeightsPolicy) -> tuple[int, bool]:
    """Vector width and text support, read from configs rather than by loading weights."""
    if model.kind == "openclip":
        import open_clip

        config = open_clip.get_model_config(model.name)
        if config is None:
            raise catalog.UnknownModelError(f"open_clip has no architecture {model.name!r}")
        return int(config["embed_dim"]), True
    if model.kind == "timm":
        import timm

        try:
            with torch.device("meta"):  # structure only, no memory, no weights
                net = timm.create_model(model.name, pretrained=False)
        except RuntimeError as error:
            raise catalog.UnknownModelError(f"{model}: {error}") from error
        keep_head = is_projection_head(net.pretrained_cfg)
        return int(net.num_classes if keep_head else net.num_features), False
    embedder = _custom_embedder(model, policy)
    return int(embedder.dim), bool(embedder.has_text)


_custom_cache: dict[tuple[ModelName, WeightsPolicy], Embedder] = {}


def _custom_embedder(model: ModelName, policy: WeightsPolicy) -> Embedder:
    key = (model, policy)
    if key not in _custom_cache:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(RANDOM_SEED)
            _custom_cache[key] = build_embedder(model, None, policy, "unknown")
    return _custom_cache[key]


class Models:
    """A loaded embedder and heads on one device, with the batched forward the executor calls."""

    def __init__(
        self, spec: ModelSpec, plan: Plan, embedder: Embedder, heads: dict[str, nn.Module]
    ):
        self.spec = spec
        self.plan = plan
        self.embedder = embedder
        self.heads = heads
        self.device = torch.device("cpu")

    @property
    def name(self) -> str:
        return str(self.plan.model)

    @property
    def weights(self) -> str:
        return self.plan.weights

    @property
    def head_names(self) -> tuple[str, ...]:
        return self.plan.heads

    def to(self, device: str | torch.device) -> Models:
        device = torch.device(device)
        if device != self.device:
            self.embedder.to(device)
            for head in self.heads.values():
                head.to(device)
            self.device = device
        return self

    def forward(
        self, pixels: torch.Tensor, captions: Sequence[str | None] | None = None
    ) -> dict[str, np.ndarray]:
        """Embed a batch and score it: ``{"vector": (N, dim), head: (N,)}`` as float32 arrays.

        Runs under ``inference_mode`` with autocast on CUDA; heads run in float32
        on the normalised vectors (they are tiny, and their scores are thresholded).
        ``clip_score`` is NaN where a caption is missing or empty.
        """
        with torch.inference_mode():
            pixels = self._to_device(pixels)
            with self._autocast():
                vectors = self.embedder.encode_images(pixels)
            vectors = nn.functional.normalize(vectors.float(), dim=-1)
            out = {"vector": vectors}
            for name, head in self.heads.items():
                out[name] = head(vectors).float()
            if "clip_score" in self.head_names and captions is not None:
                out["clip_score"] = self._clip_scores(vectors, captions)
            return {name: value.cpu().numpy() for name, value in out.items()}

    def _to_device(self, pixels: torch.Tensor) -> torch.Tensor:
        if self.device.type == "cuda" and pixels.device.type == "cpu":
            return pixels.pin_memory().to(self.device, non_blocking=True)
        return pixels.to(self.device)

    def _autocast(self):
        if self.device.type != "cuda" or self.spec.precision == "fp32":
            return contextlib.nullcontext()
        dtype = torch.float16 if self.spec.precision == "fp16" else torch.bfloat16
        return torch.autocast("cuda", dtype=dtype)

    def _clip_scores(self, vectors: torch.Tensor, captions: Sequence[str | None]) -> torch.Tensor:
        scores = torch.full((len(captions),), float("nan"), device=vectors.device)
        rows = [i for i, text in enumerate(captions) if text and text.strip()]
        if rows:
            with self._autocast():
                texts = self.embedder.encode_texts([captions[i] for i in rows])
            scores[rows] = cosine(vectors[rows], texts)
        return scores


_loaded: dict[ModelSpec, Models] = {}
_lock = threading.Lock()


def load_models(spec: ModelSpec, device: str | torch.device = "cpu") -> Models:
    """The models for ``spec`` on ``device``, built at most once per process.

    A later task of the same worker gets the same objects; if its GPU slot
    differs, the weights move there instead of being loaded a second time.
    """
    with _lock:
        models = _loaded.get(spec)
        if models is None:
            models = _build(spec)
            _loaded[spec] = models
        return models.to(device)


def _build(spec: ModelSpec) -> Models:
    plan = plan_models(spec)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(RANDOM_SEED)
        if plan.model.kind == "custom":
            embedder = _custom_embedder(plan.model, spec.policy)
        else:
            checkpoint = plan.files.get("embedder")
            embedder = build_embedder(plan.model, checkpoint, spec.policy, plan.weights)
        heads = {
            name: load_head(name, plan.files.get(name))
            for name in plan.heads
            if name in HEAD_INPUT_DIM
        }
    return Models(spec, plan, embedder, heads)


def clear_cache() -> None:
    """Forget loaded models (tests; a long-lived process switching models)."""
    with _lock:
        _loaded.clear()
        _custom_cache.clear()
