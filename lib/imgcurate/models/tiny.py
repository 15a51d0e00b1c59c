"""A tiny open_clip architecture for demos, CI and plumbing benchmarks.

``openclip:imgcurate-tiny-clip`` has the real CLIP structure (vision and text
towers, tokenizer, the reference preprocessing at 224 pixels) and a 768-wide
embedding, so every head fits it and decoding costs what it costs for ViT-L/14,
but the forward pass takes milliseconds on a CPU. It has no published
weights: use it with ``--random-weights``, which every output row then records.
"""

from __future__ import annotations

import json
import tempfile
import threading
from pathlib import Path

TINY_CLIP = "imgcurate-tiny-clip"

_CONFIGS = {
    TINY_CLIP: {
        "embed_dim": 768,
        "vision_cfg": {
            "image_size": 224,
            "layers": 2,
            "width": 64,
            "head_width": 32,
            "patch_size": 32,
        },
        "text_cfg": {
            "context_length": 77,
            "vocab_size": 49408,
            "width": 64,
            "heads": 2,
            "layers": 2,
        },
    }
}
_lock = threading.Lock()
_registered: set[str] = set()


def ensure_registered(arch: str) -> None:
    """Make a tiny architecture known to open_clip (no-op for any other name)."""
    if arch not in _CONFIGS or arch in _registered:
        return
    import open_clip

    with _lock:
        if arch in _registered:
            return
        # open_clip only registers configs from JSON files, so write one.
        folder = Path(tempfile.mkdtemp(prefix="imgcurate-configs-"))
        path = folder / f"{arch}.json"
        path.write_text(json.dumps(_CONFIGS[arch]))
        open_clip.add_model_config(path)
        _registered.add(arch)
