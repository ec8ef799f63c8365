"""Content-defined row chunking: where a table is cut into parts.

A cut falls after every row whose content hash has its low ``k`` bits all set, so boundaries move with
the rows, not with their positions: inserting, deleting or editing a few rows changes only the parts
around them and every other part keeps its bytes (and so its sha256). Minimum and maximum part sizes
keep parts from becoming tiny or unbounded.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa

from coralord_dagster.duck import query_arrow

#: Without ``part_rows`` in the descriptor, a version is cut into about ``TARGET_PARTS`` parts of
#: in-memory Arrow size between ``MIN_PART_BYTES`` and ``MAX_PART_BYTES``. Many parts keep a small edit
#: small (an edit rewrites the one or two parts around it: 1% spread over 10 places adds ~5% of a
#: version at 512 parts, ~90% at 10 parts); the bounds keep tiny parts and huge part lists away.
TARGET_PARTS = 512
MIN_PART_BYTES = 256 * 1024
MAX_PART_BYTES = 32 * 1024 * 1024
ROW_HASH = f"duckdb-{duckdb.__version__}"


@dataclass(frozen=True)
class Chunking:
    """Cut rule: average rows per part (a power of two) with min = avg/4 and max = avg*4."""

    avg_rows: int

    @property
    def min_rows(self) -> int:
        return max(1, self.avg_rows // 4)

    @property
    def max_rows(self) -> int:
        return self.avg_rows * 4

    @classmethod
    def for_table(
        cls, table: pa.Table, part_rows: int | None = None, previous: Chunking | None = None
    ) -> Chunking:
        """The cut rule for ``table``: ``part_rows`` if given, else sized by the table.

        ``previous`` (the last version's rule) is kept while the sized rule stays within 4x of it: a
        changed rule cuts every part anew, so a growing table changes rule only at large steps.
        """
        if part_rows is None:
            per_row = max(1, table.nbytes // max(1, table.num_rows))
            target = min(MAX_PART_BYTES, max(MIN_PART_BYTES, table.nbytes // TARGET_PARTS))
            part_rows = max(16, target // per_row)
            if previous is not None and previous.avg_rows // 4 <= part_rows <= previous.avg_rows * 4:
                return previous
        # A power of two keeps the rule stable when the average row size drifts a little.
        return cls(1 << max(4, round(math.log2(part_rows))))

    @classmethod
    def from_json(cls, d: dict[str, Any] | None) -> Chunking | None:
        """The rule recorded in a manifest, if it is this kind of rule with this row hash."""
        if not d or d.get("rule") != "row-hash" or d.get("row_hash") != ROW_HASH:
            return None
        return cls(int(d["avg_rows"]))

    def to_json(self) -> dict[str, int | str]:
        return {
            "rule": "row-hash",
            "avg_rows": self.avg_rows,
            "min_rows": self.min_rows,
            "max_rows": self.max_rows,
            "row_hash": ROW_HASH,
        }


def row_hashes(table: pa.Table) -> np.ndarray:
    """A 64-bit content hash per row (DuckDB's ``hash`` over all columns, vectorized)."""
    if table.num_rows == 0:
        return np.zeros(0, dtype=np.uint64)
    if table.num_columns == 0:
        return np.zeros(table.num_rows, dtype=np.uint64)
    cols = ", ".join('"' + c.replace('"', '""') + '"' for c in table.column_names)
    result = query_arrow(table, f"SELECT hash({cols}) AS h FROM t")
    return result.column("h").to_numpy().astype(np.uint64, copy=False)


def rows_digest(hashes: np.ndarray) -> str:
    """Order-sensitive digest of all rows: equal iff the same rows in the same order (same hash fn)."""
    return hashlib.sha256(np.ascontiguousarray(hashes, dtype="<u8").data).hexdigest()


def boundaries(hashes: np.ndarray, chunking: Chunking) -> list[tuple[int, int]]:
    """(offset, length) of each part, cut by content with the min/max limits."""
    n = len(hashes)
    if n == 0:
        return []
    mask = np.uint64(chunking.avg_rows - 1)
    candidates = np.flatnonzero((hashes & mask) == mask) + 1  # cut *after* these rows
    cuts: list[int] = []
    start = 0
    for c in candidates.tolist():
        while c - start > chunking.max_rows:
            start += chunking.max_rows
            cuts.append(start)
        if c - start >= chunking.min_rows:
            cuts.append(c)
            start = c
    while n - start > chunking.max_rows:
        start += chunking.max_rows
        cuts.append(start)
    if not cuts or cuts[-1] != n:
        cuts.append(n)
    edges = [0, *cuts]
    return [(a, b - a) for a, b in zip(edges, edges[1:], strict=False) if b > a]
