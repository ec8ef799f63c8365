"""Subsets: computed with DuckDB over the parent version's parts, published as datasets of their own.

A subset reads only the columns it needs and lets its predicate (and split) prune row groups in the
parent's parts, so the parent is never loaded whole. Sampling is deterministic: rows are ranked by a
hash of their content and the seed, so a row's fate does not depend on its position, and the result
keeps the parent's row order unless ``order_by`` says otherwise.
"""

from __future__ import annotations

import hashlib
from typing import Any

import pyarrow as pa

from coralord_dagster.client import DatasetVersion, open_dataset
from coralord_dagster.descriptor import LoadedDescriptor, LoadedSubset, SubsetSpec, load_subsets
from coralord_dagster.duck import query_arrow, sandboxed_query
from coralord_dagster.errors import DescriptorError
from coralord_dagster.model import DatasetInfo, ParentRef, Provenance
from coralord_dagster.publish import PublishResult, Result, Versioned, to_arrow
from coralord_dagster.reader import read_parts
from coralord_dagster.rowhash import sample_keys
from coralord_dagster.sql import QueryError, check_predicate, quote_ident, sql_literal, validate_query
from coralord_dagster.use_case import (
    Runner,
    dataset_info,
    in_process,
    params_record,
    provenance,
    run_pipeline,
)
from coralord_dagster.workspace import Workspace

INDEX = "__coralord_row"
KEY = "__coralord_sample_key"


def subset_predicate(spec: SubsetSpec, split_column: str | None) -> str | None:
    """The row filter of a subset: its ``where`` and its ``split``, combined."""
    clauses = []
    if spec.where:
        clauses.append(f"({spec.where})")
    if spec.split:
        if not split_column:
            raise DescriptorError(f"subset {spec.name!r}: field 'split': the dataset declares no splits")
        clauses.append(f"{quote_ident(split_column)} = {sql_literal(spec.split)}")
    return " AND ".join(clauses) or None


def compute_subset(parent: DatasetVersion, spec: SubsetSpec, split_column: str | None = None) -> pa.Table:
    """The subset's rows, read from ``parent``'s parts with the predicate pushed down."""
    schema = parent.manifest.schema
    what = f"subset {parent.name}/{spec.name}"
    needed: list[str] | None = None
    if spec.columns:
        extra = [c for c in [*(spec.order_by or []), spec.sample.per if spec.sample else None] if c]
        needed = list(dict.fromkeys([*spec.columns, *extra]))
    for col in [*(spec.order_by or []), *([spec.sample.per] if spec.sample and spec.sample.per else [])]:
        if col not in schema.names:
            raise QueryError(f"{what}: unknown column {col!r}; columns: {schema.names}")
    ws = parent.workspace
    table, _ = read_parts(
        ws.store,
        parent.manifest.parts,
        schema,
        columns=needed,
        where=subset_predicate(spec, split_column),
        cache=None if ws.store.is_local else ws.cache,
        what=what,
    )
    if spec.sample is None and not spec.order_by:
        return table.select(spec.columns) if spec.columns else table
    return _sample_and_order(table, spec)


def _sample_and_order(table: pa.Table, spec: SubsetSpec) -> pa.Table:
    metadata = table.schema.metadata
    indexed = table.append_column(INDEX, pa.array(range(table.num_rows), pa.int64()))
    sql = "SELECT * FROM t"
    if spec.sample is not None:
        s = spec.sample
        # rows are drawn in the order of a seeded hash of their values (coralord's own, pinned: a DuckDB
        # upgrade must not change which rows a subset holds)
        indexed = indexed.append_column(KEY, pa.array(sample_keys(table, int(s.seed)), pa.uint64()))
        partition = f"PARTITION BY {quote_ident(s.per)}" if s.per else ""
        keep = f"ceil({s.fraction} * count(*) OVER ({partition}))" if s.fraction else str(s.n)
        rank = f"row_number() OVER ({partition} ORDER BY {KEY}, {INDEX})"
        sql += f" QUALIFY {rank} <= {keep}"
    order = ", ".join(quote_ident(c) for c in spec.order_by or []) or INDEX
    sql += f" ORDER BY {order}, {INDEX}" if spec.order_by else f" ORDER BY {INDEX}"
    out = query_arrow(indexed, sql).select(table.column_names).cast(table.schema)
    out = out.replace_schema_metadata(metadata)
    return out.select(spec.columns) if spec.columns else out


def subset_info(desc: LoadedDescriptor, sub: LoadedSubset, parent: DatasetVersion) -> DatasetInfo:
    """What the subset's Croissant says: the parent's documentation, narrowed to the subset."""
    base = dataset_info(desc)
    spec = sub.spec
    kept = spec.columns or [f["name"] for f in parent.manifest.fields]
    split_names = base.split_names
    if spec.split:
        split_names = tuple(n for n in split_names if n == spec.split)
    split_column = base.split_column if base.split_column in kept else None
    description = spec.description or (
        f"Subset {spec.name!r} of {desc.name} v{parent.version}: " + _describe(spec, base.split_column)
    )
    digest = hashlib.sha256(f"{base.metadata_digest}\0{sub.text}\0{parent.version}".encode()).hexdigest()[:16]
    return DatasetInfo(
        name=sub.full_name,
        description=description,
        license=base.license,
        url=base.url,
        citation=base.citation,
        keywords=base.keywords,
        creator=base.creator,
        publisher=base.publisher,
        split_column=split_column,
        split_names=split_names if split_column else (),
        columns={k: v for k, v in base.columns.items() if k in kept},
        pipeline=f"subset of {desc.name}",
        environment=base.environment,
        descriptor_text=sub.text,
        metadata_digest=digest,
        checks=spec.checks if spec.checks is not None and spec.checks.declared else None,
        key=base.key if set(base.key) <= set(kept) else (),
    )


