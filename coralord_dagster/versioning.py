"""Which semantic version a new manifest gets: Croissant 1.1's versioning rules (its spec, "Versioning").

- PATCH: "the data remains the same, although it might be serialized differently" — the same rows cut
  anew or written by another Parquet writer, or only the dataset's metadata changed.
- MINOR: "the existing data is the same and can still be retrieved as is": columns added, new splits,
  or rows appended after a split's rows, while every previous row keeps its values, split and place
  (the previous version is the first rows of each of its splits, with its columns).
- MAJOR: "the existing data has been changed (edited, removed or shuffled records across splits)": a
  row edited, removed, moved or inserted before existing rows; a column removed or retyped.
- identical content and metadata → no new version at all (``None``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from coralord_dagster.model import Manifest, Segment
from coralord_dagster.naming import Bump


@dataclass(frozen=True)
class SchemaChange:
    added: list[str]
    removed: list[str]
    retyped: list[str]

    @property
    def breaking(self) -> bool:
        return bool(self.removed or self.retyped)

    def to_json(self) -> dict[str, Any]:
        return {"added": self.added, "removed": self.removed, "retyped": self.retyped}


def schema_change(old: list[dict[str, Any]], new: list[dict[str, Any]]) -> SchemaChange:
    old_t = {f["name"]: f["type"] for f in old}
    new_t = {f["name"]: f["type"] for f in new}
    return SchemaChange(
        added=[n for n in new_t if n not in old_t],
        removed=[n for n in old_t if n not in new_t],
        retyped=[n for n in new_t if n in old_t and old_t[n] != new_t[n]],
    )


def split_runs(m: Manifest) -> list[tuple[str | None, int]]:
    """(split, rows) of each split of ``m`` in row order; one run without a split when its parts do
    not record splits (no splits, or a version written before parts kept to one split)."""
    if not m.parts or any(p.split is None for p in m.parts):
        return [(None, m.rows)]
    runs: list[tuple[str | None, int]] = []
    for p in m.parts:
        if runs and runs[-1][0] == p.split:
            runs[-1] = (p.split, runs[-1][1] + p.rows)
        else:
            runs.append((p.split, p.rows))
    return runs


def kept_rows(previous: Manifest, segments: Sequence[Segment] | None, rows: int) -> np.ndarray | None:
    """Positions, in a new version of ``rows`` rows cut into ``segments``, of the rows that hold the
    previous version if the new one only added to it: the first rows of each of the previous version's
    splits, in its order. None when a split of ``previous`` is gone or shorter."""
    spans = {split: (offset, n) for offset, n, split in segments or [(0, rows, None)]}
    out = []
    for split, n in split_runs(previous):
        offset, available = spans.get(split, (0, rows if split is None else -1))
        if available < n:
            return None
        out.append(np.arange(offset, offset + n))
    return np.concatenate(out) if out else np.zeros(0, dtype=np.int64)


def classify(
    previous: Manifest | None,
    new: Manifest,
    previous_rows_digest: str | None = None,
    kept_digest: str | None = None,
) -> tuple[Bump | None, dict[str, Any]]:
    """The bump from ``previous`` to ``new`` (None = unchanged) and a summary of what changed.

    ``previous_rows_digest``: the previous rows' digest under ``new``'s row hash, when the previous
    version was hashed by an older rule (its recorded digest cannot be compared then).
    ``kept_digest``: the digest of the new version's rows at :func:`kept_rows`, over the previous
    version's columns only (None: it has no such rows); equal to the previous rows' digest when the new
    version only added to the previous one.
    """
    if previous is None:
        return "major", {"first": True, "rows": new.rows}
    sc = schema_change(previous.fields, new.fields)
    old_digest = previous_rows_digest or previous.rows_digest
    rows_same = old_digest == new.rows_digest and not sc.added and not sc.breaking
    old_parts = {p.sha256 for p in previous.parts}
    summary: dict[str, Any] = {
        "schema": sc.to_json(),
        "rows_before": previous.rows,
        "rows_after": new.rows,
        "parts_reused": sum(1 for p in new.parts if p.sha256 in old_parts),
        "parts_new": sum(1 for p in new.parts if p.sha256 not in old_parts),
    }
    if sc.breaking:
        return "major", summary
    if rows_same and previous.fields == new.fields and previous.chunking == new.chunking:
        # The same rows cut by the same rule: the same content, whatever bytes a Parquet writer made of it.
        return ("patch" if previous.metadata_digest != new.metadata_digest else None), summary
    if rows_same:
        return "patch", summary  # the same rows cut anew (another part size, or a new row-hash rule)
    summary["previous_rows_kept"] = kept_digest is not None and kept_digest == old_digest
    return ("minor" if summary["previous_rows_kept"] else "major"), summary
