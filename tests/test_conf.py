"""Shipped configs: pipeline YAML validation, Spark GPU defaults, discovery script, Databricks."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import yaml

from imgcurate.config import ConfigError, load_config, parse_config

CONF = Path(__file__).resolve().parent.parent / "conf"


def test_shipped_pipeline_configs_validate():
    full = load_config(str(CONF / "pipeline.yaml"))
    assert full.stages == ["scan", "embed", "dedup", "reshard"]
    assert full.embed.vector_dtype == "float16" and full.dedup.semantic_eps == [0.01, 0.05]
    assert full.reshard.dest.startswith("s3://")
    local = load_config(str(CONF / "pipeline-local.yaml"))
    assert local.spark.master == "local[*]" and local.format == "parquet"


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"tables": "t", "input": "i", "dedupe": {}}, "dedupe: unknown key (did you mean 'dedup'"),
        (
            {"tables": "t", "input": "i", "embed": {"batch_size": "big"}},
            "embed.batch_size: must be an integer >= 1, got 'big'",
        ),
        ({"tables": "t", "input": "i", "embed": {"modle": "x"}}, "did you mean 'embed.model'"),
        ({"tables": "t", "input": "i", "dedup": {"keep": "best"}}, "best:COLUMN"),
        ({"tables": "t", "input": "i", "dedup": {"semantic_eps": [0.01, 2]}}, "between 0 and 1"),
        ({"tables": "t", "input": "i", "stages": ["scan", "train"]}, "must be one of"),
        ({"input": "i"}, "tables: required"),
        ({"tables": "t", "input": "i"}, "reshard.dest: required"),
        ({"tables": "t", "input": "i", "format": "orc"}, "format: must be one of"),
        (
            {"tables": "t", "input": "i", "stages": ["scan"], "select": {"where": "x", "sql": "y"}},
            "either where or sql",
        ),
    ],
)
def test_bad_configs_name_the_key_and_the_fix(raw, message):
    with pytest.raises(ConfigError) as error:
        parse_config(raw, source="p.yaml")
    assert message in str(error.value) and str(error.value).startswith("p.yaml: ")


def test_overrides_and_stage_order():
    config = parse_config(
        {"tables": "t", "input": "i", "stages": ["reshard", "scan"], "reshard": {"dest": "d"}},
        overrides={"tables": "other", "reshard.dest": "elsewhere", "input": None},
    )
    assert config.tables == "other" and config.reshard.dest == "elsewhere"
    assert config.input == "i" and config.stages == ["scan", "reshard"]


def test_missing_config_file_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(str(tmp_path / "nope.yaml"))
    (tmp_path / "bad.yaml").write_text("input: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(str(tmp_path / "bad.yaml"))


def _spark_properties(path: Path, commented: bool = False) -> dict[str, str]:
    out = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if commented and line.startswith("# spark."):
            line = line[2:]
        if line and not line.startswith("#"):
            key, _, value = line.partition(" ")
            out[key] = value.strip()
    return out


def test_spark_gpu_conf_has_the_gpu_and_worker_settings():
    active = _spark_properties(CONF / "spark-gpu.conf")
    assert active["spark.executor.resource.gpu.amount"] == "1"
    task_amount = float(active["spark.task.resource.gpu.amount"])
    assert task_amount <= 0.5 or task_amount.is_integer()
    assert 1 / task_amount <= int(active["spark.executor.cores"])  # no idle GPU share
    assert active["spark.executor.resource.gpu.discoveryScript"].endswith("getGpusResources.sh")
    assert active["spark.python.worker.reuse"] == "true"
    assert active["spark.sql.execution.arrow.maxRecordsPerBatch"] == "512"
    assert "spark.plugins" not in active  # RAPIDS stays commented: it needs its jar
    rapids = _spark_properties(CONF / "spark-gpu.conf", commented=True)
    assert rapids["spark.plugins"] == "com.nvidia.spark.SQLPlugin"
    assert rapids["spark.rapids.sql.concurrentGpuTasks"] == "2"
    assert rapids["spark.rapids.memory.pinnedPool.size"] == "2G"


def test_discovery_script_prints_spark_resource_json():
    script = str(CONF / "getGpusResources.sh")
    env = {**os.environ, "PATH": "/usr/bin:/bin", "IMGCURATE_FAKE_GPUS": "3"}
    fake = json.loads(subprocess.run([script], env=env, capture_output=True, text=True).stdout)
    assert fake == {"name": "gpu", "addresses": ["0", "1", "2"]}
    env.pop("IMGCURATE_FAKE_GPUS")
    none = json.loads(subprocess.run([script], env=env, capture_output=True, text=True).stdout)
    assert none == {"name": "gpu", "addresses": []}  # no nvidia-smi on PATH: no GPUs, no error


def _round_trip(job: dict) -> dict:
    from databricks.sdk.service.jobs import JobSettings

    return JobSettings.from_dict(job).as_dict()


def _normalise(value):
    if isinstance(value, dict):
        return {k: _normalise(v) for k, v in sorted(value.items())}
    if isinstance(value, list):
        return [_normalise(v) for v in value]
    return value


def test_databricks_bundle_jobs_match_the_jobs_api_schema():
    bundle = yaml.safe_load((CONF / "databricks" / "databricks.yml").read_text())
    jobs = bundle["resources"]["jobs"]
    assert jobs, "the bundle defines no job"
    for job in jobs.values():
        assert _normalise(_round_trip(job)) == _normalise(job)  # no field the API drops
        cluster = job["job_clusters"][0]["new_cluster"]
        assert "gpu-ml" in bundle["variables"]["spark_version"]["default"]
        assert cluster["data_security_mode"] == "SINGLE_USER"
        keys = [t["task_key"] for t in job["tasks"]]
        assert keys == ["scan", "embed", "dedup", "reshard"]
        for task in job["tasks"]:
            assert task["python_wheel_task"]["entry_point"] == "imgcurate"
            assert task["libraries"][0]["whl"].endswith(".whl")


def test_databricks_job_json_matches_the_jobs_api_schema():
    job = json.loads((CONF / "databricks" / "job.json").read_text())
    assert _normalise(_round_trip(job)) == _normalise(job)
    assert job["tasks"][0]["python_wheel_task"]["parameters"][:2] == ["run", "--config"]


def test_config_is_read_from_an_fsspec_url():
    import fsspec

    text = (CONF / "pipeline-local.yaml").read_text().replace("local[*]", "local[2]")
    with fsspec.filesystem("memory").open("/configs/pipeline.yaml", "w") as handle:
        handle.write(text)
    config = load_config("memory://configs/pipeline.yaml")
    assert config.spark.master == "local[2]" and config.reshard.dest.endswith("curated")
