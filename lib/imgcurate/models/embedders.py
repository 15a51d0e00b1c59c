"""Image embedders behind one small interface: reference preprocessing, batched forward.

An :class:`Embedder` turns one decoded image into the model's input tensor with
that model's *reference* transform (open_clip's ``preprocess``; timm's data
config and eval transform), and a batch of such tensors into L2-normalised
float vectors. The executor knows nothing else about a model.

Three sources, chosen by the model name:

- ``openclip:ARCH/PRETRAINED``: any open_clip model; it also embeds captions,
  which ``clip_score`` needs.
- ``timm:NAME``: any timm model. The vector is the pooled feature vector; for
  CLIP image towers (``*clip*`` names not fine-tuned on labels) timm's head *is*
  the image-text projection, so it is kept and the vector lives in CLIP space.
- ``custom:package.module:factory``: your own model. The factory is called with
  the run's :class:`~imgcurate.models.weights.WeightsPolicy` (or with no
  argument if it takes none) and returns an ``Embedder``; wrapping a torch
  module takes a few lines with :class:`ModuleEmbedder`::

      # mypkg/embedders.py
      import torch, torchvision
      from imgcurate.models.embedders import ModuleEmbedder

      def resnet50(policy):
          published = torchvision.models.ResNet50_Weights.IMAGENET1K_V2
          net = torchvision.models.resnet50(weights=None if policy.random else published)
          net.fc = torch.nn.Identity()  # pooled 2048-d features instead of logits
          return ModuleEmbedder(
              "custom:mypkg.embedders:resnet50", net, published.transforms(),
              dim=2048, image_size=224,
              weights="random" if policy.random else "torchvision:" + str(published),
          )

  and run with ``--model custom:mypkg.embedders:resnet50``.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from PIL import Image
from torch import nn

from imgcurate.models.catalog import ModelName, UnknownModelError
from imgcurate.models.weights import WeightsPolicy

Transform = Callable[[Image.Image], torch.Tensor]


class Embedder:
    """What the executor needs from a model.

    Attributes: ``name`` (as given on the command line), ``dim`` (vector
    width), ``image_size`` (model input side, used to pick the JPEG draft scale)
    and ``weights`` (provenance recorded in every output row).
    """

    name: str
    dim: int
    image_size: int
    weights: str = "unknown"

    def preprocess(self, image: Image.Image) -> torch.Tensor:
        """The model's reference transform: one RGB image to a ``(3, H, W)`` tensor."""
        raise NotImplementedError

    def encode_images(self, pixels: torch.Tensor) -> torch.Tensor:
        """A ``(N, 3, H, W)`` batch (already on the model's device) to ``(N, dim)`` unit vectors."""
        raise NotImplementedError

    @property
    def has_text(self) -> bool:
        """True when :meth:`encode_texts` works (CLIP models), which ``clip_score`` needs."""
        return False

    def encode_texts(self, texts: Sequence[str]) -> torch.Tensor:
        raise NotImplementedError(f"{self.name} has no text tower")

    def to(self, device: str | torch.device) -> Embedder:
        return self


