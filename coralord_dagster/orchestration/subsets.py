"""Subsets in Dagster: one dynamically partitioned asset per dataset, one partition per subset.

Subset definitions are read from disk when a run starts, and a sensor (running by default) registers
new ``subsets/*.yaml`` files as partitions and requests their first version, so a running deployment
picks up a new subset without a restart or a code change. A removed file's partition is dropped: its
updates stop, its published versions stay in the registry.

The same sensor keeps subsets current: a subset whose latest version was derived from an older parent
version than the parent's latest is rematerialized, and so is a ``params`` subset (built from the
source, e.g. a time window of a Zarr store) whose source fingerprint differs from the source's latest
observation (a store can change inside a window while the dataset's own window stays the same).
Lineage decides, not Dagster's eager condition: eager works per automation tick and misses a parent
update that lands in the same tick as the child's own materialization.

(Dagster cannot add assets to a running code location, hence partitions: the asset key is
``[dataset, "subsets"]`` and each partition publishes the dataset ``<dataset>/<subset>``.)
"""

import json
from collections.abc import Sequence
from typing import Any

import dagster as dg

from coralord_dagster.descriptor import LoadedDescriptor, LoadedSubset, load_subsets
from coralord_dagster.errors import DescriptorError
from coralord_dagster.naming import asset_key_path
from coralord_dagster.orchestration.io_manager import IO_MANAGER_KEY, SUBSETS_OF
from coralord_dagster.orchestration.resource import CoralordResource
from coralord_dagster.orchestration.sources import DATA_VERSION_TAG, source_key
from coralord_dagster.publish import Versioned
from coralord_dagster.status import SOURCE_CHANGED, subset_reason
from coralord_dagster.subsets import build_subset, subset_code_version
from coralord_dagster.workspace import Workspace


def partitions_name(dataset: str) -> str:
    return f"{dataset}_subsets"


def subsets_key(dataset: str) -> dg.AssetKey:
    return dg.AssetKey([*asset_key_path(dataset), "subsets"])


def subsets_job_name(dataset: str) -> str:
    return f"{dataset}_subsets_job"


def subsets_asset(desc: LoadedDescriptor) -> dg.AssetsDefinition:
    """The subsets asset of a dataset: partition ``s`` publishes ``<dataset>/s``."""

    @dg.asset(
        key=subsets_key(desc.name),
        deps=[dg.AssetKey(asset_key_path(desc.name))],
        partitions_def=dg.DynamicPartitionsDefinition(name=partitions_name(desc.name)),
        io_manager_key=IO_MANAGER_KEY,
        group_name=desc.group,
        kinds={"parquet", "duckdb"},
        description=(
            f"Subsets of {desc.name}: one partition per subset definition (in {desc.folder.name}/subsets/ "
            f"or the descriptor), each published as {desc.name}/<subset>."
        ),
        metadata={
            SUBSETS_OF: desc.name,
            "coralord/subsets_dir": dg.MetadataValue.path(str(desc.folder / "subsets")),
        },
    )
    def _subsets(context: dg.AssetExecutionContext, coralord: CoralordResource) -> Versioned:
        name = context.partition_key
        subsets = {s.spec.name: s for s in load_subsets(desc)}  # read now: new files need no restart
        if name not in subsets:
            raise DescriptorError(
                f"subset {name!r} of {desc.name} has no definition any more (in {desc.folder / 'subsets'} "
                "or the descriptor); its published versions stay in the registry"
            )
        sub = subsets[name]
        versioned, parent = build_subset(desc, sub, coralord.workspace(), run_id=context.run_id)
        context.log.info(
            f"{sub.full_name}: {versioned.data.num_rows} rows"
            + (
                " built from the source"
                if sub.spec.params is not None
                else f" from {parent.name} v{parent.version}"
            )
        )
        return versioned

    return _subsets


def subsets_sensor(
    descriptors: list[LoadedDescriptor],
    jobs: Sequence[Any],  # the jobs define_asset_job returns
    name: str = "coralord_subsets",
) -> dg.SensorDefinition:
    """Registers new subset files as partitions and requests a version for new or edited ones, as
    runs of each dataset's subsets job (``jobs``)."""

    @dg.sensor(
        name=name,
        jobs=jobs,
        default_status=dg.DefaultSensorStatus.RUNNING,
        minimum_interval_seconds=10,
        description="Picks up subset definitions added, edited or removed in a running deployment.",
    )
    def _sensor(context: dg.SensorEvaluationContext, coralord: CoralordResource) -> dg.SensorResult:
        seen: dict[str, str] = json.loads(context.cursor) if context.cursor else {}
        state = dict(seen)
        runs: list[dg.RunRequest] = []
        partition_requests: list[dg.AddDynamicPartitionsRequest | dg.DeleteDynamicPartitionsRequest] = []
        notes: list[str] = []
        for desc in descriptors:
            try:
                current = {s.spec.name: s for s in load_subsets(desc)}
            except DescriptorError as e:  # one bad file must not stop the others
                notes.append(str(e))
                continue
            pname = partitions_name(desc.name)
            existing = set(context.instance.get_dynamic_partitions(pname))
            added, removed = sorted(set(current) - existing), sorted(existing - set(current))
            if added:
                partition_requests.append(dg.AddDynamicPartitionsRequest(pname, added))
            if removed:
                partition_requests.append(dg.DeleteDynamicPartitionsRequest(pname, removed))
                for name in removed:
                    state.pop(f"{desc.name}/{name}", None)
            ws = coralord.workspace()
            parent = ws.registry.latest(desc.name)
            if parent is None:
                notes.append(f"{desc.name} has no published version yet; its subsets wait for it")
                continue
            observed = observed_fingerprint(context.instance, desc.name)
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
                runs.append(
                    dg.RunRequest(
                        run_key=f"{sub.full_name}@{code}@parent-v{parent.version}"
                        + (f"@source-{observed[:16]}" if sub.spec.params is not None and observed else ""),
                        job_name=subsets_job_name(desc.name),
                        partition_key=sub.spec.name,
                        tags={"coralord/reason": reason},
                    )
                )
        for note in notes:
            context.log.info(note)
        skip = None if runs else "; ".join(notes) or "no new or changed subset definitions"
        return dg.SensorResult(
            run_requests=runs,
            dynamic_partitions_requests=partition_requests,
            cursor=json.dumps(state, sort_keys=True),
            skip_reason=skip,
        )

    return _sensor


def observed_fingerprint(instance: dg.DagsterInstance, dataset: str) -> str | None:
    """The source fingerprint of the latest observation of ``dataset``'s source (None if none)."""
    record = instance.get_latest_data_version_record(source_key(dataset), is_source=True)
    observation = record.asset_observation if record is not None else None
    return (observation.tags or {}).get(DATA_VERSION_TAG) if observation is not None else None


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
