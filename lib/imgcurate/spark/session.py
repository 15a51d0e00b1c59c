"""Build (or join) the Spark session every command runs in.

Under ``spark-submit`` or in a Databricks notebook a session already exists
and its settings win; ``getOrCreate`` joins it. From the ``imgcurate`` command
line we start one with settings that suit this workload: Arrow on, Python
workers reused (so models load once per worker), UTC timestamps, and the
v1 file-output committer so no task's output is visible before the job commits.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from pathlib import Path

DEFAULT_CONF = {
    "spark.sql.execution.arrow.pyspark.enabled": "true",
    "spark.python.worker.reuse": "true",
    "spark.sql.session.timeZone": "UTC",
    "spark.sql.execution.arrow.maxRecordsPerBatch": "512",
    "spark.hadoop.mapreduce.fileoutputcommitter.algorithm.version": "1",
    "spark.sql.parquet.compression.codec": "zstd",
    "spark.ui.showConsoleProgress": "false",
    "spark.sql.adaptive.enabled": "true",
}

log = logging.getLogger(__name__)


def get_spark(
    master: str | None = None,
    app_name: str = "imgcurate",
    conf: dict[str, str] | None = None,
):
    """Return a SparkSession, creating one with imgcurate's defaults if none is running.

    ``master`` defaults to ``local[*]`` only when nothing else (spark-submit,
    ``SPARK_MASTER``, a notebook) has chosen one.
    """
    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession()
    if active is not None and master is None:
        return active
    _point_workers_at_this_python()
    builder = SparkSession.builder.appName(app_name)
    chosen = master or os.environ.get("SPARK_MASTER")
    if chosen:
        builder = builder.master(chosen)
    elif not _launched_by_spark_submit():
        builder = builder.master("local[*]")
    settings = {**DEFAULT_CONF, **_quiet_logging(), **(conf or {})}
    for key, value in settings.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel(os.environ.get("IMGCURATE_SPARK_LOG_LEVEL", "WARN"))
    return spark


def _quiet_logging() -> dict[str, str]:
    """Use imgcurate's log4j2 settings for a JVM we start (warnings only, no banner)."""
    config = Path(__file__).with_name("log4j2.properties")
    return {"spark.driver.extraJavaOptions": f"-Dlog4j2.configurationFile=file:{config}"}


def _point_workers_at_this_python() -> None:
    """Executors on this machine must run the interpreter that has imgcurate installed."""
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)


def _launched_by_spark_submit() -> bool:
    """spark-submit starts the JVM first and hands Python its gateway port."""
    return "PYSPARK_GATEWAY_PORT" in os.environ


@contextlib.contextmanager
def quiet_sql_errors():
    """Silence PySpark's logging of analysis errors (a JVM stack trace per error).

    Invalid SQL from a user is a user error that imgcurate reports in one
    line. The logger must be created through ``PySparkLogger`` (PySpark 4
    passes it extra fields); PySpark 3.5 has no such logger and logs nothing.
    """
    try:
        from pyspark.logger import PySparkLogger
    except ImportError:  # PySpark 3.5
        yield
        return
    logger = PySparkLogger.getLogger("SQLQueryContextLogger")
    was = logger.disabled
    logger.disabled = True
    try:
        yield
    finally:
        logger.disabled = was
