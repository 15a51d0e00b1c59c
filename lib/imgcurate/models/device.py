"""Where a task runs its models: the GPU slot Spark gave it, or the CPU.

Spark hands each task GPU *addresses* (``TaskContext.resources()["gpu"]``),
as printed by the cluster's discovery script, usually physical indices. CUDA
numbers devices *within* ``CUDA_VISIBLE_DEVICES`` when a cluster manager
(YARN, Kubernetes, a standalone worker's environment) has isolated some, so
address ``"3"`` under ``CUDA_VISIBLE_DEVICES=2,3`` is ``cuda:1``. The mapping is a
pure function so that every case is tested; :func:`task_device` feeds it the
live values and logs the decision once per worker.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass

log = logging.getLogger(__name__)
_logged: set[tuple[str, str]] = set()


@dataclass(frozen=True)
class DeviceChoice:
    """A torch device string and why it was chosen (for the log)."""

    device: str
    reason: str


def device_for_slot(
    addresses: Sequence[str] | None,
    cuda_visible_devices: str | None,
    cuda_device_count: int,
) -> DeviceChoice:
    """Map a task's GPU addresses to a torch device.

    ``addresses`` is ``None`` outside a Spark task (then the first CUDA device,
    if any, is used) and empty inside a task that was given no GPU slot (then
    the CPU: the slot is how Spark keeps tasks from sharing a GPU unplanned).
    Only the first address is used: one task runs one model on one device.
    """
    if cuda_device_count <= 0:
        return DeviceChoice("cpu", "no CUDA device is visible to this process")
    if addresses is None:
        return DeviceChoice("cuda:0", "not in a Spark task; using the first CUDA device")
    if not addresses:
        return DeviceChoice("cpu", "the Spark task has no GPU slot")
    address = str(addresses[0]).strip()
    visible = _visible(cuda_visible_devices)
    if visible and address in visible:
        ordinal = visible.index(address)
        return DeviceChoice(
            f"cuda:{ordinal}", f"GPU slot {address} is CUDA_VISIBLE_DEVICES entry {ordinal}"
        )
    if address.isdigit() and int(address) < cuda_device_count:
        where = "not in CUDA_VISIBLE_DEVICES, taken" if visible else "taken"
        return DeviceChoice(f"cuda:{address}", f"GPU slot {address} {where} as a CUDA ordinal")
    if address.isdigit():
        ordinal = int(address) % cuda_device_count
        return DeviceChoice(
            f"cuda:{ordinal}",
            f"GPU slot {address} is beyond the {cuda_device_count} visible device(s); "
            f"using cuda:{ordinal} (check the discovery script and CUDA_VISIBLE_DEVICES)",
        )
    return DeviceChoice(
        "cuda:0", f"GPU slot {address!r} is not in CUDA_VISIBLE_DEVICES; using cuda:0"
    )


def _visible(cuda_visible_devices: str | None) -> list[str]:
    if not cuda_visible_devices:
        return []
    return [entry.strip() for entry in cuda_visible_devices.split(",") if entry.strip()]


def spark_gpu_addresses() -> list[str] | None:
    """The current Spark task's GPU addresses; ``None`` outside a Spark task."""
    try:
        from pyspark import TaskContext
    except ImportError:
        return None
    context = TaskContext.get()
    if context is None:
        return None
    gpu = context.resources().get("gpu")
    return list(gpu.addresses) if gpu is not None else []


def cuda_device_count() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def task_device() -> str:
    """The device for the code running now: the task's GPU slot, else the CPU; logged once."""
    choice = device_for_slot(
        spark_gpu_addresses(), os.environ.get("CUDA_VISIBLE_DEVICES"), cuda_device_count()
    )
    key = (choice.device, choice.reason)
    if key not in _logged:
        _logged.add(key)
        level = logging.WARNING if choice.device == "cpu" else logging.INFO
        log.log(level, "models run on %s: %s", choice.device, choice.reason)
    return choice.device
