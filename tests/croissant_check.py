"""What a Croissant consumer gets, compared with what coralord published: mlcroissant's records of a
version (read from a Croissant file wherever it is) against the version's rows as ``open_dataset``
returns them. Run in a subprocess with its own ``CROISSANT_CACHE`` where a download must not be served
from an earlier test's cache (mlcroissant keeps downloads for good)."""

from __future__ import annotations

import io
import json
import logging
import math
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa


def normalized(value: Any) -> Any:
    """One value as comparable Python: text for bytes, pixels for images, UTC ISO text for times."""
    if isinstance(value, dict) and "bytes" in value:  # an image struct as stored
        from PIL import Image

        value = Image.open(io.BytesIO(value["bytes"]))
    if hasattr(value, "getdata") and hasattr(value, "size"):  # a PIL image (mlcroissant decodes them)
        return ("image", value.size, np.asarray(value.convert("L")).tobytes())
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, np.generic):
        value = value.item()
    if hasattr(value, "to_pydatetime"):
        value = value.to_pydatetime()
    if isinstance(value, datetime):
        return value.isoformat() if value.tzinfo is None else value.astimezone(UTC).isoformat()
    if isinstance(value, float):
        return "nan" if math.isnan(value) else round(value, 6)
    return value


def expected_records(table: pa.Table, doc: dict[str, Any]) -> list[dict[str, Any]]:
    """``table``'s rows as mlcroissant reads the version: when each part's split is in its path, split
    by split in the order of the split folders' names, each split in row order."""
    fields = next(rs["field"] for rs in doc["recordSet"] if rs["@id"] == "records")
    rows = table.to_pylist()
    split = next((f["name"] for f in fields if "fileProperty" in f["source"].get("extract", {})), None)
    if split is not None:
        rows = sorted(rows, key=lambda r: r[split])  # stable
    return [{f["@id"]: normalized(r[f["name"]]) for f in fields} for r in rows]


def read_records(croissant: Path, record_set: str = "records") -> list[dict[str, Any]]:
    import mlcroissant as mlc

    logging.getLogger().setLevel(logging.ERROR)
    records = mlc.Dataset(jsonld=str(croissant)).records(record_set)
    return [{k: normalized(v) for k, v in r.items()} for r in records]


def assert_croissant_gives(croissant: Path, table: pa.Table, what: str) -> None:
    """mlcroissant's records of ``croissant`` are exactly ``table``'s rows (and every sha256 checks)."""
    doc = json.loads(croissant.read_text())
    got = read_records(croissant)
    want = expected_records(table, doc)
    assert len(got) == len(want), f"{what}: {len(got)} records, expected {len(want)}"
    for i, (g, w) in enumerate(zip(got, want, strict=True)):
        assert g == w, f"{what}: record {i} differs: {_diff(g, w)}"
    parts = [d for d in doc["distribution"] if d["@type"] == "cr:FileObject"]
    assert len(read_records(croissant, "part_files")) == len(parts), what


def _diff(got: dict[str, Any], want: dict[str, Any]) -> dict[str, Any]:
    return {k: (str(got.get(k))[:80], str(want.get(k))[:80]) for k in want if got.get(k) != want[k]}


def read_in_subprocess(croissant: Path, record_set: str, cache: Path) -> subprocess.CompletedProcess[str]:
    """Read ``record_set`` in a fresh interpreter with its own download cache: prints the record count,
    or fails with mlcroissant's error."""
    code = (
        "import logging, sys, mlcroissant as mlc; logging.getLogger().setLevel(logging.ERROR); "
        f"print(len(list(mlc.Dataset(jsonld={str(croissant)!r}).records({record_set!r}))))"
    )
    env = {**os.environ, "CROISSANT_CACHE": str(cache)}
    return subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300, check=False
    )
