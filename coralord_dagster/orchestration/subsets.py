"""Subsets in Dagster: every subset is an asset under its own name, ``[dataset, subset]``.

All subsets of one dataset are one ``multi_asset`` (subsettable), so a parent update refreshes its
stale subsets in one run of ``<dataset>_subsets_job``, and each subset still has its own lineage,
materialization history, code version (its definition) and checks (``parts_intact`` and, when the
subset file declares ``checks:``, the blocking ``quality`` gate). Definitions are read from disk when a
run starts: a run builds what the file says now.

A running deployment picks up a new ``subsets/*.yaml`` without a restart or a code change: the
``coralord_subsets`` sensor (running by default) publishes it through ``<dataset>_new_subsets_job``,
which records the version's materialization under the subset's own asset key, so it appears in the
asset catalog and in search at once; its lineage edge and checks appear when the code location is
next reloaded (Dagster cannot add an asset definition to a loaded code location), which the
``coralord_reload`` sensor does when the webserver is known (``CORALORD_DAGSTER_WEBSERVER``). A removed file's
asset fails with a clear error until that reload; its published versions stay in the registry.
Nothing in the UI can create a subset that has no file: there are no partitions to add.

The same sensor keeps subsets current by lineage: a subset whose latest version was derived from an
older parent version than the parent's latest is rematerialized, and so is a ``params`` subset (built
from the source, e.g. a time window of a Zarr store) whose source fingerprint differs from the
source's latest observation. Lineage decides, not Dagster's eager condition: eager works per
automation tick and misses a parent update that lands in the same tick as the child's own
materialization. What is stale and why is decided in :mod:`coralord_dagster.status`.
"""

import hashlib
import json
from collections.abc import Iterator, Sequence
from typing import Any

import dagster as dg

from coralord_dagster.checks import CheckFailedError
from coralord_dagster.descriptor import LoadedDescriptor, LoadedSubset, load_subsets
from coralord_dagster.naming import asset_key_path
from coralord_dagster.orchestration.gate import (
    PARTS_INTACT,
    as_failure,
    gate_and_publish,
    parts_intact_result,
    quality_spec,
)
from coralord_dagster.orchestration.reload import reload_tags
from coralord_dagster.orchestration.resource import CoralordResource
from coralord_dagster.orchestration.sources import observed_fingerprint, source_key
from coralord_dagster.sources import resolve_source
from coralord_dagster.status import SOURCE_CHANGED, subset_reason
from coralord_dagster.subsets import build_subset, subset_code_version
from coralord_dagster.workspace import Workspace


def subset_key(dataset: str, subset: str) -> dg.AssetKey:
    return dg.AssetKey([*asset_key_path(dataset), subset])


def subsets_job_name(dataset: str) -> str:
    return f"{_op_name(dataset)}_subsets_job"


def new_subsets_job_name(dataset: str) -> str:
    return f"{_op_name(dataset)}_new_subsets_job"


def _op_name(dataset: str) -> str:
    return dataset.replace("/", "__")


def subset_spec(desc: LoadedDescriptor, sub: LoadedSubset) -> dg.AssetSpec:
    parent = dg.AssetKey(asset_key_path(desc.name))
    # A params subset is built by the pipeline from the source: it depends on the source too.
    builds_from_source = sub.spec.params is not None and resolve_source(desc).kind != "dataset"
    definition = sub.spec.model_dump(mode="json", exclude_none=True, exclude={"name", "description"})
    return dg.AssetSpec(
        key=subset_key(desc.name, sub.spec.name),
        deps=[parent, *([source_key(desc.name)] if builds_from_source else [])],
        description=(sub.spec.description or f"Subset {sub.spec.name} of {desc.name}.")
        + f"\n\nPublished as `{sub.full_name}`; defined in `{sub.path.name}`:\n\n```json\n"
        + (json.dumps(definition, indent=1, sort_keys=True) if definition else "{}  # all rows")
        + "\n```",
        code_version=subset_code_version(desc, sub),
        group_name=desc.group,
        kinds={"parquet", "duckdb"},
        owners=desc.spec.owners or None,
        tags=desc.spec.tags or None,
        metadata={
            "coralord/subset_of": desc.name,
            "coralord/definition_file": dg.MetadataValue.path(str(sub.path)),
            "coralord/definition": dg.MetadataValue.json(definition),
        },
    )