class ModuleEmbedder(Embedder):
    """An embedder around any torch module and transform; ``forward`` picks the output."""

    def __init__(
        self,
        name: str,
        module: nn.Module,
        transform: Transform,
        dim: int,
        image_size: int,
        weights: str = "unknown",
        forward: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> None:
        self.name = name
        self.module = module.eval()
        self.transform = transform
        self.dim = dim
        self.image_size = image_size
        self.weights = weights
        self._forward = forward or module

    def preprocess(self, image: Image.Image) -> torch.Tensor:
        return self.transform(image)

    def encode_images(self, pixels: torch.Tensor) -> torch.Tensor:
        return nn.functional.normalize(self._forward(pixels).float(), dim=-1)

    def to(self, device: str | torch.device) -> ModuleEmbedder:
        self.module.to(device)
        return self


class OpenClipEmbedder(ModuleEmbedder):
    """An open_clip model: image and text towers, tokenizer, reference preprocessing."""

    def __init__(self, name: str, model: nn.Module, transform: Transform, tokenizer, **kw) -> None:
        super().__init__(name, model, transform, forward=model.encode_image, **kw)
        self.tokenizer = tokenizer

    @property
    def has_text(self) -> bool:
        return True

    def encode_texts(self, texts: Sequence[str]) -> torch.Tensor:
        device = next(self.module.parameters()).device
        tokens = self.tokenizer(list(texts)).to(device)
        return nn.functional.normalize(self.module.encode_text(tokens).float(), dim=-1)


def build_embedder(
    model: ModelName, checkpoint: Path | None, policy: WeightsPolicy, weights: str
) -> Embedder:
    """Build the embedder named ``model`` on the CPU.

    ``checkpoint`` is the resolved weights file (``None`` with random weights);
    ``weights`` is the provenance to record. Custom factories resolve their own.
    """
    if model.kind == "openclip":
        return _openclip(model, checkpoint, weights)
    if model.kind == "timm":
        return _timm(model, checkpoint, weights)
    return _custom(model, policy)


def _openclip(model: ModelName, checkpoint: Path | None, weights: str) -> OpenClipEmbedder:
    import open_clip

    cfg = (open_clip.get_pretrained_cfg(model.name, model.tag) if model.tag else {}) or {}
    # Loading from a file skips open_clip's tag lookup, so pass the tag's settings on.
    clip, _, transform = open_clip.create_model_and_transforms(
        model.name,
        pretrained=str(checkpoint) if checkpoint else None,
        force_quick_gelu=bool(cfg.get("quick_gelu", False)),
        image_mean=cfg.get("mean"),
        image_std=cfg.get("std"),
        image_interpolation=cfg.get("interpolation"),
        image_resize_mode=cfg.get("resize_mode"),
        pretrained_text=False,
    )
    return OpenClipEmbedder(
        str(model),
        clip,
        transform,
        open_clip.get_tokenizer(model.name),
        dim=int(open_clip.get_model_config(model.name)["embed_dim"]),
        image_size=_side(clip.visual.image_size),
        weights=weights,
    )


def _timm(model: ModelName, checkpoint: Path | None, weights: str) -> ModuleEmbedder:
    import timm

    if checkpoint:
        net = timm.create_model(
            model.name, pretrained=True, pretrained_cfg_overlay={"file": str(checkpoint)}
        )
    else:
        net = timm.create_model(model.name, pretrained=False)
    if not is_projection_head(net.pretrained_cfg):
        net.reset_classifier(0)  # pooled features instead of class logits
    config = timm.data.resolve_model_data_config(net)
    transform = timm.data.create_transform(**config, is_training=False)
    dim = net.num_classes or net.num_features
    return ModuleEmbedder(
        str(model),
        net,
        transform,
        dim=dim,
        image_size=_side(config["input_size"][1:]),
        weights=weights,
    )


def is_projection_head(pretrained_cfg: dict) -> bool:
    """True for timm CLIP image towers, whose head projects into the image-text space.

    Those are named ``*clip*`` and not fine-tuned on a label set (tags such as
    ``openai_ft_in1k`` have a classifier head instead).
    """
    arch = str(pretrained_cfg.get("architecture") or "")
    tag = str(pretrained_cfg.get("tag") or "")
    return "clip" in f"{arch}.{tag}".lower() and "_ft" not in f"_{tag}".lower()


def _custom(model: ModelName, policy: WeightsPolicy) -> Embedder:
    module_name, _, attribute = model.name.rpartition(":")
    try:
        factory = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as error:
        raise UnknownModelError(f"{model}: cannot import the factory: {error}") from error
    takes_policy = bool(inspect.signature(factory).parameters)
    embedder = factory(policy) if takes_policy else factory()
    required = ("dim", "image_size", "preprocess", "encode_images")
    missing = [name for name in required if not hasattr(embedder, name)]
    if missing:
        raise TypeError(f"{model}: the factory returned an object without {', '.join(missing)}")
    if getattr(embedder, "weights", "unknown") == "unknown":
        embedder.weights = "random" if policy.random else str(model)
    return embedder


def _side(size: int | Sequence[int]) -> int:
    """The shorter side of a model input size given as an int or ``(H, W)``."""
    return int(size) if isinstance(size, int) else int(min(size))
