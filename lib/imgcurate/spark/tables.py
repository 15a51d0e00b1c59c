"""The tables directory: one Parquet (or Delta) dataset per table, written atomically.

Layout under ``--tables DIR``::

    DIR/samples/*.parquet      one row per sample (scan)
    DIR/shards/*.parquet       one row per source shard (scan)
    DIR/<table>/...            tables of later stages
    DIR/_catalog.sql           CREATE VIEW statements for spark-sql / notebooks
    DIR/_staging/<run>/        a run's output until it commits

Each table is a flat folder of Parquet files, readable as is by pandas,
pyarrow, DuckDB and ``spark.read.parquet``. A stage appends by writing all of
its tables into ``_staging/<run>/`` first; only when every table of the run is
written does it drop a ``_COMMITTED`` marker and move the files into place.
A crash before the marker leaves nothing visible (the next run deletes the
staging folder); a crash after it is rolled forward by the next run. So the
``samples`` and ``shards`` of one scan always appear together or not at all.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Iterable

from imgcurate.spark.hadoopfs import HadoopFS

log = logging.getLogger(__name__)

STAGING = "_staging"
COMMITTED = "_COMMITTED"
CATALOG_SCRIPT = "_catalog.sql"
FORMATS = ("parquet", "delta")
#: Views built on top of the tables (by select and dedup), dropped with the tables' views.
DERIVED_VIEWS = ("selection", "dedup")


class TablesError(RuntimeError):
    """A tables directory problem the user must fix (wrong format, missing table)."""


def new_run_id() -> str:
    """Sortable, unique id for one stage run: ``20261126T171502-1a2b3c``."""
    return time.strftime("%Y%m%dT%H%M%S", time.gmtime()) + "-" + secrets.token_hex(3)


class TableStore:
    """Read, append to and register the tables of one tables directory."""

    def __init__(self, spark, root: str, table_format: str = "parquet") -> None:
        if table_format not in FORMATS:
            raise TablesError(f"unknown table format {table_format!r}; use one of {FORMATS}")
        self.spark = spark
        self.fs = HadoopFS(spark)
        self.root = self.fs.qualify(root.rstrip("/"))
        self.format = table_format
        if table_format == "delta":
            require_delta(spark)

    def path(self, name: str) -> str:
        return f"{self.root}/{name}"

    def names(self) -> list[str]:
        """Tables that exist and hold data files."""
        return sorted(n for n, is_dir in self.fs.list(self.root) if is_dir and self.exists(n))

    def exists(self, name: str) -> bool:
        if name.startswith(("_", ".")):
            return False
        if self.format == "delta":
            return self.fs.exists(self.path(name) + "/_delta_log")
        return any(f.endswith(".parquet") for f, _ in self.fs.list(self.path(name)))

    def read(self, name: str):
        """The table as a DataFrame; a clear error when no stage has written it yet."""
        if not self.exists(name):
            raise TablesError(
                f"table {name!r} does not exist in {self.root}; run the stage that writes it "
                f"first (tables present: {', '.join(self.names()) or 'none'})"
            )
        reader = self.spark.read.format(self.format)
        if self.format == "parquet":
            reader = reader.option("mergeSchema", "true")
        return reader.load(self.path(name))

    # -- appending a run -------------------------------------------------------------------

    def staged_path(self, run_id: str, name: str) -> str:
        return f"{self.root}/{STAGING}/{run_id}/{name}"

    def stage(self, run_id: str, name: str, frame) -> None:
        """Write one table of a run into its staging folder (invisible to readers)."""
        frame.write.mode("overwrite").parquet(self.staged_path(run_id, name))

    def commit(self, run_id: str, names: Iterable[str]) -> None:
        """Make a run's staged tables visible, all together."""
        run_dir = f"{self.root}/{STAGING}/{run_id}"
        self.fs.write_text(f"{run_dir}/{COMMITTED}", "\n".join(names))
        self._publish(run_id)

    def recover(self) -> None:
        """Finish committed runs and discard uncommitted ones left by a crash."""
        for run_id, is_dir in self.fs.list(f"{self.root}/{STAGING}"):
            if not is_dir:
                continue
            run_dir = f"{self.root}/{STAGING}/{run_id}"
            if self.fs.exists(f"{run_dir}/{COMMITTED}"):
                log.warning("finishing the commit of interrupted run %s", run_id)
                self._publish(run_id)
            else:
                log.warning("discarding output of interrupted run %s", run_id)
                self.fs.delete(run_dir)

    def _publish(self, run_id: str) -> None:
        run_dir = f"{self.root}/{STAGING}/{run_id}"
        for name, is_dir in self.fs.list(run_dir):
            if is_dir:
                self._publish_table(run_id, name, f"{run_dir}/{name}")
        self.fs.delete(run_dir)
        self.write_catalog()

    def _publish_table(self, run_id: str, name: str, staged: str) -> None:
        if self.format == "delta":
            frame = self.spark.read.parquet(staged)
            frame.write.format("delta").mode("append").save(self.path(name))
            return
        target = self.path(name)
        self.fs.mkdirs(target)
        for file_name, _ in self.fs.list(staged):
            if file_name.endswith(".parquet"):
                self.fs.rename(f"{staged}/{file_name}", f"{target}/run-{run_id}-{file_name}")

    def overwrite(self, name: str, frame) -> None:
        """Replace a whole table (for tables recomputed from scratch, such as duplicates)."""
        if self.format == "delta":  # a Delta overwrite is one atomic commit by itself
            frame.write.format("delta").mode("overwrite").option("overwriteSchema", "true").save(
                self.path(name)
            )
            self.write_catalog()
            return
        run_id = new_run_id()
        self.stage(run_id, name, frame)
        old = self.path(name)
        if self.fs.exists(old):
            self.fs.rename(old, f"{self.root}/{STAGING}/{run_id}-old-{name}")
        self.commit(run_id, [name])
        self.fs.delete(f"{self.root}/{STAGING}/{run_id}-old-{name}")

    # -- SQL -------------------------------------------------------------------------------

    def register_views(self) -> list[str]:
        """Create a temporary view per table in the current session; return their names.

        Views a previous call registered for another tables directory are
        dropped first, so a notebook that switches directories never queries
        a stale table by mistake.
        """
        previous = getattr(self.spark, "_imgcurate_views", set())
        for name in previous | set(DERIVED_VIEWS):
            self.spark.catalog.dropTempView(name)
        names = self.names()
        for name in names:
            self.read(name).createOrReplaceTempView(name)
        self.spark._imgcurate_views = set(names)
        return names

    def catalog_sql(self) -> str:
        """Statements that register every table as a view, for ``spark-sql -i``."""
        lines = [f"-- imgcurate tables in {self.root}"]
        for name in self.names():
            options = f"path '{self.path(name)}'"
            if self.format == "parquet":
                options += ", mergeSchema 'true'"
            lines.append(
                f"CREATE OR REPLACE TEMPORARY VIEW {name} USING {self.format} OPTIONS ({options});"
            )
        return "\n".join(lines) + "\n"

    def write_catalog(self) -> None:
        self.fs.write_text(f"{self.root}/{CATALOG_SCRIPT}", self.catalog_sql())

    def register_in_catalog(self, database: str) -> list[str]:
        """Create external tables in the session's catalog (Hive metastore, Unity Catalog)."""
        self.spark.sql(f"CREATE DATABASE IF NOT EXISTS {database}")
        names = self.names()
        for name in names:
            self.spark.sql(
                f"CREATE TABLE IF NOT EXISTS {database}.{name} USING {self.format} "
                f"LOCATION '{self.path(name)}'"
            )
            if self.format == "parquet":
                self.spark.sql(f"REFRESH TABLE {database}.{name}")
        return names


def require_delta(spark) -> None:
    """Fail at once, with the fix, when the Delta Lake jars are not on the classpath."""
    try:
        spark.sparkContext._jvm.java.lang.Class.forName("io.delta.tables.DeltaTable")
    except Exception as error:
        raise TablesError(
            "table format 'delta' needs the Delta Lake jars, which this Spark does not have. "
            "Databricks runtimes include them; elsewhere start Spark with "
            "--packages io.delta:delta-spark_2.13:<version> and "
            "--conf spark.sql.extensions=io.delta.sql.DeltaSparkSessionExtension, "
            "or use --format parquet."
        ) from error
