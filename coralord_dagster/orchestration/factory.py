"""Turn descriptor files into Dagster assets, asset checks and Definitions."""

import time
from collections.abc import Callable, Iterator, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import dagster as dg

from coralord_dagster.checks import CheckFailedError
from coralord_dagster.descriptor import (
    SUBSETS_DIR,
    Freshness,
    LoadedDescriptor,
    discover_descriptors,
    load_descriptor,
    load_subsets,
)
from coralord_dagster.naming import asset_key_path
from coralord_dagster.orchestration.docker import environment_runner
from coralord_dagster.orchestration.gate import (
    PARTS_INTACT,
    as_failure,
    gate_and_publish,
    parts_intact_result,
    quality_spec,
)
from coralord_dagster.orchestration.io_manager import IO_MANAGER_KEY, CoralordIOManager
from coralord_dagster.orchestration.reload import reload_sensor
from coralord_dagster.orchestration.resource import CoralordResource
from coralord_dagster.orchestration.sources import reachable_check, source_asset, source_key, sources_sensor
from coralord_dagster.orchestration.subsets import (
    new_subsets_job,
    subset_assets,
    subset_key,
    subsets_checks,
    subsets_job_name,
    subsets_sensor,
)
from coralord_dagster.sources import resolve_source
from coralord_dagster.use_case import build

DATASETS_JOB = "coralord_datasets_job"
#: A stage (``source.kind: dataset``) follows its upstream declaratively: it is requested once the
#: upstream's data version (its content id) changed since the stage was last requested or updated, and
#: neither is running. An unchanged upstream rematerialization keeps its data version: nothing runs.
STAGE_CONDITION = (
    dg.AutomationCondition.any_deps_match(dg.AutomationCondition.data_version_changed()).since(
        dg.AutomationCondition.newly_requested() | dg.AutomationCondition.newly_updated()
    )
    & ~dg.AutomationCondition.any_deps_in_progress()
    & ~dg.AutomationCondition.in_progress()
).with_label("upstream content changed")


def dataset_asset(desc: LoadedDescriptor) -> dg.AssetsDefinition:
    """The asset of one descriptor; ``code_version`` = hash(descriptor + pipeline source)."""
    desc.load_pipeline()  # fail at load time, in the UI, not in the middle of a run
    spec = desc.spec
    source = resolve_source(desc)
    # A stage (``source.kind: dataset``) depends on its upstream dataset's asset; others on their source.
    upstream = (
        dg.AssetKey(asset_key_path(source.options["dataset"]))
        if source.kind == "dataset"
        else source_key(desc.name)
    )

    key = dg.AssetKey(asset_key_path(spec.name))
    # Declared checks gate the version: they run on the built table before anything is published,
    # shown as one blocking asset check (a failure fails the run and publishes nothing).
    declared = sorted(spec.checks.model_dump(exclude_defaults=True, by_alias=True))

    @dg.asset(
        key=key,
        check_specs=[quality_spec(key, declared)] if spec.checks.declared else None,
        description=spec.description,
        code_version=desc.code_version(),
        deps=[upstream],
        io_manager_key=IO_MANAGER_KEY,
        group_name=desc.group,
        kinds={"parquet", "python"},
        owners=spec.owners or None,
        tags=spec.tags or None,
        freshness_policy=freshness_policy(spec.freshness),
        automation_condition=STAGE_CONDITION if source.kind == "dataset" else None,
        metadata={
            "coralord/descriptor": dg.MetadataValue.path(str(desc.path)),
            "coralord/source": source.uri,
            "coralord/license": spec.license,
            "coralord/pipeline": spec.pipeline,
            **({"coralord/environment": spec.environment.image} if spec.environment.image else {}),
        },
    )
    def _dataset(context: dg.AssetExecutionContext, coralord: CoralordResource) -> Iterator[Any]:
        # Re-read the descriptor: a running deployment builds what is on disk now.
        fresh = load_descriptor(desc.path, use_case=desc.use_case)
        runner, environment = environment_runner(context, fresh)
        versioned = build(
            fresh,
            context.run_id,
            context,
            workspace=coralord.workspace(),
            runner=runner,
            environment=environment,
        )
        try:
            # Published here, not by the IO manager: only the asset's own result can carry the data
            # version, which is the version's content id.
            yield from gate_and_publish(context, coralord, versioned, key)
        except CheckFailedError as e:
            raise as_failure(str(e)) from None

    return _dataset


def freshness_policy(freshness: Freshness | None) -> dg.FreshnessPolicy | None:
    """The descriptor's ``freshness`` as Dagster's time-window freshness policy."""
    if freshness is None:
        return None
    warn = freshness.warn_after_hours
    return dg.FreshnessPolicy.time_window(
        fail_window=timedelta(hours=freshness.fail_after_hours),
        warn_window=timedelta(hours=warn) if warn is not None else None,
    )


