"""The spark-submit entry points run under a real spark-submit."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

JOBS = Path(__file__).resolve().parent.parent / "jobs"


def spark_submit(job: str, *args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    import pyspark

    submit = Path(pyspark.__file__).parent / "bin" / "spark-submit"
    env = {**os.environ, "PYSPARK_PYTHON": sys.executable, "PYSPARK_DRIVER_PYTHON": sys.executable}
    return subprocess.run(
        [str(submit), "--master", "local[1]", str(JOBS / job), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


@pytest.mark.slow
def test_scan_job_under_spark_submit(img2dataset_dir, tmp_path):
    tables = tmp_path / "tables"
    done = spark_submit("scan.py", "--input", str(img2dataset_dir), "--tables", str(tables))
    assert done.returncode == 0, done.stderr[-3000:]
    assert "3 shards scanned" in done.stdout and "36 samples" in done.stdout
    assert "scan: 3/3 shards" in done.stdout  # spark-submit merges the driver's stderr
    query = spark_submit("sql.py", "--tables", str(tables), "SELECT count(*) AS n FROM samples")
    assert query.returncode == 0, query.stderr[-3000:]
    assert query.stdout.split() == ["n", "36"]
