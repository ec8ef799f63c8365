"""Row hashing: ``rowhash.row_hashes`` (ours, pinned) vs DuckDB's ``hash()`` over the same columns.

- P1 table: the 10-column table of ``bench/publish.py`` (default 5,000,000 rows; goal: ours <= 1.5x).
- Images: 70,000 binary values of 300 bytes (goal: ours < 0.3 s).

Best of ten, the two alternated so that a busy machine slows both alike. DuckDB's time includes
registering the Arrow table and returning the hashes as Arrow, as ``chunking.row_hashes`` did.
Run: ``python bench/row_hash.py [ROWS]``.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable

import numpy as np
import pyarrow as pa
from publish import make_table  # bench/ is on sys.path when a script runs

from coralord_dagster.duck import query_arrow
from coralord_dagster.rowhash import row_hashes


def duckdb_hashes(table: pa.Table) -> np.ndarray:
    cols = ", ".join('"' + c.replace('"', '""') + '"' for c in table.column_names)
    return query_arrow(table, f"SELECT hash({cols}) AS h FROM t").column("h").to_numpy()


def images(rows: int = 70_000, size: int = 300) -> pa.Table:
    data = np.random.default_rng(1).integers(0, 256, rows * size, dtype=np.uint8).tobytes()
    offsets = pa.array(np.arange(0, (rows + 1) * size, size, dtype=np.int32))
    return pa.table(
        {
            "image": pa.BinaryArray.from_buffers(
                pa.binary(), rows, [None, offsets.buffers()[1], pa.py_buffer(data)]
            )
        }
    )


def compare(name: str, table: pa.Table, runs: int = 10) -> None:
    funcs: dict[str, Callable[[pa.Table], np.ndarray]] = {"ours": row_hashes, "duckdb": duckdb_hashes}
    best = dict.fromkeys(funcs, float("inf"))
    for _ in range(runs):
        for key, func in funcs.items():
            t0 = time.perf_counter()
            func(table)
            best[key] = min(best[key], time.perf_counter() - t0)
    print(
        f"{name}: ours {best['ours']:.3f} s vs DuckDB hash() {best['duckdb']:.3f} s "
        f"-> ratio {best['ours'] / best['duckdb']:.2f}"
    )


def main() -> None:
    rows = int(sys.argv[1]) if len(sys.argv) > 1 else 5_000_000
    row_hashes(pa.table({"warm": [1]}))
    duckdb_hashes(pa.table({"warm": [1]}))
    compare(f"P1 {rows:,} rows x 10 columns", make_table(rows))
    compare("images 70,000 x 300 B", images())


if __name__ == "__main__":
    main()
