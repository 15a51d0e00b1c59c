"""A deliberately slow custom embedder for fault-tolerance tests.

Used as ``--model custom:tests.slow_model:factory``. Each batch sleeps
``SLOW_MODEL_SECONDS`` and, when ``SLOW_MODEL_MARKS`` names a folder, drops a
file named after its process id there, so a test knows which Python worker
is embedding right now and can kill it mid-stage.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import torch
from torch import nn
from torchvision import transforms

from imgcurate.models.embedders import ModuleEmbedder


class _SlowNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 16, kernel_size=8, stride=8)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        marks = os.environ.get("SLOW_MODEL_MARKS")
        if marks:
            Path(marks, f"worker-{os.getpid()}").write_text("embedding")
        time.sleep(float(os.environ.get("SLOW_MODEL_SECONDS", "0.5")))
        return self.conv(pixels).mean(dim=(2, 3))


def factory(policy=None) -> ModuleEmbedder:
    transform = transforms.Compose(
        [transforms.Resize(32), transforms.CenterCrop(32), transforms.ToTensor()]
    )
    return ModuleEmbedder(
        "custom:tests.slow_model:factory",
        _SlowNet(),
        transform,
        dim=16,
        image_size=32,
        weights="random",
    )
