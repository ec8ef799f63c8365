"""Publishing a version: parts → manifest → version decision → Croissant → Git commit + tag → catalog.

The order makes a half-written version impossible to see: parts are content-addressed and invisible
until a manifest references them; the manifest and Croissant become visible in one Git commit and tag,
made under the registry lock after re-checking that no other publisher moved the dataset meanwhile.
"""

from __future__ import annotations

import json
import logging
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from coralord_dagster import croissant as cr
from coralord_dagster.catalog import Catalog
from coralord_dagster.chunking import Chunking, row_hashes, rows_digest
from coralord_dagster.errors import CoralordError, PipelineError, RegistryError
from coralord_dagster.manifest import Manifest, encode_schema, schema_fields
from coralord_dagster.naming import FIRST_VERSION, SemVer, tag_name, validate_name
from coralord_dagster.registry import Registry, VersionInfo, dataset_dir
from coralord_dagster.store import PartStore, WriteStats
from coralord_dagster.versioning import classify

log = logging.getLogger(__name__)

#: Parts kept in the copy of a Croissant that mlcroissant validates before a publish.
VALIDATE_PARTS = 8


@dataclass(frozen=True)
class Provenance:
    """Where a version comes from: sources, parent datasets, code version and run."""

    sources: list[dict[str, Any]] = field(default_factory=list)
    derived_from: list[dict[str, Any]] = field(default_factory=list)
    code_version: str | None = None
    run_id: str | None = None
    #: The environment the pipeline ran in (image, digest, runner), when known at run time; it
    #: replaces the descriptor's ``environment`` in the Croissant.
    environment: dict[str, Any] | None = None


@dataclass(frozen=True)
class Result:
    """What a pipeline may return instead of a bare table: the table plus headline numbers.

    ``metrics`` (name → number, e.g. ``{"alcohol/mean": 10.4}``) are recorded with the version: in its
    manifest, in its Croissant (``coralord:metrics``) and as numeric Dagster metadata on its
    materialization, so that the UI plots them across versions.
    """

    data: Any
    metrics: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        bad = {
            k: v for k, v in self.metrics.items() if isinstance(v, bool) or not isinstance(v, (int, float))
        }
        if bad:
            raise PipelineError(f"metrics must be numbers; got {bad}")


@dataclass(frozen=True)
class Versioned:
    """Data plus what to publish it as: return it from an asset to control name, docs and lineage.

    The IO manager publishes ``data`` as ``info.name`` with ``provenance``; plain DataFrames and Arrow
    tables are published under the asset's own name instead.
    """

    data: Any
    info: cr.DatasetInfo
    provenance: Provenance
    part_rows: int | None = None


@dataclass(frozen=True)
class PublishResult:
    name: str
    version: SemVer
    tag: str
    commit: str
    manifest: Manifest
    croissant: dict[str, Any]
    created: bool  # False: identical content, nothing new was published
    stats: WriteStats
    storage_url: str
    warnings: list[str] = field(default_factory=list)

    @property
    def summary(self) -> str:
        if self.created:
            m = self.manifest
            return f"published {self.name} v{self.version} ({m.rows} rows, {m.bump})"
        return f"unchanged, still v{self.version}"


def to_arrow(data: Any) -> tuple[pa.Table, str]:
    """Normalize what a pipeline returned to an Arrow table; remembers whether it was pandas."""
    if isinstance(data, pa.Table):
        return data, "arrow"
    if isinstance(data, pd.DataFrame):
        try:
            return pa.Table.from_pandas(data), "pandas"
        except (pa.ArrowInvalid, pa.ArrowTypeError) as e:
            raise PipelineError(f"cannot convert the DataFrame to Arrow: {e}") from e
    if isinstance(data, pa.RecordBatchReader):
        return data.read_all(), "arrow"
    raise PipelineError(f"a dataset must be a pandas DataFrame or a pyarrow Table, got {type(data).__name__}")


