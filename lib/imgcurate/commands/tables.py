"""``imgcurate tables``: list the tables, print the spark-sql catalog, register in a metastore."""

from __future__ import annotations

import argparse

from imgcurate.commands.common import add_spark_args, add_tables_args, session


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "tables",
        help="list tables and make them visible to spark-sql or a metastore",
        description="List the tables with their row counts. --catalog prints the SQL that "
        "registers them (spark-sql -i DIR/_catalog.sql does the same); --register-database "
        "creates external tables in the session's catalog (Hive metastore, Unity Catalog).",
    )
    parser.add_argument("--catalog", action="store_true", help="print the CREATE VIEW script")
    parser.add_argument(
        "--register-database", metavar="DB", help="create external tables DB.<table> in the catalog"
    )
    add_tables_args(parser)
    add_spark_args(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from imgcurate.spark.tables import TableStore

    spark = session(args, "imgcurate-tables")
    store = TableStore(spark, args.tables, args.table_format)
    if args.catalog:
        print(store.catalog_sql(), end="")
        return 0
    if args.register_database:
        for name in store.register_in_catalog(args.register_database):
            print(f"registered {args.register_database}.{name} -> {store.path(name)}")
        return 0
    for name in store.names():
        print(f"{name:<14} {store.read(name).count():>12} rows  {store.path(name)}")
    return 0
