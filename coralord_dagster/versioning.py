"""Which semantic version a new manifest gets, following Croissant's versioning guidance.

- column removed, renamed or retyped → MAJOR
- rows added, removed or changed, or a column added → MINOR
- same rows re-serialized, or only the dataset's metadata changed → PATCH
- identical content and metadata → no new version at all (``None``)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from coralord_dagster.model import Manifest
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


def classify(
    previous: Manifest | None, new: Manifest, previous_rows_digest: str | None = None
) -> tuple[Bump | None, dict[str, Any]]:
    """The bump from ``previous`` to ``new`` (None = unchanged) and a summary of what changed.

    ``previous_rows_digest``: the previous rows' digest under ``new``'s row hash, when the previous
    version was hashed by an older rule (its recorded digest cannot be compared then).
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
    if sc.added:
        return "minor", summary
    if rows_same and previous.fields == new.fields and previous.chunking == new.chunking:
        # The same rows cut by the same rule: the same content, whatever bytes a Parquet writer made of it.
        return ("patch" if previous.metadata_digest != new.metadata_digest else None), summary
    # The same rows cut anew (another part size, or a new row-hash rule) are a PATCH, never a MINOR.
    return ("patch" if rows_same else "minor"), summary
