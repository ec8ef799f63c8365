"""Catalog search over 10,000 versions (generated manifests), in milliseconds.

Builds a catalog of 1,000 datasets x 10 versions with 12 fields each (as ``Catalog.index`` writes
them), then times ``Catalog.search`` for a few texts. Run: ``python bench/catalog_search.py``.
"""

from __future__ import annotations

import json
import time

import duckdb
from scratch import scratch_dir  # bench/ is on sys.path when a script runs

from coralord_dagster.catalog import SCHEMA, Catalog


def main() -> None:
    path = scratch_dir("coralord-bench-catalog-") / "catalog.duckdb"
    con = duckdb.connect(str(path))
    con.execute(SCHEMA)
    datasets, versions_each, fields_each = 1000, 10, 12
    con.executemany(
        "INSERT INTO datasets VALUES (?,?,?,?,?,?,?)",
        [
            [
                f"dataset_{d}",
                None,
                f"Generated dataset number {d} about topic {d % 37}.",
                "CC0-1.0",
                f"1.{versions_each - 1}.0",
                "0" * 64,
                "2026-11-22",
            ]
            for d in range(datasets)
        ],
    )
    con.executemany(
        "INSERT INTO versions VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
        [
            [
                f"dataset_{d}",
                f"1.{v}.0",
                1,
                v,
                0,
                f"dataset_{d}-v1.{v}.0",
                "c" * 40,
                "0" * 64,
                "2026-11-22",
                1000,
                10_000,
                1,
                "minor",
                "abc",
                "run",
                json.dumps([]),
                "{}",
            ]
            for d in range(datasets)
            for v in range(versions_each)
        ],
    )
    con.executemany(
        "INSERT INTO fields VALUES (?,?,?,?,?)",
        [
            [f"dataset_{d}", f"1.{v}.0", f, f"column_{f}_{d % 101}", "int64"]
            for d in range(datasets)
            for v in range(versions_each)
            for f in range(fields_each)
        ],
    )
    con.close()
    catalog = Catalog(path)
    count = catalog.query("SELECT count(*) FROM versions")[0][0]
    for text in ("topic 7", "column_3_42", "dataset_999-v1.9", "nothing-matches"):
        catalog.search(text)  # warm
        t0 = time.perf_counter()
        hits = catalog.search(text)
        ms = (time.perf_counter() - t0) * 1000
        print(
            f"search {text!r:<20} over {count:,} versions: {len(hits):4d} hit(s) "
            f"in {ms:6.1f} ms (goal <= 50 ms)"
        )


if __name__ == "__main__":
    main()
