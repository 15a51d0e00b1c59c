"""``imgcurate sql``: run a SQL query over the tables and print the result."""

from __future__ import annotations

import argparse
import sys

from imgcurate.commands.common import add_spark_args, add_tables_args, session


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "sql",
        help="query the tables with Spark SQL",
        description="Run a Spark SQL query; every table in --tables is a view of the same name.",
    )
    parser.add_argument("query", help='e.g. "SELECT status, count(*) FROM samples GROUP BY 1"')
    parser.add_argument(
        "--limit", type=int, default=100, help="rows to print at most (default: %(default)s)"
    )
    parser.add_argument(
        "--output-format",
        choices=("table", "csv", "json"),
        default="table",
        help="how to print rows (default: %(default)s)",
    )
    add_tables_args(parser)
    add_spark_args(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from pyspark.errors import AnalysisException, ParseException

    from imgcurate.spark.session import quiet_sql_errors
    from imgcurate.spark.tables import TableStore

    spark = session(args, "imgcurate-sql")
    names = register_all_views(spark, TableStore(spark, args.tables, args.table_format))
    try:
        with quiet_sql_errors():
            result = spark.sql(args.query)
    except (AnalysisException, ParseException) as error:
        message = str(error).strip().splitlines()[0]
        print(f"imgcurate sql: error: {message}", file=sys.stderr)
        print(f"tables in {args.tables}: {', '.join(names) or 'none'}", file=sys.stderr)
        return 2
    frame = result.limit(args.limit + 1).toPandas()
    truncated = len(frame) > args.limit
    frame = frame.head(args.limit)
    print(render(frame, args.output_format))
    if truncated:
        print(f"(showing the first {args.limit} rows; use --limit to see more)", file=sys.stderr)
    return 0


def register_all_views(spark, store) -> list[str]:
    """Every table as a view, plus ``selection`` (what reshard selects from) and ``dedup``."""
    from imgcurate.select import selection_view

    names = store.register_views()
    if "samples" in names:
        selection_view(spark, store)
        names.append("selection")
    if "duplicates" in names:
        from imgcurate.dedup.view import register_dedup_view

        register_dedup_view(spark, store)
        names.append("dedup")
    return names


def render(frame, output_format: str) -> str:
    """Print a pandas frame as an aligned text table, CSV or JSON lines."""
    if output_format == "csv":
        return frame.to_csv(index=False).rstrip("\n")
    if output_format == "json":
        return frame.to_json(orient="records", lines=True, date_format="iso").rstrip("\n")
    if frame.empty:
        return "(no rows)\n" + " | ".join(frame.columns)
    import pandas as pd

    with pd.option_context("display.max_colwidth", 80, "display.width", 200):
        return frame.to_string(index=False)
