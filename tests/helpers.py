"""Helpers shared by tests: reading Croissant files back with mlcroissant, editing use cases."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import mlcroissant as mlc


def croissant_records(path: Path | str, record_set: str = "records") -> list[dict[str, Any]]:
    logging.getLogger().setLevel(logging.ERROR)
    return list(mlc.Dataset(jsonld=str(path)).records(record_set))


def field_values(records: list[dict[str, Any]], field: str) -> list[Any]:
    values = [r[f"records/{field}"] for r in records]
    return [v.decode() if isinstance(v, bytes) else v for v in values]


def edit_pipeline(use_case: Path, old: str, new: str) -> None:
    path = use_case / "pipeline.py"
    text = path.read_text()
    assert old in text, old
    path.write_text(text.replace(old, new))


def asset_of(defs: Any, name: str) -> Any:
    """The unbound asset definition for ``name`` (to materialize with a test's own resources)."""
    import dagster as dg

    key = dg.AssetKey(name.split("/"))
    return next(a for a in defs.assets if a.key == key)
