"""The sources sensor against a real Dagster instance: changes rebuild, non-changes and failures don't."""

import os
from pathlib import Path

import dagster as dg

from coralord_dagster.descriptor import load_descriptor
from coralord_dagster.orchestration import CoralordResource, build_definitions
from coralord_dagster.orchestration.factory import DATASETS_JOB
from coralord_dagster.orchestration.sources import source_key
from coralord_dagster.sources import override_variable
from use_cases.huggingface_fmnist.fixture import make_fixture

from .conftest import registry_tags
from .servers import Behaviour, http_server


class Clock:
    """The source sensor's notion of now, moved by the test: due times without waiting or races."""

    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def tick(defs: dg.Definitions, instance: dg.DagsterInstance, resource: CoralordResource, cursor: str | None):
    """One sensor evaluation, applied as the daemon would: observations recorded, runs executed."""
    sensor = defs.resolve_sensor_def("coralord_sources")
    result = sensor(
        dg.build_sensor_context(instance=instance, cursor=cursor, resources={"coralord": resource})
    )
    for event in result.asset_events:
        instance.report_runless_asset_event(event)
    for run in result.run_requests or []:
        job = defs.resolve_job_def(DATASETS_JOB)
        assert job.execute_in_process(
            instance=instance, tags=run.tags, asset_selection=run.asset_selection
        ).success
    return result


def skip(result: dg.SensorResult) -> str:
    return result.skip_reason.skip_message if result.skip_reason else ""


def latest_observation(instance: dg.DagsterInstance) -> dg.AssetObservation:
    [record] = instance.fetch_observations(source_key("fashion_mnist"), limit=1, ascending=False).records
    return record.asset_observation


def every_second(use_case: Path) -> None:
    path = use_case / "descriptor.yaml"
    path.write_text(
        path.read_text().replace(
            "  revision: refs/convert/parquet\n",
            "  revision: refs/convert/parquet\n  check: {interval_seconds: 1}\n",
        )
    )


def test_source_and_code_changes_rebuild_the_dataset(
    fmnist, use_case_copy: Path, tmp_path: Path, monkeypatch
):
    every_second(use_case_copy)
    resource = CoralordResource(registry=str(tmp_path / "reg"))
    clock = Clock()
    defs = build_definitions(use_case_copy.parent, resource=resource, clock=clock)
    source_dir = Path(os.environ[override_variable("fashion_mnist")])
    with dg.instance_for_test() as instance:
        first = tick(defs, instance, resource, None)
        assert [r.tags["coralord/reason"] for r in first.run_requests] == ["no version published yet"]
        assert registry_tags(tmp_path / "reg") == ["fashion_mnist-v1.0.0"]
        obs = latest_observation(instance)
        assert obs.metadata["coralord/fingerprint"].value
        cursor = first.cursor

        # Not due yet (interval 1 s), then due and unchanged: nothing runs, the skip says why.
        assert skip(tick(defs, instance, resource, cursor)) == "no source due"
        clock.advance(1.1)
        same = tick(defs, instance, resource, cursor)
        assert not same.run_requests and "unchanged" in skip(same)

        # Touched, same bytes: no run, no version.
        for f in source_dir.rglob("*.parquet"):
            os.utime(f)
        clock.advance(1.1)
        touched = tick(defs, instance, resource, same.cursor)
        assert not touched.run_requests

        # New bytes: a run, a new version; its observation says what changed.
        make_fixture(source_dir, seed=21)
        clock.advance(1.1)
        changed = tick(defs, instance, resource, touched.cursor)
        [run] = changed.run_requests
        assert (
            "source changed: fashion_mnist/test/0000.parquet, fashion_mnist/train/0000.parquet"
            in run.tags["coralord/reason"]
        )
        assert "fashion_mnist-v2.0.0" in registry_tags(tmp_path / "reg")
        obs = latest_observation(instance)
        assert obs.metadata["coralord/changed"].value is True

        # A pipeline change: a run with the new code version, recorded in the Croissant.
        pipeline = use_case_copy / "pipeline.py"
        pipeline.write_text(
            pipeline.read_text().replace(
                "return pa.concat_tables(tables)", "return pa.concat_tables(tables).slice(0, 650)"
            )
        )
        clock.advance(1.1)
        recoded = tick(defs, instance, resource, changed.cursor)
        [run] = recoded.run_requests
        new_code = load_descriptor(use_case_copy).code_version()
        assert new_code in run.tags["coralord/reason"]
        ws = resource.workspace()
        doc = ws.registry.read_file("fashion_mnist-v3.0.0", "datasets/fashion_mnist/croissant.json")
        assert f'"coralord:codeVersion": "{new_code}"' in doc.decode()

        # The same change seen again (e.g. a restarted sensor): the run key is the same, Dagster dedupes.
        assert recoded.run_requests[0].run_key == run.run_key


