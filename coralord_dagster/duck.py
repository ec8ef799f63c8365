"""One DuckDB query over an in-memory Arrow table (hashing, filtering, sampling), on a private connection."""

from __future__ import annotations

import duckdb
import pyarrow as pa


def query_arrow(table: pa.Table, sql: str, name: str = "t") -> pa.Table:
    """Run ``sql`` with ``table`` registered as ``name``; the result as an Arrow table.

    >>> query_arrow(pa.table({"x": [1, 2, 3]}), "SELECT x * 2 AS y FROM t WHERE x > 1").to_pydict()
    {'y': [4, 6]}
    """
    con = duckdb.connect()
    try:
        con.register(name, table)
        return con.sql(sql).to_arrow_table()
    finally:
        con.close()


def sandboxed_query(table: pa.Table, sql: str, name: str = "t") -> pa.Table:
    """Like :func:`query_arrow`, on a connection that can read nothing but ``table``: external access
    (files, URLs, extensions) is off and the configuration is locked before any user SQL runs."""
    con = duckdb.connect(config={"enable_external_access": False})
    try:
        con.register(name, table)
        con.execute("SET lock_configuration = true")
        return con.sql(sql).to_arrow_table()
    finally:
        con.close()
