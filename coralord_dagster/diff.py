"""Row-level differences between two versions, computed with DuckDB over the parts they do not share.

Parts are content-addressed, so a part both versions list holds identical rows in both: only the parts
unique to either side are read. With key columns, a row is *added*, *removed* or *changed* by key;
without, rows are compared whole (by content hash, as multisets): only added and removed exist.
Rows are compared on the columns both versions have.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import duckdb
import pyarrow as pa

from coralord_dagster.client import DatasetVersion
from coralord_dagster.reader import read_parts
from coralord_dagster.sql import QueryError, quote_ident
from coralord_dagster.versioning import SchemaChange, schema_change


@dataclass
class Diff:
    a: str
    b: str
    schema: SchemaChange
    rows_a: int
    rows_b: int
    added: int = 0
    removed: int = 0
    changed: int = 0
    parts_shared: int = 0
    parts_compared: int = 0
    key: list[str] = field(default_factory=list)
    keys_added: list[Any] = field(default_factory=list)
    keys_removed: list[Any] = field(default_factory=list)
    keys_changed: list[Any] = field(default_factory=list)

    @property
    def identical(self) -> bool:
        sc = self.schema
        return not (self.added or self.removed or self.changed or sc.added or sc.removed or sc.retyped)

    def to_json(self) -> dict[str, Any]:
        return {
            "a": self.a,
            "b": self.b,
            "identical": self.identical,
            "schema": self.schema.to_json(),
            "rows": {
                "a": self.rows_a,
                "b": self.rows_b,
                "added": self.added,
                "removed": self.removed,
                "changed": self.changed,
            },
            "parts": {"shared": self.parts_shared, "compared": self.parts_compared},
            "key": self.key,
            "keys": {"added": self.keys_added, "removed": self.keys_removed, "changed": self.keys_changed},
        }

    def summary(self) -> str:
        sc = self.schema
        bits = [f"+{self.added} -{self.removed} ~{self.changed} rows"]
        for kind, cols in (("added", sc.added), ("removed", sc.removed), ("retyped", sc.retyped)):
            if cols:
                bits.append(f"columns {kind}: {', '.join(cols)}")
        return "; ".join(bits)


def _unique(parts: Sequence[Any], other: set[str]) -> list[Any]:
    return [p for p in parts if p.sha256 not in other]


def diff_versions(
    a: DatasetVersion, b: DatasetVersion, key: Sequence[str] | None = None, limit: int = 1000
) -> Diff:
    """What changed from ``a`` to ``b`` (``key``: columns identifying a row)."""
    key = list(key or [])
    sc = schema_change(a.manifest.fields, b.manifest.fields)
    names_b = {f["name"] for f in b.manifest.fields}
    common = [f["name"] for f in a.manifest.fields if f["name"] in names_b and f["name"] not in sc.retyped]
    missing = [k for k in key if k not in common]
    if missing:
        raise QueryError(f"key column(s) {missing} are not in both {a.name} v{a.version} and v{b.version}")
    shas_a = {p.sha256 for p in a.manifest.parts}
    shas_b = {p.sha256 for p in b.manifest.parts}
    only_a, only_b = _unique(a.manifest.parts, shas_b), _unique(b.manifest.parts, shas_a)
    result = Diff(
        f"{a.name}@v{a.version}",
        f"{b.name}@v{b.version}",
        sc,
        a.manifest.rows,
        b.manifest.rows,
        parts_shared=len(shas_a & shas_b),
        parts_compared=len(only_a) + len(only_b),
        key=key,
    )
    if not common:
        result.added, result.removed = b.manifest.rows, a.manifest.rows
        return result
    left = _rows(a, only_a, common)
    right = _rows(b, only_b, common)
    cols = ", ".join(quote_ident(c) for c in common)
    con = duckdb.connect()
    try:
        con.register("a", left)
        con.register("b", right)
        if key:
            _diff_by_key(con, result, key, cols, limit)
        else:
            # Whole rows as multisets: a row counts as many times as it occurs.
            counts = (
                f"WITH ca AS (SELECT hash({cols}) AS h, count(*) AS n FROM a GROUP BY 1), "
                f"cb AS (SELECT hash({cols}) AS h, count(*) AS n FROM b GROUP BY 1) "
                "SELECT coalesce(sum(greatest(coalesce(cb.n, 0) - coalesce(ca.n, 0), 0)), 0), "
                "coalesce(sum(greatest(coalesce(ca.n, 0) - coalesce(cb.n, 0), 0)), 0) "
                "FROM ca FULL OUTER JOIN cb ON ca.h = cb.h"
            )
            result.added, result.removed = (int(x) for x in con.execute(counts).fetchall()[0])
    finally:
        con.close()
    return result


def _diff_by_key(con: duckdb.DuckDBPyConnection, result: Diff, key: list[str], cols: str, limit: int) -> None:
    keys = ", ".join(quote_ident(k) for k in key)

    def match(left: str, right: str) -> str:
        return " AND ".join(
            f"{left}.{quote_ident(k)} IS NOT DISTINCT FROM {right}.{quote_ident(k)}" for k in key
        )

    def key_of(t: str) -> str:
        parts = [f"{t}.{quote_ident(k)}" for k in key]
        return parts[0] if len(parts) == 1 else f"[{', '.join(parts)}]"

    hashed = f"SELECT {keys}, hash({cols}) AS h FROM"
    base = f"WITH ha AS ({hashed} a), hb AS ({hashed} b) "
    on = match("ha", "hb")
    queries = {
        "removed": f"SELECT {key_of('ha')} FROM ha WHERE NOT EXISTS (SELECT 1 FROM hb WHERE {on})",
        "added": f"SELECT {key_of('hb')} FROM hb WHERE NOT EXISTS (SELECT 1 FROM ha WHERE {on})",
        "changed": f"SELECT {key_of('ha')} FROM ha JOIN hb ON {on} WHERE ha.h <> hb.h",
    }
    for kind, sql in queries.items():
        setattr(result, kind, con.execute(f"{base}SELECT count(*) FROM ({sql})").fetchall()[0][0])
        sample = con.execute(f"{base}{sql} ORDER BY 1 LIMIT {int(limit)}").fetchall()
        setattr(result, f"keys_{kind}", [row[0] for row in sample])


def _rows(ds: DatasetVersion, parts: list[Any], columns: list[str]) -> pa.Table:
    schema = ds.manifest.schema
    if not parts:
        return pa.schema([schema.field(c) for c in columns]).empty_table()
    ws = ds.workspace
    table, _ = read_parts(
        ws.store,
        parts,
        schema,
        columns=columns,
        cache=None if ws.store.is_local else ws.cache,
        what=f"{ds.name} v{ds.version}",
    )
    return table
