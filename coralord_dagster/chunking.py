"""Content-defined row chunking: where a table is cut into parts.

A cut falls after every row whose content hash has its low ``k`` bits all set, so boundaries move with
the rows, not with their positions: inserting, deleting or editing a few rows changes only the parts
around them and every other part keeps its bytes (and so its sha256). Minimum and maximum part sizes
keep parts from becoming tiny or unbounded.

The row hash is ours (:mod:`coralord_dagster.rowhash`, named by :data:`ROW_HASH` in every manifest), so
boundaries do not move when a library is upgraded. Registries written before it record DuckDB's
``hash()`` (``duckdb-<version>``); a dataset keeps the rule its last version recorded while this machine
can compute it — the same DuckDB release — so republishing its data changes nothing, and moves to ours
only when it must (see :mod:`coralord_dagster.versioning`: a new cut of the same rows is a PATCH).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa

from coralord_dagster.duck import query_arrow
from coralord_dagster.rowhash import ROW_HASH, row_hashes, rows_digest

__all__ = ["LEGACY_ROW_HASH", "ROW_HASH", "Chunking", "boundaries", "hash_rows", "row_hashes", "rows_digest"]

#: The row hash of registries written before :data:`ROW_HASH`: DuckDB's ``hash()``, which changes between
#: DuckDB releases — so only the installed release's is computable.
LEGACY_ROW_HASH = f"duckdb-{duckdb.__version__}"

#: Without ``part_rows`` in the descriptor, a version is cut into about ``TARGET_PARTS`` parts of
#: in-memory Arrow size between ``MIN_PART_BYTES`` and ``MAX_PART_BYTES``. Many parts keep a small edit
#: small (an edit rewrites the one or two parts around it: 1% spread over 10 places adds ~5% of a
#: version at 512 parts, ~90% at 10 parts); the bounds keep tiny parts and huge part lists away.
TARGET_PARTS = 512
MIN_PART_BYTES = 256 * 1024
MAX_PART_BYTES = 32 * 1024 * 1024


@dataclass(frozen=True)
class Chunking:
    """Cut rule: average rows per part (a power of two) with min = avg/4 and max = avg*4, over the rows'
    hashes by the ``row_hash`` rule."""

    avg_rows: int
    row_hash: str = ROW_HASH

    def hashes(self, table: pa.Table) -> np.ndarray:
        return hash_rows(table, self.row_hash)

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
        changed rule cuts every part anew, so a growing table changes rule only at large steps. Its row
        hash is kept too.
        """
        row_hash = previous.row_hash if previous is not None else ROW_HASH
        if part_rows is None:
            per_row = max(1, table.nbytes // max(1, table.num_rows))
            target = min(MAX_PART_BYTES, max(MIN_PART_BYTES, table.nbytes // TARGET_PARTS))
            part_rows = max(16, target // per_row)
            if previous is not None and previous.avg_rows // 4 <= part_rows <= previous.avg_rows * 4:
                return previous
        # A power of two keeps the rule stable when the average row size drifts a little.
        return cls(1 << max(4, round(math.log2(max(1, min(part_rows, 1 << 40))))), row_hash)

    @classmethod
    def from_json(cls, d: dict[str, Any] | None) -> Chunking | None:
        """The rule recorded in a manifest, if this machine can compute it (else None: a new rule)."""
        if not d or d.get("rule") != "row-hash" or d.get("row_hash") not in (ROW_HASH, LEGACY_ROW_HASH):
            return None
        return cls(int(d["avg_rows"]), str(d["row_hash"]))

    def to_json(self) -> dict[str, int | str]:
        return {
            "rule": "row-hash",
            "avg_rows": self.avg_rows,
            "min_rows": self.min_rows,
            "max_rows": self.max_rows,
            "row_hash": self.row_hash,
        }


def hash_rows(table: pa.Table, rule: str = ROW_HASH) -> np.ndarray:
    """One 64-bit hash per row by ``rule`` (:data:`ROW_HASH`, or the installed DuckDB's legacy one)."""
    if rule == ROW_HASH:
        return row_hashes(table)
    if rule != LEGACY_ROW_HASH:
        raise ValueError(f"row hash {rule!r} cannot be computed here")
    if table.num_rows == 0:
        return np.zeros(0, dtype=np.uint64)
    if table.num_columns == 0:
        return np.zeros(table.num_rows, dtype=np.uint64)
    cols = ", ".join('"' + c.replace('"', '""') + '"' for c in table.column_names)
    result = query_arrow(table, f"SELECT hash({cols}) AS h FROM t")
    return result.column("h").to_numpy().astype(np.uint64, copy=False)


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
