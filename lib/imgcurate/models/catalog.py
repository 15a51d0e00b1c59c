"""Which files each named model and head needs, and where they are published.

Model names are ``openclip:ARCH/PRETRAINED`` (any open_clip pretrained tag),
``timm:NAME`` (any timm model, ``NAME`` optionally with a ``.tag``) and
``custom:package.module:factory`` (a user's own factory, which finds its own
weights). The published locations come from open_clip's and timm's own
pretrained registries, so every model they know works without a table here.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from imgcurate.models import tiny
from imgcurate.models.weights import WeightFile

DEFAULT_MODEL = "openclip:ViT-L-14/openai"
HEAD_NAMES = ("aesthetic", "nsfw", "clip_score")
KINDS = ("openclip", "timm", "custom")

#: LAION improved aesthetic predictor (sac+logos+ava1, linear MSE), as mirrored on the Hub.
AESTHETIC_WEIGHTS = WeightFile(
    role="aesthetic",
    source="ttj/sac-logos-ava1-l14-linearMSE",
    names=("model.safetensors",),
    hf_repo="ttj/sac-logos-ava1-l14-linearMSE",
    aliases=("sac+logos+ava1-l14-linearMSE.pth",),
)

#: LAION CLIP-based NSFW detector, PyTorch port of the Keras model (zip on GitHub).
NSFW_WEIGHTS = WeightFile(
    role="nsfw",
    source="laion/clip-autokeras-binary-nsfw",
    names=("clip_autokeras_binary_nsfw.pth",),
    url=(
        "https://github.com/LAION-AI/CLIP-based-NSFW-Detector/files/10250461/"
        "clip_autokeras_binary_nsfw.zip"
    ),
    archive_member="clip_autokeras_binary_nsfw.pth",
    aliases=("clip_autokeras_binary_nsfw.pth",),
)

HEAD_WEIGHTS = {"aesthetic": AESTHETIC_WEIGHTS, "nsfw": NSFW_WEIGHTS}

_OPENCLIP_WEIGHTS = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")
_TIMM_WEIGHTS = ("model.safetensors", "pytorch_model.bin")


class UnknownModelError(ValueError):
    """A model name that is malformed or unknown to its library."""


@dataclass(frozen=True)
class ModelName:
    """A parsed model name: ``kind:name[/tag]``."""

    kind: str
    name: str
    tag: str | None = None

    def __str__(self) -> str:
        return f"{self.kind}:{self.name}" + (f"/{self.tag}" if self.tag else "")


def parse_model(text: str) -> ModelName:
    """Split ``openclip:ViT-L-14/openai``, ``timm:NAME`` or ``custom:pkg.mod:factory``."""
    kind, sep, rest = text.partition(":")
    if not sep or kind not in KINDS or not rest:
        raise UnknownModelError(
            f"model {text!r}: expected openclip:ARCH/PRETRAINED, timm:NAME "
            "or custom:package.module:factory"
        )
    if kind == "openclip":
        arch, _, tag = rest.partition("/")
        tiny.ensure_registered(arch)
        return ModelName(kind, arch, tag or None)
    if kind == "custom" and (":" not in rest or rest.endswith(":")):
        raise UnknownModelError(f"model {text!r}: expected custom:package.module:factory")
    return ModelName(kind, rest)


def embedder_files(model: ModelName) -> list[WeightFile]:
    """The files needed for the embedder's published weights (none for ``custom:``)."""
    if model.kind == "openclip":
        return [_openclip_file(model)]
    if model.kind == "timm":
        return [_timm_file(model)]
    return []


def head_files(heads: tuple[str, ...]) -> list[WeightFile]:
    return [HEAD_WEIGHTS[h] for h in heads if h in HEAD_WEIGHTS]


def fetch_command(model: ModelName | str, heads: tuple[str, ...]) -> str:
    """The command that fetches these weights on a machine with network access."""
    with_files = [h for h in heads if h in HEAD_WEIGHTS]
    command = f"imgcurate models fetch --model {model}"
    if with_files:
        command += " --heads " + ",".join(with_files)
    return command + " --dest DIR"


def _openclip_file(model: ModelName) -> WeightFile:
    import open_clip

    if model.name not in open_clip.list_models():
        raise UnknownModelError(f"open_clip has no architecture {model.name!r}")
    cfg = open_clip.get_pretrained_cfg(model.name, model.tag) if model.tag else {}
    if not cfg:
        tags = open_clip.list_pretrained_tags_by_model(model.name)
        raise UnknownModelError(
            f"{model}: open_clip has no pretrained weights by that tag "
            f"(known tags: {', '.join(tags) or 'none'}); "
            "use --random-weights for an untrained model"
        )
    if cfg.get("hf_hub"):
        # open_clip's convention: "org/repo/" means its default file names, else "org/repo/file".
        repo, filename = os.path.split(cfg["hf_hub"])
        return WeightFile("embedder", repo, _openclip_names(filename), hf_repo=repo)
    url = cfg["url"]
    return WeightFile("embedder", f"open_clip/{model.name}", (url.rsplit("/", 1)[-1],), url=url)


def _openclip_names(filename: str) -> tuple[str, ...]:
    """Prefer a safetensors twin of a pickled checkpoint, as open_clip itself does."""
    if not filename:
        return _OPENCLIP_WEIGHTS
    stem, ext = os.path.splitext(filename)
    if ext in (".bin", ".pth", ".pt"):
        return (stem + ".safetensors", filename)
    return (filename,)


def _timm_file(model: ModelName) -> WeightFile:
    import timm

    cfg = timm.models.get_pretrained_cfg(model.name)
    if cfg is None:
        raise UnknownModelError(
            f"{model}: timm has no pretrained weights by that name; "
            "use --random-weights for an untrained model"
        )
    if cfg.hf_hub_id:
        names = (cfg.hf_hub_filename,) if cfg.hf_hub_filename else _TIMM_WEIGHTS
        return WeightFile("embedder", cfg.hf_hub_id, names, hf_repo=cfg.hf_hub_id)
    if cfg.url:
        name = cfg.url.rsplit("/", 1)[-1]
        return WeightFile("embedder", f"timm/{model.name}", (name,), url=cfg.url)
    raise UnknownModelError(f"{model}: timm lists no download location for its weights")
