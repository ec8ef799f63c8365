"""Publishing a version: analyse → write parts → decide the version → render Croissant → commit → index.

The order makes a half-written version impossible to see: parts are content-addressed and invisible
until a manifest references them; the manifest and Croissant become visible in one Git commit and tag
(pushed to the remote first, when there is one), made under the registry lock after re-checking that no
other publisher moved the dataset meanwhile. When someone did, or the remote refused the push, only the
decision and the commit are redone, with backoff; the parts are already stored.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential_jitter

from coralord_dagster import croissant as cr
from coralord_dagster import faults
from coralord_dagster.catalog import Catalog
from coralord_dagster.checks import CheckResult, Checks, check_table, raise_on_failure
from coralord_dagster.chunking import Chunking, hash_rows, rows_digest
from coralord_dagster.errors import (
    CoralordError,
    PipelineError,
    PublishConflictError,
    StorageUnavailableError,
)
from coralord_dagster.model import (
    FORMAT,
    DatasetInfo,
    Manifest,
    PartRef,
    Provenance,
    Segment,
    encode_schema,
    schema_fields,
)
from coralord_dagster.naming import FIRST_VERSION, Bump, SemVer, tag_name, validate_name
from coralord_dagster.registry import Registry, VersionInfo, dataset_dir
from coralord_dagster.store import PartStore, WriteStats
from coralord_dagster.tempdirs import private_tempdir, remove_orphans
from coralord_dagster.versioning import classify, kept_rows

log = logging.getLogger(__name__)

#: Parts kept in the copy of a Croissant that mlcroissant validates before a publish.
VALIDATE_PARTS = 8
#: Attempts at committing a version when others keep publishing first or the remote refuses the push.
COMMIT_ATTEMPTS = int(os.environ.get("CORALORD_COMMIT_ATTEMPTS", "25"))


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
    info: DatasetInfo
    provenance: Provenance
    part_rows: int | None = None
    #: ``info.checks`` already run on ``data`` (by the asset that shows them); None: run at publish
    check_results: list[CheckResult] | None = None


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


@dataclass(frozen=True)
class _Analysed:
    """A pipeline's result, normalized: the table and what is computed once from it."""

    table: pa.Table
    produced_as: str
    metrics: dict[str, float]
    info: DatasetInfo
    segments: list[Segment] | None = None  # the rows of each split, cut into parts on their own


@dataclass(frozen=True)
class _Written:
    chunking: Chunking
    hashes: np.ndarray  # one per row, by the chunking's row hash
    rows_digest: str
    parts: list[PartRef]
    stats: WriteStats
    column_stats: dict[str, Any]


@dataclass(frozen=True)
class _Plan:
    """What a publish is about to commit: the version after ``previous`` (None: the first)."""

    previous: VersionInfo | None
    previous_manifest: Manifest | None
    bump: Bump | None  # None: identical content, nothing to publish
    changes: dict[str, Any]

    @property
    def version(self) -> SemVer:
        assert self.bump is not None
        return self.previous.version.bump(self.bump) if self.previous else FIRST_VERSION


class _Moved(PublishConflictError):
    """Another publisher committed this dataset between our decision and our commit."""


