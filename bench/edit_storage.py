"""P3: storage added by a 1% row edit ÷ one version's size, at several part sizes.

A 10-column table (default 5,000,000 rows) is stored, then a 1% edit is applied at 10 places spread
over the table (at each: a third of the rows deleted, a third updated, a third inserted) and stored
again; the new bytes are divided by the first version's size. Parts are content-defined, so only the
parts around each place change: smaller parts mean less storage per edit but more files per version.
Run: ``python bench/edit_storage.py [ROWS]``.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).parent))
from publish import make_table  # noqa: E402
from scratch import scratch_dir  # noqa: E402

from coralord_dagster.chunking import Chunking  # noqa: E402
from coralord_dagster.publish import dictionary_columns  # noqa: E402
from coralord_dagster.store import PartStore  # noqa: E402


def one_percent_edit(table: pa.Table, places: int = 10, seed: int = 1) -> pa.Table:
    rows = table.num_rows
    per = rows // 100 // places // 3
    rng = np.random.default_rng(seed)
    starts = np.linspace(0, rows - 4 * per, places, dtype=int) + rng.integers(0, per, places)
    keep = np.ones(rows, bool)
    f0 = table.column("f0").to_numpy().copy()
    for s in starts:
        keep[s : s + per] = False  # deleted
        f0[s + per : s + 2 * per] = -1.0  # updated
    updated = table.set_column(table.schema.get_field_index("f0"), "f0", pa.array(f0))
    inserted = make_table(per * places)
    pieces, prev = [], 0
    for k, s in enumerate(starts):
        end = s + 2 * per
        pieces.append(updated.slice(prev, end - prev).filter(pa.array(keep[prev:end])))
        pieces.append(inserted.slice(k * per, per))  # inserted
        prev = end
    pieces.append(updated.slice(prev))
    return pa.concat_tables(pieces)


def main() -> None:
    rows = int(sys.argv[1]) if len(sys.argv) > 1 else 5_000_000
    table = make_table(rows)
    edited = one_percent_edit(table)
    dictionary = dictionary_columns(table)
    tmp = scratch_dir("coralord-bench-edit-")
    print(f"{rows:,} rows x 10 columns; 1% edit at 10 places ({edited.num_rows:,} rows after)")
    for part_rows in (None, 1 << 18, 1 << 16, 1 << 14):
        store = PartStore(str(tmp / f"store-{part_rows}"))
        chunking = Chunking.for_table(table, part_rows)
        first, _ = store.write_table(table, chunking, None, dictionary)
        t0 = time.perf_counter()
        second, stats = store.write_table(edited, chunking, None, dictionary)
        elapsed = time.perf_counter() - t0
        size = sum(p.bytes for p in first)
        label = "default" if part_rows is None else f"part_rows={part_rows}"
        print(
            f"{label:<16} avg {chunking.avg_rows:>7} rows/part, {len(first):>4} parts: added "
            f"{stats.bytes_written / size:6.1%} of a version ({stats.parts_written} new parts, "
            f"{stats.parts_reused} reused; goal <= 5%), write {elapsed:.2f} s"
        )


if __name__ == "__main__":
    main()