def subset_assets(desc: LoadedDescriptor, subsets: Sequence[LoadedSubset]) -> dg.AssetsDefinition:
    """All subsets of ``desc`` known now, as one subsettable multi-asset (one run refreshes many)."""
    specs = [subset_spec(desc, s) for s in subsets]
    gates = [
        quality_spec(spec.key, sorted(s.spec.checks.model_dump(exclude_defaults=True, by_alias=True)))
        for spec, s in zip(specs, subsets, strict=True)
        if s.spec.checks is not None and s.spec.checks.declared
    ]
    names = {spec.key: s.spec.name for spec, s in zip(specs, subsets, strict=True)}

    @dg.multi_asset(
        name=f"{_op_name(desc.name)}_subsets",
        specs=specs,
        check_specs=gates or None,
        can_subset=True,
        description=f"The subsets of {desc.name}, each published as {desc.name}/<subset>.",
    )
    def _subsets(context: dg.AssetExecutionContext, coralord: CoralordResource) -> Iterator[Any]:
        wanted = [name for key, name in names.items() if key in context.selected_asset_keys]
        yield from _publish(context, coralord, desc, wanted, listed=True)

    return _subsets


class NewSubsets(dg.Config):
    """The subset files added since the code location was loaded, to publish now."""

    subsets: list[str]


def new_subsets_job(desc: LoadedDescriptor, resource: CoralordResource) -> dg.JobDefinition:
    """Publishes subsets whose files appeared after the code location was loaded, under their names.
    (``resource`` is bound here: a job the Definitions had to bind would be rebuilt with its sensor.)"""

    @dg.op(name=f"{_op_name(desc.name)}_new_subsets", out={})
    def _publish_new(context: dg.OpExecutionContext, config: NewSubsets, coralord: CoralordResource) -> Any:
        yield from _publish(context, coralord, desc, config.subsets, listed=False)

    @dg.job(
        name=new_subsets_job_name(desc.name),
        resource_defs={"coralord": resource},
        description=f"Publishes subsets of {desc.name} added to a running deployment (reload to list them).",
    )
    def _job() -> None:
        _publish_new()

    return _job


def _publish(
    context: dg.AssetExecutionContext | dg.OpExecutionContext,
    coralord: CoralordResource,
    desc: LoadedDescriptor,
    wanted: list[str],
    listed: bool,
) -> Iterator[Any]:
    """Build and publish each wanted subset from its file on disk now; a failed gate or a missing
    definition fails the run after the others are published."""
    subsets = {s.spec.name: s for s in load_subsets(desc)}  # read now: a run builds the file's current text
    problems: list[str] = []
    for name in wanted:
        sub = subsets.get(name)
        if sub is None:
            problems.append(
                f"subset {name!r} of {desc.name} has no definition any more (in {desc.folder / 'subsets'} "
                "or the descriptor): reload the code location; its published versions stay in the registry"
            )
            continue
        versioned, parent = build_subset(desc, sub, coralord.workspace(), run_id=context.run_id)
        context.log.info(
            f"{sub.full_name}: {versioned.data.num_rows} rows"
            + (
                " built from the source"
                if sub.spec.params is not None
                else f" from {parent.name} v{parent.version}"
            )
        )
        extra = {
            "coralord/parent": f"{parent.name} v{parent.version}",
            "coralord/parent_content_id": parent.manifest.content_id,
            "coralord/definition": dg.MetadataValue.json(
                sub.spec.model_dump(mode="json", exclude_none=True, exclude={"name", "description"})
            ),
        }
        key = subset_key(desc.name, name) if listed else None
        try:
            yield from gate_and_publish(context, coralord, versioned, key, extra)
        except CheckFailedError as e:
            problems.append(str(e))
    if problems:
        raise as_failure("\n".join(problems))


def subsets_checks(desc: LoadedDescriptor, subsets: Sequence[LoadedSubset]) -> dg.AssetChecksDefinition:
    """``parts_intact`` for every listed subset of ``desc`` (one definition, run per selected subset)."""
    keys = {subset_key(desc.name, s.spec.name): s.full_name for s in subsets}

    @dg.multi_asset_check(
        name=f"{_op_name(desc.name)}_subsets_parts_intact",
        specs=[
            dg.AssetCheckSpec(
                PARTS_INTACT, asset=k, description="Every part of the latest version matches its sha256."
            )
            for k in keys
        ],
        can_subset=True,
    )
    def _checks(context: dg.AssetCheckExecutionContext, coralord: CoralordResource) -> Iterator[Any]:
        for check in context.selected_asset_check_keys:
            yield parts_intact_result(coralord, keys[check.asset_key], check.asset_key)

    return _checks


def subsets_sensor(
    descriptors: list[LoadedDescriptor],
    listed: dict[str, set[str]],
    jobs: Sequence[Any],  # the jobs define_asset_job and new_subsets_job return
    name: str = "coralord_subsets",
) -> dg.SensorDefinition:
    """Requests, per dataset, one run for its listed subsets that are stale (``<dataset>_subsets_job``)
    and one for subset files added since the code location was loaded (``<dataset>_new_subsets_job``).
    ``listed``: the subset names each dataset's definitions hold."""

    @dg.sensor(
        name=name,
        jobs=jobs,
        default_status=dg.DefaultSensorStatus.RUNNING,
        minimum_interval_seconds=10,
        description="Keeps subsets current (parent updates, edited definitions) and publishes subset "
        "files added to a running deployment.",
    )
    def _sensor(context: dg.SensorEvaluationContext, coralord: CoralordResource) -> dg.SensorResult:
        seen: dict[str, str] = json.loads(context.cursor) if context.cursor else {}
        state = dict(seen)
        runs: list[dg.RunRequest] = []
        notes: list[str] = []
        for desc in descriptors:
            try:
                runs += _dataset_runs(
                    context, coralord.workspace(), desc, listed.get(desc.name, set()), seen, state, notes
                )
            except Exception as e:  # one dataset's failure must not stop the others
                notes.append(f"{desc.name}: {e}")
        for note in notes:
            context.log.info(note)
        skip = None if runs else "; ".join(notes) or "no new or changed subset definitions"
        return dg.SensorResult(run_requests=runs, cursor=json.dumps(state, sort_keys=True), skip_reason=skip)

    return _sensor


