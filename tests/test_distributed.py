"""The pipeline on a real multi-process Spark with (fake) GPU scheduling, and under faults.

Each test runs ``imgcurate run`` in its own process: a ``local-cluster`` master
starts separate executor JVMs with their own Python workers, which the
shared ``local[2]`` session of the other tests cannot do. The discovery
script advertises fake GPU addresses (``IMGCURATE_FAKE_GPUS``), so Spark
schedules GPU slots exactly as on a GPU cluster, and the embed stage records
the slot each shard ran on in ``scores.gpu_slot``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from imgcurate import synth

pytestmark = [pytest.mark.slow, pytest.mark.distributed]

REPO = Path(__file__).resolve().parent.parent
DISCOVERY = str(REPO / "conf" / "getGpusResources.sh")
SHARDS, PER_SHARD = 4, 6


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    return synth.make_img2dataset(
        tmp_path_factory.mktemp("dist-shards"),
        shards=SHARDS,
        samples_per_shard=PER_SHARD,
        failures_per_shard=1,
    )


def write_config(
    folder: Path, shards: Path, stages=("scan", "embed", "reshard"), shards_per_commit: int = 2
) -> Path:
    config = {
        "input": str(shards),
        "tables": str(folder / "tables"),
        "stages": list(stages),
        "embed": {
            "model": "custom:tests.slow_model:factory",
            "random_weights": True,
            "batch_size": 2,
            "shards_per_commit": shards_per_commit,
        },
        "select": {"where": "status = 'ok'"},
        "reshard": {"dest": str(folder / "curated"), "samples_per_shard": 7},
    }
    path = folder / "pipeline.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def gpu_conf(executor_gpus: int, task_amount: str) -> list[str]:
    settings = {
        "spark.executor.resource.gpu.amount": str(executor_gpus),
        "spark.task.resource.gpu.amount": task_amount,
        "spark.executor.resource.gpu.discoveryScript": DISCOVERY,
        "spark.worker.resource.gpu.amount": str(executor_gpus),
        "spark.worker.resource.gpu.discoveryScript": DISCOVERY,
        "spark.task.maxFailures": "4",
        "spark.executorEnv.PYTHONPATH": str(REPO),
    }
    return [arg for key, value in settings.items() for arg in ("--conf", f"{key}={value}")]


def start_run(config: Path, master: str, extra: list[str], env: dict) -> subprocess.Popen:
    import pyspark

    environment = {
        **os.environ,
        **env,
        "SPARK_HOME": str(Path(pyspark.__file__).parent),
        "PYSPARK_PYTHON": sys.executable,
        "PYTHONPATH": str(REPO),
        "HF_HUB_OFFLINE": "1",
    }
    command = [sys.executable, "-m", "imgcurate.cli", "run", "--config", str(config)]
    return subprocess.Popen(
        [*command, "--master", master, *extra],
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def finish(process: subprocess.Popen, timeout: int = 420) -> str:
    output, _ = process.communicate(timeout=timeout)
    assert process.returncode == 0, output[-4000:]
    return output


def scores_of(folder: Path):
    return pq.read_table(folder / "tables" / "scores").to_pandas()


def ok_samples(folder: Path) -> set[str]:
    samples = pq.read_table(folder / "tables" / "samples").to_pandas()
    return set(samples.loc[samples.status == "ok", "sample_id"])


def output_files(folder: Path) -> dict[str, bytes]:
    curated = folder / "curated"
    return {p.name: p.read_bytes() for p in sorted(curated.glob("*.tar"))}


def test_fractional_gpu_slots_and_a_killed_python_worker(shards, tmp_path):
    """Two executors with one GPU each, two tasks per GPU; one worker is killed mid-embed."""
    marks = tmp_path / "marks"
    marks.mkdir()
    run = start_run(
        write_config(tmp_path, shards),
        "local-cluster[2,2,1024]",
        [*gpu_conf(1, "0.5"), "--conf", f"spark.executorEnv.SLOW_MODEL_MARKS={marks}"],
        {"IMGCURATE_FAKE_GPUS": "1", "SLOW_MODEL_SECONDS": "0.5"},
    )
    os.kill(wait_for_mark(marks, run), signal.SIGKILL)
    output = finish(run)
    assert "stage 3/3: reshard" in output
    scores = scores_of(tmp_path)
    assert scores.sample_id.is_unique, "the retried task left duplicate scores rows"
    assert set(scores.sample_id) == ok_samples(tmp_path), "samples lost to the crash"
    assert scores.gpu_slot.notna().all(), "an embed task ran without a GPU slot"
    assert set(scores.gpu_slot) == {"0"}  # each executor's one GPU, shared by two tasks
    assert (shard_of(scores).groupby("shard").gpu_slot.nunique() == 1).all()
    written = output_files(tmp_path)
    assert len(written) == 3  # 20 ok samples, 7 per shard


def test_whole_gpu_slots_spread_over_concurrent_tasks(shards, tmp_path):
    """One executor with two GPUs and two cores, one GPU per task: both GPUs are used."""
    run = start_run(
        write_config(tmp_path, shards, stages=("scan", "embed"), shards_per_commit=SHARDS),
        "local-cluster[1,2,1024]",
        gpu_conf(2, "1"),
        {"IMGCURATE_FAKE_GPUS": "2", "SLOW_MODEL_SECONDS": "0.5"},
    )
    finish(run)
    scores = scores_of(tmp_path)
    assert scores.gpu_slot.notna().all(), "an embed task ran without a GPU slot"
    assert set(scores.gpu_slot) == {"0", "1"}  # two tasks at once never share a whole GPU
    assert (shard_of(scores).groupby("shard").gpu_slot.nunique() == 1).all()


def shard_of(scores):
    return scores.assign(shard=scores.sample_id.str.split("/").str[0])


def test_whole_run_killed_midway_then_rerun_gives_identical_shards(shards, tmp_path):
    baseline, crashed = tmp_path / "baseline", tmp_path / "crashed"
    for folder in (baseline, crashed):
        folder.mkdir()
    env = {"SLOW_MODEL_SECONDS": "0.2"}
    finish(start_run(write_config(baseline, shards), "local[2]", [], env))
    marks = crashed / "marks"
    marks.mkdir()
    config = write_config(crashed, shards)
    run = start_run(config, "local[2]", [], {**env, "SLOW_MODEL_MARKS": str(marks)})
    wait_for_mark(marks, run)
    time.sleep(2)  # let a wave commit or not: the rerun must cope either way
    os.killpg(run.pid, signal.SIGKILL)
    run.wait(timeout=60)
    finish(start_run(config, "local[2]", [], env))
    expected = output_files(baseline)
    assert expected and output_files(crashed) == expected
    assert scores_of(crashed).sample_id.is_unique


def wait_for_mark(marks: Path, run: subprocess.Popen, timeout: float = 300) -> int:
    """Wait until the slow model reports a worker embedding; return its process id."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        found = sorted(marks.glob("worker-*"))
        if found:
            return int(found[0].name.split("-")[1])
        if run.poll() is not None:
            raise AssertionError(
                "run ended before embedding started:\n" + run.stdout.read()[-4000:]
            )
        time.sleep(0.2)
    raise AssertionError("embedding never started")