def dataset_checks(desc: LoadedDescriptor) -> dg.AssetChecksDefinition:
    """Checks that the latest version's parts are intact (sha256) after each materialization."""

    @dg.asset_check(
        asset=asset_key_path(desc.name),
        name=PARTS_INTACT,
        description="Every part of the latest version matches its sha256.",
    )
    def _parts_intact(coralord: CoralordResource) -> dg.AssetCheckResult:
        return parts_intact_result(coralord, desc.name, dg.AssetKey(asset_key_path(desc.name)))

    return _parts_intact


def build_definitions(
    use_cases: Path | str | Sequence[LoadedDescriptor],
    *,
    resource: CoralordResource | None = None,
    clock: Callable[[], float] = time.time,
    io_manager: CoralordIOManager | None = None,
    scope: str | None = None,
) -> dg.Definitions:
    """Definitions for a folder of use cases (``<use_case>/descriptor.yaml``) or loaded descriptors.

    Per dataset: its asset and ``parts_intact`` check; one asset per subset (``[dataset, subset]``,
    with its own checks), ``<name>_subsets_job`` and ``<name>_new_subsets_job``; for all:
    ``coralord_datasets_job`` and the source and subset sensors (running by default, so a deployment
    rebuilds datasets when their source or code changes, and keeps subsets current).
    ``clock`` tells the source sensor the time (tests pass their own). ``scope`` (a dataset's name)
    suffixes the shared job and sensor names, so that the definitions of several datasets built one at
    a time (``dg`` components) merge; ``io_manager`` then is the one they share.
    """
    suffix = f"__{scope}" if scope else ""
    descriptors = discover_descriptors(use_cases) if isinstance(use_cases, (str, Path)) else list(use_cases)
    resource = resource or CoralordResource()
    dataset_keys = [dg.AssetKey(asset_key_path(d.name)) for d in descriptors]
    # The job observes the sources before it builds: each version then records the source data
    # version it was built from, and the sensors' later observations of the same source agree with it
    # (a dataset built before any observation shows "Unsynced" as soon as the source is observed).
    source_keys = [source_key(d.name) for d in descriptors if resolve_source(d).kind != "dataset"]
    stage_keys = [
        dg.AssetKey(asset_key_path(d.name)) for d in descriptors if resolve_source(d).kind == "dataset"
    ]
    datasets_job = dg.define_asset_job(
        DATASETS_JOB + suffix,
        selection=dg.AssetSelection.assets(*dataset_keys)
        | dg.AssetSelection.assets(*source_keys).without_checks(),
        description="Observes the sources, then builds and publishes every dataset.",
    )
    # Subset assets only where subsets are declared (inline, or a subsets/ folder, where new files
    # appear in a running deployment): no empty nodes for datasets that have none.
    subsets = {d.name: load_subsets(d) for d in descriptors}
    with_subsets = [d for d in descriptors if subsets[d.name] or (d.folder / SUBSETS_DIR).is_dir()]
    listed = [d for d in with_subsets if subsets[d.name]]
    subsets_jobs = [
        dg.define_asset_job(
            subsets_job_name(d.name),
            selection=dg.AssetSelection.assets(*(subset_key(d.name, s.spec.name) for s in subsets[d.name])),
            description=f"Publishes the subsets of {d.name}.",
        )
        for d in listed
    ]
    new_jobs = [new_subsets_job(d, resource) for d in with_subsets]
    return dg.Definitions(
        assets=[
            *(source_asset(d) for d in descriptors if resolve_source(d).kind != "dataset"),
            *(dataset_asset(d) for d in descriptors),
            *(subset_assets(d, subsets[d.name]) for d in listed),
        ],
        asset_checks=[
            *(dataset_checks(d) for d in descriptors),
            *(reachable_check(d) for d in descriptors if resolve_source(d).kind != "dataset"),
            *(subsets_checks(d, subsets[d.name]) for d in listed),
        ],
        jobs=[datasets_job, *subsets_jobs, *new_jobs],
        sensors=[
            # Runs they start belong to named jobs, not to an anonymous asset selection.
            sources_sensor(descriptors, clock, name=f"coralord_sources{suffix}", job=datasets_job),
            reload_sensor([d.name for d in descriptors], f"coralord_reload{suffix}"),
            *(
                [
                    dg.AutomationConditionSensorDefinition(
                        f"coralord_automation{suffix}",
                        target=dg.AssetSelection.assets(*stage_keys),
                        default_status=dg.DefaultSensorStatus.RUNNING,
                        description="Rebuilds each stage when its upstream dataset's content changed.",
                    )
                ]
                if stage_keys
                else []
            ),
            *(
                [
                    subsets_sensor(
                        with_subsets,
                        {d.name: {s.spec.name for s in subsets[d.name]} for d in with_subsets},
                        [*subsets_jobs, *new_jobs],
                        name=f"coralord_subsets{suffix}",
                    )
                ]
                if with_subsets
                else []
            ),
        ],
        resources={"coralord": resource, IO_MANAGER_KEY: io_manager or CoralordIOManager(coralord=resource)},
    )