def _now() -> str:
    return datetime.now(UTC).replace(microsecond=0).isoformat()


class Publisher:
    """Publishes versions of datasets into one registry, store and catalog."""

    def __init__(self, registry: Registry, store: PartStore, catalog: Catalog | None = None) -> None:
        self.registry = registry
        self.store = store
        self.catalog = catalog

    def publish(
        self,
        data: Any,
        info: cr.DatasetInfo,
        provenance: Provenance | None = None,
        *,
        part_rows: int | None = None,
    ) -> PublishResult:
        name = validate_name(info.name)
        provenance = provenance or Provenance()
        metrics: dict[str, float] = {}
        if isinstance(data, Result):
            data, metrics = data.data, dict(data.metrics)
        if provenance.environment is not None:
            info = replace(info, environment=provenance.environment)
        table, produced_as = to_arrow(data)
        if info.split_column and info.split_names:
            self._check_splits(table, info)
        hashes = row_hashes(table)
        chunking = Chunking.for_table(table, part_rows, self._previous_chunking(name))
        # Column statistics (for the Croissant) are computed by DuckDB while the parts are written.
        with ThreadPoolExecutor(max_workers=1) as pool:
            column_stats_job = pool.submit(cr.column_statistics, table)
            parts, stats = self.store.write_table(table, chunking, hashes, dictionary_columns(table))
            column_stats = column_stats_job.result()
        draft = Manifest(
            name=name,
            version="0.0.0",
            parts=parts,
            fields=schema_fields(table.schema),
            arrow_schema=encode_schema(table.schema),
            rows=table.num_rows,
            rows_digest=rows_digest(hashes),
            chunking=chunking.to_json(),
            metadata_digest=info.metadata_digest,
            created=_now(),
            produced_as=produced_as,
            derived_from=provenance.derived_from,
            sources=provenance.sources,
            code_version=provenance.code_version,
            run_id=provenance.run_id,
            metrics=metrics,
        )
        for _attempt in range(20):
            previous = self.registry.latest(name)
            prev_manifest = self.registry.manifest(previous) if previous else None
            bump, changes = classify(prev_manifest, draft)
            if bump is None:
                assert previous is not None and prev_manifest is not None
                self._push()
                croissant = self.registry.read_file(previous.tag, f"{dataset_dir(name)}/croissant.json")
                return PublishResult(
                    name,
                    previous.version,
                    previous.tag,
                    previous.commit,
                    prev_manifest,
                    json.loads(croissant),
                    False,
                    stats,
                    self.store.url,
                )
            version = previous.version.bump(bump) if previous else FIRST_VERSION
            manifest = draft.with_version(
                str(version),
                bump=bump if previous else "first",
                changes=changes,
                previous=(
                    {"name": name, "version": str(previous.version), "content_id": prev_manifest.content_id}
                    if previous and prev_manifest
                    else None
                ),
            )
            doc = cr.build_croissant(
                manifest,
                info,
                table,
                local_links=self.store.is_local,
                date_published=manifest.created[:10],
                stats=column_stats,
            )
            files = {
                "manifest.json": manifest.dumps().encode(),
                "croissant.json": cr.dumps(doc).encode(),
            }
            if info.descriptor_text is not None:
                files["descriptor.yaml"] = info.descriptor_text.encode()
            links = (
                {cr.part_link_name(i, p.sha256): self.store.part_path(p.sha256) for i, p in enumerate(parts)}
                if self.store.is_local
                else {}
            )
            self._validate(files["croissant.json"], links)
            with self.registry.locked():
                now = self.registry.latest(name)
                if (now.tag if now else None) != (previous.tag if previous else None):
                    continue  # someone published meanwhile: decide again against the new latest
                tag = tag_name(name, version)
                message = f"{tag}: {changes_line(manifest)}"
                commit = self.registry.commit_version(name, version, files, links, message=message)
                info_v = VersionInfo(name, version, tag, commit, self.registry.versions(name)[0].date)
            warnings = self._after_commit(info_v, manifest, files["croissant.json"].decode())
            return PublishResult(
                name, version, tag, commit, manifest, doc, True, stats, self.store.url, warnings
            )
        raise RegistryError(f"could not publish {name}: the registry kept changing under 20 attempts")

    def _previous_chunking(self, name: str) -> Chunking | None:
        latest = self.registry.latest(name)
        return Chunking.from_json(self.registry.manifest(latest).chunking) if latest else None

    @staticmethod
    def _check_splits(table: pa.Table, info: cr.DatasetInfo) -> None:
        if info.split_column not in table.column_names:
            raise PipelineError(
                f"{info.name}: the descriptor declares split column {info.split_column!r} but the table has "
                f"only {table.column_names}; add the column or fix 'splits.column'"
            )
        found = set(pc.unique(table.column(info.split_column)).to_pylist())
        unknown = sorted(str(s) for s in found - set(info.split_names))
        if unknown:
            raise PipelineError(
                f"{info.name}: rows have split values {unknown} not declared in 'splits.names' "
                f"{list(info.split_names)}"
            )

    def _validate(self, croissant: bytes, links: dict[str, str]) -> None:
        """Check the Croissant loads in mlcroissant before anything becomes visible.

        Every part entry is generated by the same code, so the document's shape is validated with its
        first few parts: mlcroissant's cost grows with the entries (1.2 s for 500 parts), not its insight.
        """
        doc = cr.trim_parts(json.loads(croissant), VALIDATE_PARTS)
        kept = set(doc["distribution"][-1]["includes"])
        with tempfile.TemporaryDirectory(prefix="coralord-croissant-") as tmp:
            path = Path(tmp) / "croissant.json"
            path.write_text(cr.dumps(doc))
            for rel, target in links.items():
                if rel not in kept:
                    continue
                (Path(tmp) / rel).parent.mkdir(parents=True, exist_ok=True)
                (Path(tmp) / rel).symlink_to(target)
            cr.validate(path)

    def _push(self) -> None:
        if not self.registry.read_only:
            with self.registry.locked():
                self.registry.push()

    def _after_commit(self, info: VersionInfo, manifest: Manifest, croissant: str) -> list[str]:
        """Push and index; the version exists already, so failures here are reported, not undone."""
        warnings = []
        if self.catalog is not None:
            try:
                self.catalog.index(info, manifest, croissant)
            except (CoralordError, OSError) as e:
                warnings.append(f"catalog not updated ({e}); run 'coralord catalog rebuild'")
                log.warning(warnings[-1])
        self._push()
        return warnings


