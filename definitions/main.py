"""The main job: materialize every use case offline into the embedded registry and show the result.

Run as ``python -m definitions.main``. Sources are pointed at fixtures generated in their upstream
layout under ``.coralord/fixtures/`` (each use case's ``fixture.py``), unless ``CORALORD_SOURCE__<NAME>``
already points somewhere. Runs are recorded in the Dagster instance at ``$DAGSTER_HOME`` (default
``.coralord/dagster``), so ``dagster dev -w workspace.yaml`` shows them afterwards.
"""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import dagster as dg

HOME = Path(".coralord")


def prepare_fixtures(use_cases: Path, dest: Path) -> dict[str, str]:
    """Generate each use case's offline fixture once and point its source at it."""
    from coralord_dagster.descriptor import discover_descriptors
    from coralord_dagster.sources import override_variable, resolve_source

    overrides = {}
    for desc in discover_descriptors(use_cases):
        var = override_variable(desc.name)
        module_name = f"use_cases.{desc.group}.fixture"
        if os.environ.get(var) or resolve_source(desc).kind == "dataset":
            continue  # relocated already, or a stage that reads another dataset
        if not (use_cases / desc.group / "fixture.py").exists():
            continue
        target = dest / desc.name
        if not target.exists():
            importlib.import_module(module_name).make_fixture(target)
        overrides[var] = str(target.resolve())
    os.environ.update(overrides)
    return overrides


def report(result: dg.ExecuteInProcessResult) -> bool:
    """Print one line per materialization (its coralord status) and whether the run succeeded."""
    for event in result.all_events:
        if event.event_type_value == "ASSET_MATERIALIZATION":
            mat = event.event_specific_data.materialization
            status = mat.metadata.get("coralord/status")
            dataset = mat.metadata.get("coralord/dataset")
            name = dataset.value if dataset else mat.asset_key.to_user_string()
            print(f"{name}: {status.value if status else 'materialized'}")
    return result.success


def main() -> int:
    os.environ.setdefault("DAGSTER_HOME", str((HOME / "dagster").resolve()))
    home = Path(os.environ["DAGSTER_HOME"])
    home.mkdir(parents=True, exist_ok=True)
    if not (home / "dagster.yaml").exists():
        (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    import dagster as dg

    from coralord_dagster import cli
    from definitions import USE_CASES

    for var, path in prepare_fixtures(USE_CASES, HOME / "fixtures").items():
        print(f"offline source: {var}={path}")
    from coralord_dagster.descriptor import discover_descriptors
    from coralord_dagster.orchestration.factory import DATASETS_JOB
    from coralord_dagster.orchestration.subsets import subsets_job_name
    from definitions import defs

    quiet = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
    with dg.DagsterInstance.get() as instance:

        def run(job_name: str) -> bool:
            job = defs.resolve_job_def(job_name)
            return report(job.execute_in_process(instance=instance, raise_on_error=False, run_config=quiet))

        # The datasets job observes the sources first (see build_definitions), then builds.
        results = [run(DATASETS_JOB)]
        # Then each dataset's subsets, all in one run per dataset.
        jobs = {j.name for j in defs.jobs or []}
        for desc in discover_descriptors(USE_CASES):
            if subsets_job_name(desc.name) in jobs:
                results.append(run(subsets_job_name(desc.name)))
        ok = all(results)
        if not ok:
            print("a run failed; see the errors above", file=sys.stderr)
            return 1
    print()
    try:
        cli.cli.main(["list"], prog_name="coralord", standalone_mode=False)
    except SystemExit as e:
        return int(e.code or 0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
