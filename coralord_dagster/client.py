"""The consumer API: open, fetch and verify published versions without Dagster.

>>> ds = open_dataset("fashion_mnist", version="v1.0.0")   # doctest: +SKIP
>>> ds.to_pandas().label.value_counts()                     # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from coralord_dagster.croissant import part_link_name
from coralord_dagster.errors import IntegrityError
from coralord_dagster.manifest import Manifest
from coralord_dagster.naming import Ref
from coralord_dagster.registry import VersionInfo, dataset_dir
from coralord_dagster.workspace import Workspace


@dataclass
class DatasetVersion:
    """One published version of a dataset."""

    workspace: Workspace
    info: VersionInfo
    manifest: Manifest

    @property
    def name(self) -> str:
        return self.info.name

    @property
    def version(self) -> str:
        return str(self.info.version)

    @property
    def tag(self) -> str:
        return self.info.tag

    @property
    def croissant(self) -> dict[str, Any]:
        """The version's Croissant JSON-LD, as published."""
        return json.loads(self.croissant_text)

    @property
    def croissant_text(self) -> str:
        return self.workspace.registry.read_file(
            self.tag, f"{dataset_dir(self.name)}/croissant.json"
        ).decode()

    def to_arrow(self, columns: list[str] | None = None, *, verify: bool = False) -> pa.Table:
        """The version's rows, with the schema it was published with (pandas metadata included)."""
        if columns:
            known = [f["name"] for f in self.manifest.fields]
            unknown = [c for c in columns if c not in known]
            if unknown:
                from coralord_dagster.errors import CoralordError

                raise CoralordError(
                    f"{self.name} v{self.version} has no column(s) {unknown}; columns: {known}"
                )
        table = self.workspace.store.read_table(self.manifest.parts, columns, verify=verify)
        schema = self.manifest.schema
        if columns:
            schema = pa.schema([schema.field(c) for c in columns], metadata=None)
        if not table.schema.equals(schema, check_metadata=False):
            table = table.cast(schema)
        # Parts carry no schema metadata; the manifest's restores pandas' index and dtypes.
        return table.replace_schema_metadata(schema.metadata)

    def to_pandas(self, columns: list[str] | None = None, *, verify: bool = False) -> pd.DataFrame:
        return self.to_arrow(columns, verify=verify).to_pandas()

    def verify(self, *, fast: bool = False) -> list[str]:
        """Problems found in the stored parts (empty when the version is intact)."""
        problems = []
        for part in self.manifest.parts:
            problem = self.workspace.store.check(part, fast=fast)
            if problem:
                problems.append(problem)
        return problems

    def local_copy(self, dest: Path | str) -> Path:
        """A self-contained copy: ``croissant.json`` and ``parts/`` that mlcroissant reads offline.

        Parts are fetched (sha256-checked) next to the Croissant, whose ``contentUrl``s are rewritten to
        those local files; checksums stay the published ones. Returns the Croissant's path.
        """
        dest = Path(dest)
        (dest / "parts").mkdir(parents=True, exist_ok=True)
        doc = self.croissant
        for i, part in enumerate(self.manifest.parts):
            target = dest / part_link_name(i, part.sha256)
            if not (target.exists() and target.stat().st_size == part.bytes):
                data = self.workspace.store.read_bytes(part.sha256)
                if hashlib.sha256(data).hexdigest() != part.sha256:
                    raise IntegrityError(f"part {part.sha256} is corrupt; run 'coralord verify {self.name}'")
                tmp = target.with_name(f".{target.name}.tmp")
                tmp.write_bytes(data)
                tmp.replace(target)
        for entry in doc["distribution"]:
            if entry.get("@type") == "cr:FileObject":
                entry["contentUrl"] = part_link_name(int(entry["@id"].split("-")[1]), entry["sha256"])
        path = dest / "croissant.json"
        path.write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n")
        return path

    def write(self, path: Path | str, *, fmt: str = "parquet", columns: list[str] | None = None) -> Path:
        """Write the version (or some columns) to one Parquet or CSV file, atomically."""
        path = Path(path)
        table = self.to_arrow(columns, verify=True)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        if fmt == "parquet":
            pq.write_table(table, tmp)
        elif fmt == "csv":
            table.to_pandas().to_csv(tmp, index=False)
        else:
            raise ValueError(f"unknown format {fmt!r}: use parquet or csv")
        tmp.replace(path)
        return path


def open_dataset(
    name: str,
    version: str = "latest",
    *,
    registry: str | Path | None = None,
    workspace: Workspace | None = None,
) -> DatasetVersion:
    """Open ``name`` at ``version`` (``latest``, ``v1.2.0`` or a content-id prefix)."""
    ws = workspace or Workspace.open(registry)
    ref = Ref.parse(f"{name}@{version}") if "@" not in name else Ref.parse(name)
    info = ws.registry.resolve(ref)
    return DatasetVersion(ws, info, ws.registry.manifest(info))


def check_integrity(ds: DatasetVersion) -> None:
    """Raise :class:`IntegrityError` if any part of ``ds`` is missing or corrupt."""
    problems = ds.verify()
    if problems:
        raise IntegrityError(f"{ds.name} v{ds.version}: " + "; ".join(problems))
