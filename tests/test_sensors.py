"""New subset files are picked up by a running deployment: no restart, no code change."""

import json
import os
import subprocess
import time
from pathlib import Path

import dagster as dg
import pytest

from coralord_dagster.descriptor import load_descriptor
from coralord_dagster.orchestration import CoralordIOManager, CoralordResource, build_definitions
from coralord_dagster.orchestration.subsets import new_subsets_job_name, subsets_job_name
from coralord_dagster.registry import Registry
from coralord_dagster.sources import override_variable
from coralord_dagster.use_case import publish_descriptor, run_pipeline
from coralord_dagster.workspace import Workspace
from use_cases.huggingface_fmnist.fixture import make_fixture

from .conftest import free_port, registry_tags
from .helpers import asset_of, dagster_dev, execute_requests, graphql, requested, wait_for_http


def tick(defs: dg.Definitions, instance: dg.DagsterInstance, resource: CoralordResource, cursor: str | None):
    """One sensor evaluation, its runs executed as the daemon would start them."""
    sensor = defs.resolve_sensor_def("coralord_subsets")
    result = sensor(
        dg.build_sensor_context(instance=instance, cursor=cursor, resources={"coralord": resource})
    )
    execute_requests(defs, instance, result)
    return result


def test_subset_files_added_edited_and_removed(fmnist, use_case_copy: Path, tmp_path: Path):
    resource = CoralordResource(registry=str(tmp_path / "reg"))
    defs = build_definitions(use_case_copy.parent, resource=resource)
    with dg.instance_for_test() as instance:
        # Before the parent is published, subsets wait (and nothing fails).
        first = tick(defs, instance, resource, None)
        assert not first.run_requests and "no published version yet" in str(first.skip_reason)
        resources = {"coralord": resource, "coralord_io_manager": CoralordIOManager(coralord=resource)}
        dg.materialize([asset_of(defs, "fashion_mnist")], resources=resources, instance=instance)

        result = tick(defs, instance, resource, None)
        names = requested(result)
        assert "pullover" in names and len(names) == len(list((use_case_copy / "subsets").glob("*.yaml")))
        # A parent's subsets are refreshed in one run, each materialized under its own asset key.
        [run] = result.run_requests
        assert run.job_name == subsets_job_name("fashion_mnist")
        mat = instance.get_latest_materialization_event(dg.AssetKey(["fashion_mnist", "pullover"]))
        assert mat is not None and mat.asset_materialization.metadata["coralord/parent"].value == (
            "fashion_mnist v1.0.0"
        )
        cursor = result.cursor

        # A new file in the running deployment: one run, its first version, under its own asset key.
        (use_case_copy / "subsets" / "bag_or_coat.yaml").write_text("where: label IN (4, 8)\n")
        result = tick(defs, instance, resource, cursor)
        assert requested(result) == ["bag_or_coat"]
        assert result.run_requests[0].job_name == new_subsets_job_name("fashion_mnist")
        assert "fashion_mnist/bag_or_coat-v1.0.0" in registry_tags(tmp_path / "reg")
        assert instance.get_latest_materialization_event(dg.AssetKey(["fashion_mnist", "bag_or_coat"]))
        ws = resource.workspace()
        from coralord_dagster.client import open_dataset

        rows = open_dataset("fashion_mnist", subset="bag_or_coat", workspace=ws).to_pandas()
        parent = run_pipeline(fmnist).to_pandas()
        assert rows.label.tolist() == parent[parent.label.isin([4, 8])].label.tolist()

        # Nothing changed: the sensor skips, with a reason, and requests nothing.
        quiet = tick(defs, instance, resource, result.cursor)
        assert not quiet.run_requests and quiet.skip_reason

        # An edited definition is rematerialized; a removed one stops, its versions stay.
        (use_case_copy / "subsets" / "bag_or_coat.yaml").write_text("where: label = 8\n")
        (use_case_copy / "subsets" / "pullover.yaml").unlink()
        edited = tick(defs, instance, resource, quiet.cursor)
        assert requested(edited) == ["bag_or_coat"]
        # The removed subset's asset stays until a reload, and says so if someone materializes it.
        gone = defs.resolve_job_def(subsets_job_name("fashion_mnist")).execute_in_process(
            instance=instance,
            asset_selection=[dg.AssetKey(["fashion_mnist", "pullover"])],
            raise_on_error=False,
        )
        assert not gone.success
        [failure] = [e for e in gone.all_events if e.is_step_failure]
        assert "reload the code location" in str(failure.step_failure_data.error)
        assert "fashion_mnist/bag_or_coat-v2.0.0" in registry_tags(tmp_path / "reg")  # other rows: MAJOR
        assert "fashion_mnist/pullover-v1.0.0" in registry_tags(tmp_path / "reg")
        assert "fashion_mnist/pullover" not in json.loads(edited.cursor)


def live_deployment(use_case: Path, tmp_path: Path, keep_subsets: set[str]) -> tuple[Path, dict[str, str]]:
    """A use case checked every second, its first version published, and a ``workspace.yaml`` (code
    location ``datasets``) for ``dagster dev`` in ``tmp_path``; returns the registry and the env."""
    for f in (use_case / "subsets").glob("*.yaml"):
        if f.stem not in keep_subsets:
            f.unlink()
    descriptor = use_case / "descriptor.yaml"
    descriptor.write_text(
        descriptor.read_text().replace(
            "  revision: refs/convert/parquet\n",
            "  revision: refs/convert/parquet\n  check: {interval_seconds: 1}\n",
        )
    )
    registry = tmp_path / "reg"
    publish_descriptor(load_descriptor(use_case), Workspace.open(registry, create=True))
    (tmp_path / "deployment.py").write_text(
        "from coralord_dagster.orchestration import build_definitions\n"
        f"defs = build_definitions({str(use_case.parent)!r})\n"
    )
    (tmp_path / "workspace.yaml").write_text(
        "load_from:\n  - python_file:\n      relative_path: deployment.py\n"
        f"      working_directory: {tmp_path}\n      location_name: datasets\n"
    )
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    return registry, dict(os.environ, DAGSTER_HOME=str(home), CORALORD_REGISTRY=str(registry))


