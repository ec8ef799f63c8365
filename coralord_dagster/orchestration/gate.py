"""The steps every coralord asset shares: gate a built version on its declared checks, then publish it.

A dataset asset and a subset asset both run the declared checks on the built table before anything is
tagged, report them as the blocking ``quality`` asset check, publish, and report the version's content
id as the materialization's data version (the same content, the same data version).
"""

from collections.abc import Iterator
from typing import Any

import dagster as dg

from coralord_dagster.checks import CheckResult, raise_on_failure
from coralord_dagster.client import open_dataset
from coralord_dagster.orchestration.io_manager import report
from coralord_dagster.orchestration.resource import CoralordResource
from coralord_dagster.publish import PublishResult, Versioned, analyse_table, check_quality

#: The blocking asset check of a dataset's (or subset's) declared checks.
QUALITY_CHECK = "quality"
#: The check that the latest version's parts match their sha256.
PARTS_INTACT = "parts_intact"


def quality_spec(key: dg.AssetKey, declared: list[str]) -> dg.AssetCheckSpec:
    return dg.AssetCheckSpec(
        QUALITY_CHECK,
        asset=key,
        blocking=True,
        description="The declared checks, run before the version is published: " + ", ".join(declared),
    )


def quality_result(key: dg.AssetKey, results: list[CheckResult]) -> dg.AssetCheckResult:
    """The declared checks' outcome as one asset check result: failed when any check failed."""
    failed = [r for r in results if not r.passed]
    return dg.AssetCheckResult(
        asset_key=key,
        check_name=QUALITY_CHECK,
        passed=not failed,
        severity=dg.AssetCheckSeverity.ERROR,
        description="; ".join(f"{r.name}: {r.message}" for r in failed) or f"{len(results)} check(s) passed",
        metadata={
            "coralord/failed": dg.MetadataValue.json([r.name for r in failed]),
            "coralord/checks": dg.MetadataValue.json([r.to_json() for r in results]),
        },
    )


def parts_intact_result(coralord: CoralordResource, name: str, key: dg.AssetKey) -> dg.AssetCheckResult:
    """Whether every part of ``name``'s latest version matches its sha256."""
    ds = open_dataset(name, workspace=coralord.workspace())
    problems = ds.verify()
    return dg.AssetCheckResult(
        asset_key=key,
        check_name=PARTS_INTACT,
        passed=not problems,
        metadata={
            "coralord/version": f"v{ds.version}",
            "coralord/parts": len(ds.manifest.parts),
            "problems": dg.MetadataValue.json(problems),
        },
    )


def gate_and_publish(
    context: dg.AssetExecutionContext | dg.OpExecutionContext,
    coralord: CoralordResource,
    versioned: Versioned,
    key: dg.AssetKey | None,
    extra_metadata: dict[str, Any] | None = None,
) -> Iterator[Any]:
    """Yield the ``quality`` check result (when the asset ``key`` has it selected) and, if the checks
    pass, the published version's materialization; raise :class:`CheckFailedError` if they fail.

    With ``key=None`` (an asset the code location does not list yet) the version is published and
    reported as a runtime ``AssetMaterialization`` under its own name.
    """
    workspace = coralord.workspace()
    name = versioned.info.name
    results = check_quality(workspace.registry, versioned.info, analyse_table(versioned))
    if key is not None and dg.AssetCheckKey(key, QUALITY_CHECK) in _selected_checks(context):
        yield quality_result(key, results)
    raise_on_failure(results, name)
    result = workspace.publisher().publish(
        versioned.data,
        versioned.info,
        versioned.provenance,
        part_rows=versioned.part_rows,
        check_results=results,
    )
    metadata = {**(extra_metadata or {}), **report(context.log, coralord, name, result, versioned.info)}
    if key is None:
        yield dg.AssetMaterialization(asset_key=name.split("/"), metadata=metadata)
    else:
        yield materialized(key, result, metadata)


def materialized(key: dg.AssetKey, result: PublishResult, metadata: dict[str, Any]) -> dg.MaterializeResult:
    return dg.MaterializeResult(
        asset_key=key, data_version=dg.DataVersion(result.manifest.content_id), metadata=metadata
    )


def _selected_checks(context: dg.AssetExecutionContext | dg.OpExecutionContext) -> set[dg.AssetCheckKey]:
    return set(context.selected_asset_check_keys) if isinstance(context, dg.AssetExecutionContext) else set()


def as_failure(message: str) -> dg.Failure:
    """A failed gate: the run fails (no retry: the same data fails again) and nothing is published."""
    return dg.Failure(description=message, allow_retries=False)
