"""Mapping a Spark task's GPU slot to a torch device."""

from __future__ import annotations

import pytest

from imgcurate.models import device
from imgcurate.models.device import device_for_slot


@pytest.mark.parametrize(
    ("addresses", "visible", "count", "expected"),
    [
        (["0"], None, 2, "cuda:0"),
        (["1"], None, 2, "cuda:1"),
        (["1", "0"], None, 2, "cuda:1"),  # one model, one device: the first address
        (["3"], "2,3", 2, "cuda:1"),  # physical index 3 is the second visible device
        (["2"], " 2 , 3 ", 2, "cuda:0"),
        (["GPU-aa"], "GPU-bb,GPU-aa", 2, "cuda:1"),  # UUIDs
        (["0"], "5", 1, "cuda:0"),  # isolated container: the slot is already a local ordinal
        (["5"], None, 4, "cuda:1"),  # beyond the visible devices: spread, and say so
        (["0"], None, 0, "cpu"),  # no CUDA
        ([], None, 2, "cpu"),  # a task without a GPU slot
        (None, None, 2, "cuda:0"),  # outside Spark, with a GPU
        (None, None, 0, "cpu"),
        (["0"], "", 0, "cpu"),  # CUDA_VISIBLE_DEVICES="" hides every device
    ],
)
def test_slot_to_device(addresses, visible, count, expected):
    assert device_for_slot(addresses, visible, count).device == expected


def test_each_choice_says_why():
    assert "no GPU slot" in device_for_slot([], None, 2).reason
    assert "no CUDA" in device_for_slot(["0"], None, 0).reason
    assert "beyond" in device_for_slot(["5"], None, 4).reason


def test_task_device_reads_the_task_and_logs_once(monkeypatch, caplog):
    monkeypatch.setattr(device, "spark_gpu_addresses", lambda: [])
    monkeypatch.setattr(device, "cuda_device_count", lambda: 1)
    monkeypatch.setattr(device, "_logged", set())
    with caplog.at_level("INFO", logger=device.__name__):
        assert device.task_device() == "cpu"
        assert device.task_device() == "cpu"
    assert len([r for r in caplog.records if "no GPU slot" in r.message]) == 1


def test_outside_spark_there_are_no_addresses():
    assert device.spark_gpu_addresses() is None