class Publisher:
    """Publishes versions of datasets into one registry, store and catalog."""

    def __init__(self, registry: Registry, store: PartStore, catalog: Catalog | None = None) -> None:
        self.registry = registry
        self.store = store
        self.catalog = catalog

    def publish(
        self,
        data: Any,
        info: DatasetInfo,
        provenance: Provenance | None = None,
        *,
        part_rows: int | None = None,
        check_results: list[CheckResult] | None = None,
    ) -> PublishResult:
        """Publish ``data`` as the next version of ``info.name`` (or report it unchanged).

        ``info.checks`` run on the data first (``check_results``: already run on it, e.g. by the Dagster
        asset that shows them); a failure raises :class:`CheckFailedError` and nothing is written.
        """
        name = validate_name(info.name)
        provenance = provenance or Provenance()
        remove_orphans()  # temporary folders of killed publishers
        analysed = analyse(data, info, provenance)
        self._sync()
        if check_results is None:
            check_results = check_quality(self.registry, analysed.info, analysed.table)
        raise_on_failure(check_results, name)
        written = self._write_parts(analysed, part_rows)
        draft = draft_manifest(analysed, written, provenance, check_results)
        retrying = Retrying(
            stop=stop_after_attempt(COMMIT_ATTEMPTS),
            wait=wait_exponential_jitter(initial=0.02, max=2.0),
            retry=retry_if_exception_type((PublishConflictError, StorageUnavailableError)),
            reraise=True,
        )
        try:
            for attempt in retrying:
                with attempt:
                    plan = self._decide(draft, analysed, written)
                    if plan.bump is None:
                        return self._unchanged(plan, written.stats)
                    manifest, doc, files, links = self._render(plan, draft, analysed, written)
                    self._validate(files["croissant.json"], links)
                    faults.reached("validated")
                    version = self._commit(plan, manifest, files, links)
        except PublishConflictError as e:
            raise PublishConflictError(
                f"could not publish {name} after {COMMIT_ATTEMPTS} attempts: {e}; nothing was published, "
                "publish again"
            ) from None
        warnings = self._index({version.tag: (manifest, files["croissant.json"].decode())})
        return PublishResult(
            name,
            version.version,
            version.tag,
            version.commit,
            manifest,
            doc,
            True,
            written.stats,
            self.store.url,
            warnings,
        )

    # ----------------------------------------------------------------- the steps
    def _sync(self) -> None:
        """Bring the registry up to date with its remote, so decisions are made against the truth."""
        if self.registry.has_remote:
            with self.registry.locked():
                self.registry.sync()

    def _write_parts(self, a: _Analysed, part_rows: int | None) -> _Written:
        chunking = Chunking.for_table(a.table, part_rows, self._previous_chunking(a.info.name))
        # Column statistics (for the Croissant) are computed by DuckDB while the parts are written.
        with ThreadPoolExecutor(max_workers=1) as pool:
            column_stats_job = pool.submit(cr.column_statistics, a.table)
            hashes = chunking.hashes(a.table)
            parts, stats = self.store.write_table(
                a.table, chunking, hashes, dictionary_columns(a.table), a.segments
            )
            column_stats = column_stats_job.result()
        return _Written(chunking, hashes, rows_digest(hashes), parts, stats, column_stats)

    def _decide(self, draft: Manifest, a: _Analysed, w: _Written) -> _Plan:
        """The version ``draft`` becomes, against the latest version this registry knows."""
        previous = self.registry.latest(draft.name)
        if previous is None:
            bump, changes = classify(None, draft)
            return _Plan(None, None, bump, changes)
        prev = self.registry.manifest(previous)
        old_digest = self._rows_digest(prev, draft)
        same = old_digest == draft.rows_digest and prev.fields == draft.fields
        kept = None if same else _kept_digest(prev, a, w)
        bump, changes = classify(prev, draft, old_digest, kept)
        return _Plan(previous, prev, bump, changes)

    def _rows_digest(self, m: Manifest, draft: Manifest) -> str:
        """``m``'s rows digest under ``draft``'s row hash: read and hashed again when ``m`` was hashed by
        another rule (a registry moving to a new row hash; once)."""
        rule = str(draft.chunking.get("row_hash"))
        if m.chunking.get("row_hash") == rule:
            return m.rows_digest
        from coralord_dagster.reader import read_parts

        table, _ = read_parts(self.store, m.parts, m.schema, what=f"{m.name} v{m.version}")
        return rows_digest(hash_rows(table, rule))

    def _unchanged(self, plan: _Plan, stats: WriteStats) -> PublishResult:
        assert plan.previous is not None and plan.previous_manifest is not None
        previous = plan.previous
        croissant = self.registry.read_file(previous.tag, f"{dataset_dir(previous.name)}/croissant.json")
        return PublishResult(
            previous.name,
            previous.version,
            previous.tag,
            previous.commit,
            plan.previous_manifest,
            json.loads(croissant),
            False,
            stats,
            self.store.url,
        )

    def _render(
        self, plan: _Plan, draft: Manifest, a: _Analysed, w: _Written
    ) -> tuple[Manifest, dict[str, Any], dict[str, bytes], dict[str, str]]:
        """The manifest, Croissant and files of the version ``plan`` decided."""
        prev = plan.previous_manifest
        manifest = draft.with_version(
            str(plan.version),
            bump=plan.bump if prev else "first",
            changes=plan.changes,
            previous=prev.ref if prev else None,
        )
        local = self.store.is_local
        doc = cr.build_croissant(
            manifest,
            a.info,
            a.table,
            part_urls=None if local else [self.store.http_url(p.sha256) or p.url for p in w.parts],
            date_published=manifest.created[:10],
            stats=w.column_stats,
        )
        files = {"manifest.json": manifest.dumps().encode(), "croissant.json": cr.dumps(doc).encode()}
        if a.info.descriptor_text is not None:
            files["descriptor.yaml"] = a.info.descriptor_text.encode()
        names = cr.part_link_names(w.parts)
        links = (
            {n: self.store.part_path(p.sha256) for n, p in zip(names, w.parts, strict=True)} if local else {}
        )
        return manifest, doc, files, links

    def _commit(
        self, plan: _Plan, manifest: Manifest, files: dict[str, bytes], links: dict[str, str]
    ) -> VersionInfo:
        """Commit and tag the version, unless the dataset moved since ``plan`` was decided."""
        name = manifest.name
        with self.registry.locked():
            self.registry.sync()
            now = self.registry.latest(name)
            if (now.tag if now else None) != (plan.previous.tag if plan.previous else None):
                raise _Moved(f"{name} moved to {now.tag if now else None} meanwhile")
            # gc deletes only under this lock: parts present now stay until the tag protects them.
            missing = self.store.missing(manifest.parts)
            if missing:
                raise PipelineError(
                    f"{name}: {len(missing)} part(s) vanished from storage while publishing (a concurrent "
                    f"'coralord gc --grace 0'?), e.g. {missing[0]}; publish again"
                )
            version = plan.version
            tag = tag_name(name, version)
            commit = self.registry.commit_version(
                name, version, files, links, message=f"{tag}: {changes_line(manifest)}"
            )
            return VersionInfo(name, version, tag, commit, self.registry.versions(name)[0].date)

    def _previous_chunking(self, name: str) -> Chunking | None:
        latest = self.registry.latest(name)
        return Chunking.from_json(self.registry.manifest(latest).chunking) if latest else None

    def _validate(self, croissant: bytes, links: dict[str, str]) -> None:
        """Check the Croissant loads in mlcroissant before anything becomes visible.

        Every part entry is generated by the same code, so the document's shape is validated with its
        first few parts: mlcroissant's cost grows with the entries (1.2 s for 500 parts), not its insight.
        """
        doc = cr.trim_parts(json.loads(croissant), VALIDATE_PARTS)
        kept = {d["contentUrl"] for d in doc["distribution"] if d.get("@type") == "cr:FileObject"}
        with private_tempdir("croissant") as tmp:
            path = tmp / "croissant.json"
            path.write_text(cr.dumps(doc))
            for rel, target in links.items():
                if rel not in kept:
                    continue
                (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
                (tmp / rel).symlink_to(target)
            cr.validate(path)

    def _index(self, known: dict[str, tuple[Manifest, str]]) -> list[str]:
        """Index every tagged version the catalog lacks (``known``: the one just committed, at hand); the
        version exists already, so a failure here is reported, not undone (the catalog is derived: the
        next publish or search catches up)."""
        if self.catalog is None:
            return []
        try:
            self.catalog.sync(self.registry, known)
        except (CoralordError, OSError) as e:
            message = f"catalog not updated ({e}); run 'coralord catalog rebuild'"
            log.warning(message)
            return [message]
        return []


def analyse(data: Any, info: DatasetInfo, provenance: Provenance) -> _Analysed:
    """Normalize what a pipeline returned and compute what every later step needs from it, once."""
    metrics: dict[str, float] = {}
    if isinstance(data, Result):
        data, metrics = data.data, dict(data.metrics)
    if provenance.environment is not None:
        info = replace(info, environment=provenance.environment)
    table, produced_as = to_arrow(data)
    segments: list[Segment] | None = None
    if info.split_column and info.split_names:
        _check_splits(table, info)
        table, segments = group_by_split(table, info.split_column, info.split_names)
    return _Analysed(table, produced_as, metrics, info, segments)


def _kept_digest(previous: Manifest, a: _Analysed, w: _Written) -> str | None:
    """The digest of the new rows that hold ``previous``'s rows if the new version only added to it
    (the first rows of each of its splits, its columns only); None when there are no such rows."""
    positions = kept_rows(previous, a.segments, a.table.num_rows)
    columns = [f["name"] for f in previous.fields]
    if positions is None or not set(columns) <= set(a.table.column_names):
        return None
    if columns == a.table.column_names:
        return rows_digest(w.hashes[positions])
    kept = a.table.select(columns).take(pa.array(positions))
    return rows_digest(hash_rows(kept, w.chunking.row_hash))


def analyse_table(v: Versioned) -> pa.Table:
    """The table a :class:`Versioned` will be published as (rows grouped by split)."""
    return analyse(v.data, v.info, v.provenance).table


def check_quality(registry: Registry, info: DatasetInfo, table: pa.Table) -> list[CheckResult]:
    """``info``'s declared checks on ``table``; the change limits against the latest version's rows."""
    checks = info.checks or Checks()
    if info.key:  # a key identifies a row: it is unique
        checks = checks.model_copy(update={"unique": [*checks.unique, list(info.key)]})
    if not checks.declared:
        return []
    latest = registry.latest(info.name)
    return check_table(checks, table, registry.manifest(latest).rows if latest else None)


def draft_manifest(
    a: _Analysed, w: _Written, provenance: Provenance, checks: Sequence[CheckResult] = ()
) -> Manifest:
    """The manifest before its version is decided."""
    return Manifest(
        format=FORMAT,
        name=a.info.name,
        version="0.0.0",
        parts=w.parts,
        fields=schema_fields(a.table.schema),
        arrow_schema=encode_schema(a.table.schema),
        rows=a.table.num_rows,
        rows_digest=w.rows_digest,
        chunking=w.chunking.to_json(),
        metadata_digest=a.info.metadata_digest,
        created=_now(),
        produced_as=a.produced_as,
        derived_from=list(provenance.derived_from),
        sources=list(provenance.sources),
        code_version=provenance.code_version,
        run_id=provenance.run_id,
        metrics=a.metrics,
        checks=[r.to_json() for r in checks],
    )


def _check_splits(table: pa.Table, info: DatasetInfo) -> None:
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


def group_by_split(table: pa.Table, column: str, names: Sequence[str]) -> tuple[pa.Table, list[Segment]]:
    """The rows grouped by split, and each split's (offset, rows, name): parts never mix splits, so
    that a consumer reads one split by its parts' paths (Croissant split filters, TFDS).

    Rows whose splits are already contiguous stay where they are; otherwise the rows are ordered by
    the declared split order, each split keeping its rows' order.

    >>> t = pa.table({"split": ["test", "train", "test"], "x": [1, 2, 3]})
    >>> grouped, segments = group_by_split(t, "split", ["train", "test"])
    >>> grouped.column("x").to_pylist(), segments
    ([2, 1, 3], [(0, 1, 'train'), (1, 2, 'test')])
    """
    if table.num_rows == 0:
        return table, []
    codes = pc.index_in(table.column(column), pa.array(list(names), pa.string())).to_numpy(
        zero_copy_only=False
    )
    starts = np.concatenate(([0], np.flatnonzero(codes[1:] != codes[:-1]) + 1))
    if len(set(codes[starts].tolist())) != len(starts):  # a split in more than one run of rows
        order = np.argsort(codes, kind="stable")
        table, codes = table.take(pa.array(order)), codes[order]
        starts = np.concatenate(([0], np.flatnonzero(codes[1:] != codes[:-1]) + 1))
    ends = [*starts[1:].tolist(), table.num_rows]
    return table, [(int(a), int(b - a), names[int(codes[a])]) for a, b in zip(starts, ends, strict=True)]


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