def _describe(spec: SubsetSpec, split_column: str | None) -> str:
    bits = []
    if spec.split:
        bits.append(f"split {spec.split}")
    if spec.where:
        bits.append(f"rows where {spec.where}")
    if spec.sample:
        size = f"{spec.sample.fraction:.0%}" if spec.sample.fraction else f"{spec.sample.n} rows"
        bits.append(f"a {size} sample" + (f" per {spec.sample.per}" if spec.sample.per else ""))
    if spec.columns:
        bits.append(f"columns {', '.join(spec.columns)}")
    if spec.params is not None:
        bits.insert(0, "built from the source with " + ", ".join(f"{k}={v}" for k, v in spec.params.items()))
    return "; ".join(bits) or "all rows"


def subset_code_version(desc: LoadedDescriptor, sub: LoadedSubset) -> str:
    """A row subset changes with its definition; a params subset also with the pipeline code."""
    if sub.spec.params is None:
        return sub.digest()
    return hashlib.sha256(f"{sub.digest()}\0{desc.code_version()}".encode()).hexdigest()[:16]


def subset_provenance(
    desc: LoadedDescriptor, sub: LoadedSubset, parent: DatasetVersion, run_id: str | None = None
) -> Provenance:
    """Lineage: the parent version, and for a params subset the source it was built from."""
    definition: dict[str, Any] = sub.spec.model_dump(mode="json", exclude_none=True)
    sources = []
    if sub.spec.params is not None:
        source = provenance(desc).sources[0]
        source.params = params_record(desc, sub.spec.params, sub.path)
        sources.append(source)
    return Provenance(
        derived_from=[
            ParentRef(
                name=parent.name,
                version=parent.version,
                content_id=parent.manifest.content_id,
                relation="subsetOf",
                subset=definition,
            )
        ],
        sources=sources,
        code_version=subset_code_version(desc, sub),
        run_id=run_id,
    )


def compute_params_subset(
    desc: LoadedDescriptor, sub: LoadedSubset, ws: Workspace, runner: Runner = in_process
) -> pa.Table:
    """A params subset: the pipeline run with the subset's params (it reads only what they select),
    then the subset's own ``where``/``columns``/``sample``/``order_by`` over the result."""
    spec = sub.spec
    data = run_pipeline(desc, params=spec.params, params_from=sub.path, workspace=ws, runner=runner)
    table, _ = to_arrow(data.data if isinstance(data, Result) else data)
    if spec.where:
        validate_query(table.schema, None, spec.where, f"subset {sub.full_name}")
        table = sandboxed_query(table, f"SELECT * FROM t WHERE (\n{spec.where}\n)").cast(table.schema)
    if spec.sample is None and not spec.order_by:
        return table.select(spec.columns) if spec.columns else table
    return _sample_and_order(table, spec)


def check_subset_predicates(desc: LoadedDescriptor) -> list[LoadedSubset]:
    """The descriptor's subsets, each ``where`` checked for what it may contain (its columns are checked
    against the parent's schema when the subset is built): ``coralord validate`` refuses a hostile subset
    file before anything runs."""
    subsets = load_subsets(desc)
    for sub in subsets:
        if sub.spec.where:
            check_predicate(sub.spec.where, None, f"subset {sub.full_name} ({sub.path})")
    return subsets


def build_subset(
    desc: LoadedDescriptor,
    sub: LoadedSubset,
    ws: Workspace,
    parent_version: str = "latest",
    run_id: str | None = None,
    runner: Runner = in_process,
) -> tuple[Versioned, DatasetVersion]:
    """A subset ready to publish, computed from the parent's ``parent_version`` (default latest), or
    for a params subset built by the pipeline from the source."""
    parent = open_dataset(desc.name, parent_version, workspace=ws)
    split_column = desc.spec.splits.column if desc.spec.splits else None
    prov = subset_provenance(desc, sub, parent, run_id)  # before reading: the fingerprint covers the read
    if sub.spec.params is not None:
        table = compute_params_subset(desc, sub, ws, runner)
    else:
        table = compute_subset(parent, sub.spec, split_column)
    versioned = Versioned(table, subset_info(desc, sub, parent), prov, part_rows=desc.spec.storage.part_rows)
    return versioned, parent


def publish_subset(
    desc: LoadedDescriptor, sub: LoadedSubset, ws: Workspace, run_id: str | None = None
) -> PublishResult:
    """Compute a subset (from the parent's latest version) and publish it (no Dagster needed)."""
    v, _ = build_subset(desc, sub, ws, run_id=run_id)
    return ws.publisher().publish(v.data, v.info, v.provenance, part_rows=v.part_rows)
