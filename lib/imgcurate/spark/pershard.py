"""Run a plain Python function once per shard, as one Spark task per shard.

The executor-side work of every stage is a function of one shard. This
module is the only place that turns such a function into Spark tasks: it
lays out one partition per shard (so a slow shard never holds others
hostage in the same task, and a failed task retries exactly one shard),
calls the function inside ``mapInArrow`` and counts progress in
accumulators the driver can read while the job runs.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pyarrow as pa

from imgcurate.schema import spark_schema

ShardFn = Callable[[dict], pa.Table]


def shard_frame(spark, rows: list[dict], schema: pa.Schema):
    """A DataFrame with exactly one row per partition: one Spark task per shard."""
    columns = schema.names
    records = [tuple(row.get(c) for c in columns) for row in rows]
    rdd = spark.sparkContext.parallelize(records, numSlices=max(1, len(records)))
    return spark.createDataFrame(rdd, spark_schema(schema))


def one_shard_per_partition(spark, per_shard, shards: list[str], schema=None):
    """Lay out a DataFrame of per-shard rows (a ``shard`` column, one row per shard in
    ``shards``) with exactly one row per partition, so each shard is its own task.

    Hash partitioning could put two shards in one task and leave another task
    empty; partitioning by each shard's position in ``shards`` cannot.
    """
    slots = {shard: slot for slot, shard in enumerate(shards)}
    rdd = (
        per_shard.rdd.map(lambda row: (slots[row["shard"]], row))
        .partitionBy(len(slots), lambda slot: slot)
        .values()
    )
    return spark.createDataFrame(rdd, schema or per_shard.schema, verifySchema=False)


def map_shards(frame, fn: ShardFn, output: pa.Schema, counter=None, count_column: str = ""):
    """Apply ``fn(shard_row) -> pa.Table`` to every row of ``frame``, one task each.

    ``counter`` (a Spark accumulator) is increased by the rows each shard
    returns, or by the non-null values of ``count_column`` when given.
    """

    def run(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for batch in batches:
            for shard_row in batch.to_pylist():
                table = fn(shard_row).cast(output)
                if counter is not None:
                    nulls = table.column(count_column).null_count if count_column else 0
                    counter.add(table.num_rows - nulls)
                yield from table.to_batches()

    return frame.mapInArrow(run, spark_schema(output))


@dataclass
class ProgressReporter:
    """Print ``stage: done/total shards, N samples, R samples/s`` while a job runs.

    Reads Spark's status tracker (tasks finished) and an accumulator (rows
    produced) from a background thread on the driver.
    """

    spark: object
    stage: str
    total: int
    counter: object = None
    unit: str = "samples"
    interval: float = 2.0
    stream: object = None  # default: sys.stderr at print time
    enabled: bool = True

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._started = time.time()
        self._last = ""
        self._earlier_jobs: set[int] = set()

    def __enter__(self) -> ProgressReporter:
        self._started = time.time()
        self._earlier_jobs = set(self._job_ids())
        if self.enabled:
            self._thread.start()
        return self

    def __exit__(self, exc_type, *exc) -> None:
        if not self.enabled:
            return
        self._stop.set()
        self._thread.join(timeout=5)
        if exc_type is None:
            self._print(final=True)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self._print()

    def _job_ids(self) -> list[int]:
        return list(self.spark.sparkContext.statusTracker().getJobIdsForGroup(None) or [])

    def _done_tasks(self) -> int:
        """Finished tasks of the one-task-per-shard stage of jobs started inside this block."""
        tracker = self.spark.sparkContext.statusTracker()
        done = 0
        for job_id in set(self._job_ids()) - self._earlier_jobs:
            info = tracker.getJobInfo(job_id)
            if info is None:
                continue
            for stage_id in info.stageIds:
                stage = tracker.getStageInfo(stage_id)
                if stage is not None and stage.numTasks == self.total:
                    done = max(done, stage.numCompletedTasks)
        return done

    def _print(self, final: bool = False) -> None:
        elapsed = max(time.time() - self._started, 1e-9)
        rows = int(self.counter.value) if self.counter is not None else 0
        done = self.total if final else min(self._done_tasks(), self.total)
        line = (
            f"{self.stage}: {done}/{self.total} shards, {rows} {self.unit}, "
            f"{rows / elapsed:.1f} {self.unit}/s, {elapsed:.0f}s"
        )
        if line != self._last:
            print(line, file=self.stream or sys.stderr, flush=True)
            self._last = line
