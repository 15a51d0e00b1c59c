"""Select samples with SQL: the ``selection`` view and the checks on what a user typed.

The ``selection`` view is one row per sample: the ``samples`` table, joined by
``sample_id`` with the tables later stages write when they exist (``scores``
for model outputs, folded to one model per sample; ``duplicates`` for dedup,
folded to ``is_duplicate``), so a predicate can mix them::

    status = 'ok' AND width >= 256 AND NOT is_duplicate AND aesthetic >= 5

``is_duplicate`` is always there (false for every sample until dedup has
run), so one predicate works before and after dedup. A stage that writes a
new per-sample table adds one entry to :data:`OPTIONAL_JOINS`.

Predicates are analysed by Spark before any work is done; a column Spark
cannot resolve becomes a :class:`SelectionError` that lists the columns
there are, instead of a stack trace minutes into a job.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from imgcurate.spark.session import quiet_sql_errors

VIEW = "selection"
DEFAULT_WHERE = "status = 'ok'"


class SelectionError(ValueError):
    """The predicate or query cannot select samples; the message says why and what exists."""


@dataclass(frozen=True)
class OptionalJoin:
    """A per-sample table joined into the selection when a stage has written it."""

    table: str
    #: Turns the table into at most one row per ``sample_id`` (plus the columns to expose).
    prepare: Callable
    #: Columns to fill when a sample has no row in the table (``{column: SQL literal}``).
    defaults: dict[str, str]


def _scores(frame):
    """Model outputs, one row per sample so that the join never repeats a sample.

    ``scores`` has a row per sample and model: when several models scored a
    sample, the default model's row is used, else the first model by name
    (query ``scores`` with ``--select-sql`` to select on another model).
    """
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    if "model" not in frame.columns:
        return frame.dropDuplicates(["sample_id"])
    from imgcurate.models.catalog import DEFAULT_MODEL

    order = [F.col("model") != F.lit(DEFAULT_MODEL), F.col("model")]
    order += [F.col(c) for c in ("weights",) if c in frame.columns]
    first = F.row_number().over(Window.partitionBy("sample_id").orderBy(*order))
    return frame.withColumn("_first", first).filter("_first = 1").drop("_first")


def _duplicates(frame):
    """Dedup results: a sample is a duplicate when listed (or marked ``is_duplicate``)."""
    from pyspark.sql import functions as F

    flag = F.lit(True)
    if "is_duplicate" in frame.columns:
        flag = F.coalesce(F.col("is_duplicate"), flag)
    return frame.groupBy("sample_id").agg(F.bool_or(flag).alias("is_duplicate"))


OPTIONAL_JOINS: tuple[OptionalJoin, ...] = (
    OptionalJoin("scores", _scores, {}),
    OptionalJoin("duplicates", _duplicates, {"is_duplicate": "false"}),
)


def selection_view(spark, store):
    """The ``selection`` DataFrame: samples left-joined with every optional table present.

    Columns of an optional table that ``samples`` already has (other than
    ``sample_id``) are left out, so ``shard`` or ``status`` always mean the
    sample's own. Also registers every table, and ``selection``, as views.
    """
    from pyspark.sql import functions as F

    store.register_views()
    frame = store.read("samples")
    for join in OPTIONAL_JOINS:
        if store.exists(join.table):
            extra = join.prepare(store.read(join.table))
            keep = ["sample_id"] + [c for c in extra.columns if c not in frame.columns]
            frame = frame.join(extra.select(*keep), "sample_id", "left")
        for column, literal in join.defaults.items():
            value = F.expr(literal)
            if column in frame.columns:
                frame = frame.withColumn(column, F.coalesce(F.col(column), value))
            else:
                frame = frame.withColumn(column, value)
    frame.createOrReplaceTempView(VIEW)
    return frame


def select(spark, store, where: str | None = None, select_sql: str | None = None):
    """The selected rows of the ``selection`` view, checked before any work is done.

    ``where`` is a SQL boolean predicate over the view's columns;
    ``select_sql`` a whole query returning a ``sample_id`` column (its other
    columns are added to the selection). Neither given: ``status = 'ok'``.
    """
    if where and select_sql:
        raise SelectionError(
            "give either a predicate (--where) or a query (--select-sql), not both"
        )
    view = selection_view(spark, store)
    if select_sql:
        return _select_by_query(spark, view, select_sql)
    predicate = where or DEFAULT_WHERE
    query = f"SELECT * FROM {VIEW} AS {VIEW} WHERE ({predicate})"
    return _analyse(spark, query, view, "--where")


def _select_by_query(spark, view, query: str):
    result = _analyse(spark, query, view, "--select-sql")
    if "sample_id" not in result.columns:
        raise SelectionError(
            f"--select-sql must return a sample_id column; it returns {_names(result.columns)}"
        )
    extra = [c for c in result.columns if c not in view.columns]
    if not extra:
        return view.join(result.select("sample_id"), "sample_id", "left_semi")
    return view.join(result.select("sample_id", *extra).dropDuplicates(["sample_id"]), "sample_id")


def _analyse(spark, query: str, view, option: str):
    """Build (and so analyse) ``query``; turn Spark's analysis errors into readable ones.

    (A predicate is wrapped as ``FROM selection AS selection WHERE (...)``: without the
    alias Spark reads ``selection WHERE (true)`` as a table aliased ``WHERE``.)
    """
    from pyspark.errors import AnalysisException

    try:
        with quiet_sql_errors():
            frame = spark.sql(query)
            _ = frame.columns  # analysed now, also where analysis is lazy (Spark Connect)
            return frame
    except AnalysisException as error:
        raise SelectionError(_explain(error, view, option)) from None


def _explain(error, view, option: str) -> str:
    condition = error.getCondition() or ""
    params = error.getMessageParameters() or {}
    available = f"available columns: {_names(view.columns)}"
    if condition.startswith("UNRESOLVED_COLUMN"):
        name = params.get("objectName", "?")
        return f"{option} names unknown column {name}; {available}"
    if condition.startswith("PARSE_SYNTAX_ERROR"):
        return f"{option} is not valid SQL: {error.getMessage().splitlines()[0]}"
    if "FILTER_NOT_BOOLEAN" in condition:
        return f'{option} must be a true/false condition, e.g. "{DEFAULT_WHERE}"'
    return f"{option} cannot be used: {error.getMessage().splitlines()[0]}; {available}"


def _names(columns: list[str]) -> str:
    return ", ".join(columns)
