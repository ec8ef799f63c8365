"""The consumer API: open, fetch and verify published versions without Dagster.

>>> ds = open_dataset("fashion_mnist", version="v1.0.0")   # doctest: +SKIP
>>> ds.to_pandas().label.value_counts()                     # doctest: +SKIP
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from coralord_dagster.croissant import part_link_names
from coralord_dagster.errors import CoralordError, IntegrityError
from coralord_dagster.model import Manifest, PartRef, json_text
from coralord_dagster.naming import Ref
from coralord_dagster.reader import ReadStats, read_parts, whole_part
from coralord_dagster.registry import VersionInfo, dataset_dir
from coralord_dagster.sql import validate_query
from coralord_dagster.tempdirs import replacing
from coralord_dagster.workspace import Workspace


@dataclass
class DatasetVersion:
    """One published version of a dataset, optionally narrowed to some columns and rows.

    Nothing is read until :meth:`to_arrow`, :meth:`to_pandas` or :meth:`relation` is called; then only
    the requested columns and the row groups that can match ``where`` are transferred.
    """

    workspace: Workspace
    info: VersionInfo
    manifest: Manifest
    columns: list[str] | None = None
    where: str | None = None
    last_read: ReadStats = field(default_factory=ReadStats)

    def __post_init__(self) -> None:
        validate_query(self.manifest.schema, self.columns, self.where, f"{self.name} v{self.version}")

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
    def partial(self) -> bool:
        return bool(self.columns or self.where)

    @property
    def croissant(self) -> dict[str, Any]:
        """The version's Croissant JSON-LD, as published."""
        return json.loads(self.croissant_text)

    @property
    def croissant_text(self) -> str:
        return self.workspace.registry.read_file(
            self.tag, f"{dataset_dir(self.name)}/croissant.json"
        ).decode()

    def to_arrow(self, *, verify: bool = False) -> pa.Table:
        """The rows (and columns) asked for, with the schema they were published with.

        Every byte read is checked against the manifest's digests first, so damaged storage raises
        :class:`~coralord_dagster.errors.IntegrityError` instead of returning wrong values. ``verify``
        also checks the sha256 of every part read (reading each whole).
        """
        table, self.last_read = self._read(self.manifest.parts, verify)
        return table

    def _read(self, parts: list[PartRef], verify: bool) -> tuple[pa.Table, ReadStats]:
        ws = self.workspace
        return read_parts(
            ws.store,
            parts,
            self.manifest.schema,
            columns=self.columns,
            where=self.where,
            cache=None if ws.store.is_local else ws.cache,
            verify=verify,
            what=f"{self.name} v{self.version}",
        )

    def iter_batches(self, *, verify: bool = False, parts_per_read: int = 8) -> Iterator[pa.RecordBatch]:
        """The rows asked for, in row order, a few parts at a time: a version larger than memory streams
        into training. Each batch is checked like :meth:`to_arrow`'s rows; :attr:`last_read` adds up."""
        self.last_read = ReadStats()
        parts = self.manifest.parts
        step = max(1, parts_per_read)
        for i in range(0, len(parts), step):
            table, stats = self._read(parts[i : i + step], verify)
            self.last_read.add(stats)
            yield from table.to_batches()

    @property
    def split_column(self) -> str | None:
        """The column the Croissant declares as the split (it references the ``cr:Split`` record set;
        older versions typed it ``cr:Split``), if any."""
        for rs in self.croissant.get("recordSet", []):
            if rs.get("@id") == "splits":
                continue
            for f in rs.get("field", []):
                types = f.get("dataType")
                refers = (f.get("references") or {}).get("field", {}).get("@id")
                if refers == "splits/name" or "cr:Split" in (types if isinstance(types, list) else [types]):
                    return str(f["name"])
        return None

    def to_huggingface(self) -> Any:
        """A Hugging Face ``datasets.DatasetDict`` with one ``Dataset`` per split (a ``Dataset`` when the
        version has no splits), with the features the version was published with (``Image``,
        ``ClassLabel``…, from its schema's ``huggingface`` metadata). Needs ``pip install datasets``."""
        try:
            import datasets
        except ImportError:
            raise CoralordError(
                "to_huggingface() needs the Hugging Face datasets library: pip install 'coralord-dagster[hf]'"
            ) from None
        table = self.to_arrow()
        split = self.split_column
        if split is None or split not in table.column_names:
            return datasets.Dataset(table)
        names = list(dict.fromkeys(table.column(split).to_pylist()))
        return datasets.DatasetDict(
            {str(n): datasets.Dataset(table.filter(pc.equal(table.column(split), n))) for n in names}
        )

    def to_pandas(self, *, verify: bool = False) -> pd.DataFrame:
        return self.to_arrow(verify=verify).to_pandas()

    def relation(self, con: duckdb.DuckDBPyConnection | None = None) -> duckdb.DuckDBPyRelation:
        """The rows as a DuckDB relation (on ``con``, or a new in-memory connection)."""
        return (con or duckdb.connect()).from_arrow(self.to_arrow())

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
        doc = self.croissant
        links = {}
        for part, rel in zip(self.manifest.parts, part_link_names(self.manifest.parts), strict=True):
            links[part.sha256] = rel
            target = dest / rel
            if not (target.is_file() and not target.is_symlink() and target.stat().st_size == part.bytes):
                data = whole_part(self.workspace.store, part, self.workspace.cache)
                with replacing(target) as tmp:
                    tmp.write_bytes(data)
        for entry in doc["distribution"]:
            if entry.get("@type") == "cr:FileObject":
                # from the manifest's checked parts, never from the document's own text
                if entry.get("sha256") not in links:
                    raise IntegrityError(
                        f"{self.name} v{self.version}: its Croissant lists {entry.get('@id')!r}, which is "
                        "not a part of its manifest; the registry is damaged or was edited"
                    )
                entry["contentUrl"] = links[entry["sha256"]]
            elif entry.get("@id") == "parts":  # read exactly the parts laid out here
                entry["includes"] = list(links.values())
        path = dest / "croissant.json"
        with replacing(path) as tmp:
            tmp.write_text(json_text(doc))
        return path

    def write(self, path: Path | str, *, fmt: str = "parquet") -> Path:
        """Write the rows asked for to one Parquet or CSV file, atomically."""
        path = Path(path)
        if fmt not in ("parquet", "csv"):
            raise ValueError(f"unknown format {fmt!r}: use parquet or csv")
        table = self.to_arrow()
        with replacing(path) as tmp:
            if fmt == "parquet":
                pq.write_table(table, tmp)
            else:
                table.to_pandas().to_csv(tmp, index=False)
        return path


def open_dataset(
    name: str,
    version: str = "latest",
    *,
    subset: str | None = None,
    columns: list[str] | None = None,
    where: str | None = None,
    registry: str | Path | None = None,
    workspace: Workspace | None = None,
) -> DatasetVersion:
    """Open ``name`` (or its ``subset``) at ``version``: ``latest``, ``v1.2.0`` or a content-id prefix.

    ``columns`` and ``where`` (a SQL predicate) narrow what is read; they are checked against the
    version's schema right away, before anything is fetched.
    """
    ws = workspace or Workspace.open(registry)
    ref = Ref.parse(name) if "@" in name else Ref.parse(f"{name}@{version}")
    if subset:
        ref = Ref.parse(f"{ref.name}/{subset}@{ref.rev}")
    info = ws.registry.resolve(ref)
    return DatasetVersion(ws, info, ws.registry.manifest(info), list(columns) if columns else None, where)