def test_a_failing_source_keeps_the_last_version_and_recovers(
    fmnist, use_case_copy: Path, tmp_path: Path, monkeypatch
):
    every_second(use_case_copy)
    source_dir = Path(os.environ[override_variable("fashion_mnist")])
    files = {str(p.relative_to(source_dir)): p.read_bytes() for p in source_dir.rglob("*.parquet")}
    behaviour = Behaviour(files=files)
    resource = CoralordResource(registry=str(tmp_path / "reg"))
    with http_server(behaviour) as url, dg.instance_for_test() as instance:
        monkeypatch.setenv(override_variable("fashion_mnist"), url)
        clock = Clock()
        defs = build_definitions(use_case_copy.parent, resource=resource, clock=clock)
        first = tick(defs, instance, resource, None)
        assert registry_tags(tmp_path / "reg") == ["fashion_mnist-v1.0.0"]
        first_version = latest_observation(instance).tags["dagster/data_version"]

        for failure in ({"status": 500}, {"delay_s": 12.0}):
            for k, v in failure.items():
                setattr(behaviour, k, v)
            clock.advance(1.1)
            failed = tick(defs, instance, resource, first.cursor)
            assert not failed.run_requests and "check failed, checking again at its cadence" in skip(failed)
            obs = latest_observation(instance)
            assert "the last version is kept" in obs.metadata["coralord/status"].value
            # Shown as failing: the source's reachable check failed, with the reason; the source keeps
            # its last data version, so the dataset does not look out of date (nor fresh) for it.
            check = instance.get_latest_asset_check_evaluation_record(
                dg.AssetCheckKey(source_key("fashion_mnist"), "reachable")
            )
            assert check is not None and not check.event.asset_check_evaluation.passed
            assert "500" in check.event.asset_check_evaluation.description or failure.get("delay_s")
            assert obs.tags["dagster/data_version"] == first_version
            assert registry_tags(tmp_path / "reg") == ["fashion_mnist-v1.0.0"]
            # The next tick within the cadence does not check (nor record a failure) again.
            quiet = tick(defs, instance, resource, failed.cursor)
            assert skip(quiet) == "no source due" and latest_observation(instance) == obs
            # Observed by hand (the UI's Observe button) while failing: a recorded failure, no traceback.
            source = defs.resolve_assets_def(source_key("fashion_mnist"))
            by_hand = dg.materialize([source], instance=instance, selection=[source_key("fashion_mnist")])
            assert by_hand.success
            assert "coralord/error" in latest_observation(instance).metadata
            assert latest_observation(instance).tags["dagster/data_version"] == first_version
            behaviour.status, behaviour.delay_s = None, 0.0

        # Back up with new content: it recovers on its own and publishes.
        behaviour.files = {k: v + b"" for k, v in files.items()}
        src = make_fixture(tmp_path / "new", seed=5)
        behaviour.files = {str(p.relative_to(src)): p.read_bytes() for p in src.rglob("*.parquet")}
        clock.advance(1.1)
        recovered = tick(defs, instance, resource, first.cursor)
        assert len(recovered.run_requests) == 1
        assert "fashion_mnist-v2.0.0" in registry_tags(tmp_path / "reg")


def test_a_failed_source_check_leaves_its_datasets_staleness_as_it_was(
    fmnist, use_case_copy: Path, tmp_path: Path, monkeypatch
):
    """A check that fails is no news: a dataset whose source changed stays Unsynced (it does not turn
    fresh), one that is current stays current (the failed observation keeps the last data version)."""
    from dagster._core.definitions.data_version import CachingStaleStatusResolver, StaleStatus
    from dagster._core.loader import LoadingContextForTest

    every_second(use_case_copy)
    resource = CoralordResource(registry=str(tmp_path / "reg"))
    clock = Clock()
    defs = build_definitions(use_case_copy.parent, resource=resource, clock=clock)
    sensor = defs.resolve_sensor_def("coralord_sources")
    key = dg.AssetKey("fashion_mnist")
    source_dir = Path(os.environ[override_variable("fashion_mnist")])
    with dg.instance_for_test() as instance:

        def observe(cursor: str | None) -> dg.SensorResult:
            """A tick whose observations are recorded and whose runs are not started (yet)."""
            result = sensor(
                dg.build_sensor_context(instance=instance, cursor=cursor, resources={"coralord": resource})
            )
            for event in result.asset_events:
                instance.report_runless_asset_event(event)
            return result

        def status() -> StaleStatus:
            graph = defs.resolve_asset_graph()
            return CachingStaleStatusResolver(instance, graph, LoadingContextForTest(instance)).get_status(
                key
            )

        first = tick(defs, instance, resource, None)
        assert status() == StaleStatus.FRESH
        clock.advance(1.1)
        monkeypatch.setenv(override_variable("fashion_mnist"), str(tmp_path / "gone"))
        down = observe(first.cursor)
        assert "check failed" in skip(down) and status() == StaleStatus.FRESH  # current stays current

        monkeypatch.setenv(override_variable("fashion_mnist"), str(source_dir))
        make_fixture(source_dir, seed=31)
        clock.advance(1.1)
        changed = observe(down.cursor)
        assert changed.run_requests and status() == StaleStatus.STALE  # the rebuild has not run yet
        monkeypatch.setenv(override_variable("fashion_mnist"), str(tmp_path / "gone"))
        clock.advance(1.1)
        failed = observe(changed.cursor)
        assert "check failed" in skip(failed) and status() == StaleStatus.STALE  # not turned fresh