def dictionary_columns(table: pa.Table, sample_rows: int = 65536) -> list[str]:
    """Columns worth dictionary encoding: at most one distinct value in 8 over the first rows.

    pyarrow's default (every column) makes high-cardinality columns bigger and slower to write. The
    choice is made from a fixed sample so that it is cheap and the same for versions that share it.
    """
    sample = table.slice(0, sample_rows)
    limit = max(1, sample.num_rows // 8)
    out = []
    for name, column in zip(table.column_names, sample.columns, strict=True):
        if pa.types.is_nested(column.type):
            continue
        try:
            distinct = pc.count_distinct(column).as_py()
        except pa.ArrowNotImplementedError:
            continue
        if distinct <= limit:
            out.append(name)
    return out


def changes_line(m: Manifest) -> str:
    c = m.changes
    if c.get("first"):
        return f"first version, {m.rows} rows"
    sc = c.get("schema", {})
    bits = [f"{m.bump} bump", f"rows {c.get('rows_before')} -> {c.get('rows_after')}"]
    for k in ("added", "removed", "retyped"):
        if sc.get(k):
            bits.append(f"columns {k}: {', '.join(sc[k])}")
    bits.append(f"parts reused {c.get('parts_reused')}, new {c.get('parts_new')}")
    return "; ".join(bits)
