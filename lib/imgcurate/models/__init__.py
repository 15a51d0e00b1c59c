"""Embedders, heads and their weights: everything ``embed`` runs on an image.

- ``catalog``: model names and the files each model and head is published as;
- ``weights``: finding those files (weights dir, caches, download) and provenance;
- ``embedders``: open_clip, timm and custom embedders behind one interface;
- ``heads``: the aesthetic and NSFW MLPs and the CLIP score;
- ``bundle``: a run's models, planned on the driver and loaded once per worker;
- ``device``: which device a Spark task uses.

The names below are imported on first use, so that the command line and the
driver do not pay for importing torch until a model is actually needed.
"""

from __future__ import annotations

from imgcurate.models.catalog import DEFAULT_MODEL, HEAD_NAMES

_LAZY = {"ModelSpec", "Models", "load_models", "plan_models", "requirements"}

__all__ = ["DEFAULT_MODEL", "HEAD_NAMES", *sorted(_LAZY)]


def __getattr__(name: str):
    if name in _LAZY:
        from imgcurate.models import bundle

        return getattr(bundle, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