@pytest.mark.slow
def test_a_running_deployment_keeps_datasets_and_subsets_up_to_date(
    fmnist, use_case_copy: Path, tmp_path: Path
):
    """dagster dev (webserver + daemon): new subset files, touched and replaced sources, on their own."""
    registry, env = live_deployment(use_case_copy, tmp_path, keep_subsets={"pullover"})
    source = Path(os.environ[override_variable("fashion_mnist")])
    port = free_port()
    base = env["CORALORD_DAGSTER_WEBSERVER"] = f"http://127.0.0.1:{port}"
    with dagster_dev(tmp_path / "workspace.yaml", cwd=tmp_path, env=env, port=port) as proc:
        wait_for_tag(registry, "fashion_mnist/pullover-v1.0.0", proc)
        # Dropped into the running deployment: picked up without restart or code change, published
        # under its own name, and (the run reloads the location) listed as an asset with its checks.
        (use_case_copy / "subsets" / "sneaker.yaml").write_text("description: Sneakers.\nwhere: label = 7\n")
        wait_for_tag(registry, "fashion_mnist/sneaker-v1.0.0", proc)
        query = "{ assetNodes { assetKey { path } hasAssetChecks } }"
        deadline = time.time() + 120
        while not (
            nodes := [n for n in graphql(base, query)["assetNodes"] if n["assetKey"]["path"][-1] == "sneaker"]
        ):
            assert time.time() < deadline, "the new subset was never listed"
            time.sleep(1)
        assert nodes == [{"assetKey": {"path": ["fashion_mnist", "sneaker"]}, "hasAssetChecks": True}]

        # Touched source files, same bytes: checked several times, nothing new is published.
        tags = registry_tags(registry)
        for f in source.rglob("*.parquet"):
            os.utime(f)
        time.sleep(25)
        assert registry_tags(registry) == tags

        # Replaced source files: a new parent version, and the subsets follow it (lineage).
        make_fixture(source, seed=11)
        wait_for_tag(registry, "fashion_mnist-v2.0.0", proc)
        for name in ("pullover", "sneaker"):
            wait_for_tag(registry, f"fashion_mnist/{name}-v2.0.0", proc)
            manifest = Registry(registry).manifest(Registry(registry).latest(f"fashion_mnist/{name}"))
            assert manifest.derived_from[0].version == "2.0.0"


@pytest.mark.slow
def test_a_code_change_rebuilt_by_the_sensor_leaves_no_stale_badge(
    fmnist, use_case_copy: Path, tmp_path: Path
):
    """dagster dev: the pipeline is edited on disk, the sources sensor rebuilds the dataset, and the run
    reloads the code location: Dagster then shows the code version the version recorded, not stale."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    registry, env = live_deployment(use_case_copy, tmp_path, keep_subsets=set())
    env["CORALORD_DAGSTER_WEBSERVER"] = base
    query = """{ assetNodes { assetKey { path } opVersion staleStatus staleCauses { reason category } } }"""

    def node() -> dict:
        [n] = [n for n in graphql(base, query)["assetNodes"] if n["assetKey"]["path"] == ["fashion_mnist"]]
        return n

    log = tmp_path / "dagster_dev.log"
    with dagster_dev(tmp_path / "workspace.yaml", cwd=tmp_path, env=env, port=port, log=log) as proc:
        wait_for_http(base + "/server_info", timeout=120, proc=proc)
        deadline = time.time() + 120
        while True:  # the code location loads, then the sensor's first tick sees nothing to do
            try:
                before = node()
                break
            except (OSError, ValueError, AssertionError):
                assert time.time() < deadline, "dagster dev did not serve the code location"
                time.sleep(1)
        assert before["opVersion"] == load_descriptor(use_case_copy).code_version()

        pipeline = use_case_copy / "pipeline.py"
        pipeline.write_text(
            pipeline.read_text().replace(
                "return pa.concat_tables(tables)", "return pa.concat_tables(tables).slice(0, 650)"
            )
        )
        new_code = load_descriptor(use_case_copy).code_version()
        wait_for_tag(registry, "fashion_mnist-v2.0.0", proc)
        manifest = Registry(registry).manifest(Registry(registry).latest("fashion_mnist"))
        assert manifest.code_version == new_code
        # The run reloaded the location: the code version shown is the new one, and nothing is stale.
        deadline = time.time() + 120
        while (after := node())["opVersion"] != new_code or after["staleStatus"] != "FRESH":
            assert time.time() < deadline, f"still shown as {after}"
            time.sleep(1)
        assert after["staleCauses"] == []
    # Sensors ticked, a run ran, the location reloaded: no beta notice in dagster dev's output.
    output = log.read_text()
    assert "coralord_sources" in output
    assert "BetaWarning" not in output and "PreviewWarning" not in output
    assert "RUN_FAILURE" not in output  # the reload waited for the run: nothing was interrupted


def wait_for_tag(registry: Path, tag: str, proc: subprocess.Popen, timeout: float = 180) -> None:
    deadline = time.time() + timeout
    while tag not in registry_tags(registry):
        assert proc.poll() is None, "dagster dev exited"
        assert time.time() < deadline, f"{tag} did not appear within {timeout} s"
        time.sleep(1)