def _dataset_runs(
    context: dg.SensorEvaluationContext,
    ws: Workspace,
    desc: LoadedDescriptor,
    listed: set[str],
    seen: dict[str, str],
    state: dict[str, str],
    notes: list[str],
) -> list[dg.RunRequest]:
    """The (at most two) runs one dataset's subsets need now; ``state`` records what was requested."""
    current = {s.spec.name: s for s in load_subsets(desc)}
    for gone in sorted(set(seen_names(seen, desc.name)) - set(current)):
        state.pop(f"{desc.name}/{gone}", None)
        state.pop(f"{desc.name}/{gone}#source", None)
    if removed := sorted(listed - set(current)):
        notes.append(
            f"{desc.name}: subset file(s) removed: {', '.join(removed)} (reload the code location to "
            "drop their assets; their versions stay)"
        )
    parent = ws.registry.latest(desc.name)
    if parent is None:
        notes.append(f"{desc.name} has no published version yet; its subsets wait for it")
        return []
    observed = observed_fingerprint(context.instance, desc.name)
    stale: dict[str, tuple[str, str]] = {}  # subset -> (reason, run-key part)
    for sub in current.values():
        code = subset_code_version(desc, sub)
        reason = _stale(ws, sub, code, seen.get(sub.full_name), str(parent.version), observed)
        if reason is None:
            continue
        if reason == SOURCE_CHANGED:  # once per observed fingerprint (the content may be the same)
            if seen.get(f"{sub.full_name}#source") == observed:
                continue
            state[f"{sub.full_name}#source"] = observed or ""
        state[sub.full_name] = code
        context.log.info(f"{sub.full_name}: {reason}")
        source = f"@source-{observed[:16]}" if sub.spec.params is not None and observed else ""
        stale[sub.spec.name] = (reason, f"{sub.full_name}@{code}@parent-v{parent.version}{source}")
    runs = []
    old = sorted(n for n in stale if n in listed)
    new = sorted(n for n in stale if n not in listed)
    if old:
        runs.append(
            dg.RunRequest(
                run_key=_run_key(stale, old),
                job_name=subsets_job_name(desc.name),
                asset_selection=[subset_key(desc.name, n) for n in old],
                tags={"coralord/reason": _reasons(stale, old)},
            )
        )
    if new:
        notes.append(
            f"{desc.name}: new subset file(s) {', '.join(new)} published under their names; their "
            "lineage and checks appear once the code location reloads"
        )
        runs.append(
            dg.RunRequest(
                run_key=_run_key(stale, new),
                job_name=new_subsets_job_name(desc.name),
                run_config={"ops": {f"{_op_name(desc.name)}_new_subsets": {"config": {"subsets": new}}}},
                tags={
                    "coralord/reason": _reasons(stale, new),
                    **reload_tags(
                        context, desc.name
                    ),  # then coralord_reload lists them with lineage and checks
                },
            )
        )
    return runs


def seen_names(seen: dict[str, str], dataset: str) -> list[str]:
    prefix = f"{dataset}/"
    return [k[len(prefix) :] for k in seen if k.startswith(prefix) and "#" not in k]


def _run_key(stale: dict[str, tuple[str, str]], names: list[str]) -> str:
    """The same changes give the same key: a restarted sensor never runs them twice."""
    return hashlib.sha256("\n".join(stale[n][1] for n in names).encode()).hexdigest()[:32]


def _reasons(stale: dict[str, tuple[str, str]], names: list[str]) -> str:
    text = "; ".join(f"{n}: {stale[n][0]}" for n in names)
    return text if len(text) <= 250 else text[:247] + "..."


def _stale(
    ws: Workspace,
    sub: LoadedSubset,
    code: str,
    seen_code: str | None,
    parent_version: str,
    observed: str | None = None,
) -> str | None:
    """Why a subset needs a new version now, or None if it is current: a change of its definition (or,
    for a params subset, of the pipeline) this sensor saw, else what :func:`subset_reason` decides."""
    if seen_code is not None and seen_code != code:
        return "its definition (or, for a params subset, the pipeline) changed"
    return subset_reason(ws, sub, parent_version, observed)
