"""Column layouts of the tables, defined once in Arrow and converted for Spark.

Executors build Arrow batches in exactly these layouts, so what a task
returns, what Spark expects from ``mapInArrow`` and what lands in Parquet
cannot drift apart.
"""

from __future__ import annotations

import pyarrow as pa

MEMBER = pa.struct([("offset", pa.int64()), ("size", pa.int64())])

SAMPLES = pa.schema(
    [
        ("sample_id", pa.string()),
        ("shard", pa.string()),
        ("key", pa.string()),
        ("members", pa.map_(pa.string(), MEMBER)),
        ("image_ext", pa.string()),
        ("image_format", pa.string()),
        ("width", pa.int32()),
        ("height", pa.int32()),
        ("mode", pa.string()),
        ("image_nbytes", pa.int64()),
        ("sha256", pa.string()),
        ("caption", pa.string()),
        ("url", pa.string()),
        ("uid", pa.string()),
        ("json", pa.string()),
        ("original_width", pa.int32()),
        ("original_height", pa.int32()),
        ("download_status", pa.string()),
        ("download_error", pa.string()),
        ("status", pa.string()),
        ("error", pa.string()),
        ("warnings", pa.list_(pa.string())),
    ]
)

SHARDS = pa.schema(
    [
        ("shard", pa.string()),
        ("path", pa.string()),
        ("bytes", pa.int64()),
        ("samples", pa.int64()),
        ("ok", pa.int64()),
        ("errors", pa.int64()),
        ("status", pa.string()),
        ("error", pa.string()),
        ("has_sidecar", pa.bool_()),
        ("scan_seconds", pa.float64()),
        ("scanned_at", pa.timestamp("us", tz="UTC")),
    ]
)

#: What a scan task emits: sample rows, plus one row per shard whose sample_id is null
#: and whose ``shard_row`` holds the shard's own record.
SCAN_OUTPUT = pa.schema(list(SAMPLES) + [pa.field("shard_row", pa.struct(list(SHARDS)))])


def spark_schema(schema: pa.Schema):
    """The Spark StructType for an Arrow schema."""
    from pyspark.sql.pandas.types import from_arrow_schema

    return from_arrow_schema(schema)


def table_from_rows(rows: list[dict], schema: pa.Schema) -> pa.Table:
    """Build an Arrow table, filling absent columns with nulls."""
    names = schema.names
    return pa.Table.from_pylist([{n: row.get(n) for n in names} for row in rows], schema=schema)
