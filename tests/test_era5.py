"""The sodeda_era4 use case: time windows of a Zarr store (ERA5 model-level wind layout), lazily read."""

from __future__ import annotations

import json
import re
import shutil
import time
from pathlib import Path
from typing import Any, ClassVar

import dagster as dg
import fsspec
import numpy as np
import pytest
import xarray as xr
from fsspec.implementations.local import LocalFileSystem

from coralord_dagster.client import open_dataset
from coralord_dagster.descriptor import LoadedDescriptor, load_descriptor, load_subsets
from coralord_dagster.errors import DescriptorError, PipelineError
from coralord_dagster.orchestration import CoralordResource, build_definitions
from coralord_dagster.registry import dataset_dir
from coralord_dagster.sources import override_variable
from coralord_dagster.subsets import publish_subset
from coralord_dagster.use_case import publish_descriptor
from coralord_dagster.workspace import Workspace
from use_cases.sodeda_era4.fixture import VARIABLES, make_fixture

from .conftest import REPO
from .helpers import croissant_records, execute_requests, requested

ERA5 = REPO / "use_cases" / "sodeda_era4"
NAME = "era5_model_level_wind"
CHUNK = re.compile(r"/(vo|d|t|w)/(\d+)\.(\d+)\.(\d+)$")


class CountingFileSystem(LocalFileSystem):
    """Local files under ``countfile://``, recording every file read (the filesystem layer)."""

    protocol = "countfile"
    root_marker = "/"
    reads: ClassVar[list[str]] = []

    @classmethod
    def _strip_protocol(cls, path: Any) -> Any:
        if isinstance(path, str) and path.startswith("countfile://"):
            path = path[len("countfile://") :]
        return super()._strip_protocol(path)

    def _open(self, path: str, mode: str = "rb", **kwargs: Any) -> Any:
        if "r" in mode:
            CountingFileSystem.reads.append(path)
        return super()._open(path, mode, **kwargs)

    def cat_file(self, path: str, start: int | None = None, end: int | None = None, **kwargs: Any) -> Any:
        CountingFileSystem.reads.append(path)
        with LocalFileSystem._open(self, self._strip_protocol(path), "rb") as f:
            if start is not None:
                f.seek(start)
            return f.read() if end is None else f.read(end - (start or 0))


fsspec.register_implementation("countfile", CountingFileSystem, clobber=True)


def chunks_read() -> set[tuple[str, int, int]]:
    """(variable, time index, level index) of every data chunk read since the last reset."""
    out = set()
    for path in CountingFileSystem.reads:
        m = CHUNK.search(path)
        if m:
            out.add((m.group(1), int(m.group(2)), int(m.group(3))))
    return out


@pytest.fixture(scope="session")
def era5_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_fixture(tmp_path_factory.mktemp("era5") / "model-level-wind.zarr")


@pytest.fixture
def era5(monkeypatch: pytest.MonkeyPatch, era5_store: Path, tmp_path: Path) -> LoadedDescriptor:
    """A private copy of the use case, its source pointed at the store through the counting layer."""
    dest = tmp_path / "use_cases" / "sodeda_era4"
    shutil.copytree(ERA5, dest, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setenv(override_variable(NAME), f"countfile://{era5_store}")
    CountingFileSystem.reads.clear()
    return load_descriptor(dest)


def test_the_fixture_has_the_real_store_layout(era5_store: Path):
    ds = xr.open_zarr(era5_store, chunks=None)
    assert set(ds.data_vars) == set(VARIABLES) == {"vo", "d", "t", "w"}
    assert all(ds[v].dims == ("time", "hybrid", "values") for v in VARIABLES)
    meta = json.loads((era5_store / ".zmetadata").read_text())["metadata"]
    assert meta["d/.zarray"]["chunks"] == [1, 1, ds.sizes["values"]]  # one chunk per time and level
    assert {"valid_time_start", "valid_time_stop"} <= set(ds.attrs)
    assert ds["hybrid"].values.max() == 137


def test_a_window_reads_only_its_chunks_and_publishes_tidy_rows(
    era5: LoadedDescriptor, era5_store: Path, tmp_path: Path
):
    ws = Workspace.open(tmp_path / "registry", create=True)
    result = publish_descriptor(era5, ws)
    # The descriptor's window: 2024-01-01T00..05 (6 times) x levels 136, 137 x 4 variables.
    times, levels = range(6), (6, 7)  # indexes in the store: hybrid 130..137
    assert chunks_read() == {(v, t, lv) for v in VARIABLES for t in times for lv in levels}
    assert result.manifest.rows == 6 * 2 * 512
    names = [f["name"] for f in result.manifest.fields]
    assert names[:3] == ["time", "level", "coefficient"] and set(names[3:]) == set(VARIABLES)

    # The rows are the store's values, tidy, in (time, level, coefficient) order.
    table = open_dataset(NAME, workspace=ws).to_pandas()
    expected = xr.open_zarr(era5_store, chunks=None).sel(
        time=slice("2024-01-01T00", "2024-01-01T05"), hybrid=[136, 137]
    )
    np.testing.assert_array_equal(table["t"].to_numpy(), expected["t"].values.reshape(-1))
    assert table["level"].tolist()[:512] == [136] * 512

    # Lineage names the store, the window and the store's fingerprint; mlcroissant yields the rows.
    folder = ws.registry.path / dataset_dir(NAME)
    doc = json.loads((folder / "croissant.json").read_text())
    [source] = [d for d in doc["prov:wasDerivedFrom"] if d.get("coralord:sourceKind") == "url"]
    assert source["url"] == "gs://gcp-public-data-arco-era5/co/model-level-wind.zarr-v2"
    assert source["coralord:files"] == [".zmetadata"] and len(source["coralord:fingerprint"]) == 64
    assert source["coralord:params"]["valid_time_start"] == "2024-01-01T00:00:00"
    assert source["coralord:params"]["levels"] == [136, 137]
    records = croissant_records(folder / "croissant.json")
    assert len(records) == result.manifest.rows
    assert [r["records/t"] for r in records[:5]] == pytest.approx(table["t"].tolist()[:5])


def test_a_new_window_file_publishes_without_code_changes_reading_only_its_chunks(
    era5: LoadedDescriptor, tmp_path: Path
):
    """Drop a subset file into the running definitions: the sensor adds it, a run publishes it."""
    resource = CoralordResource(registry=str(tmp_path / "registry"))
    defs = build_definitions([era5], resource=resource)
    with dg.instance_for_test() as instance:
        assert defs.resolve_job_def("coralord_datasets_job").execute_in_process(instance=instance).success
        (era5.folder / "subsets" / "night_of_day3.yaml").write_text(
            "description: Three night hours of the third day, one level, two variables.\n"
            "params:\n"
            "  valid_time_start: '2024-01-03T01:00'\n"
            "  valid_time_stop: '2024-01-03T03:00'\n"
            "  levels: [130]\n"
            "  variables: [vo, w]\n"
        )
        sensor = defs.resolve_sensor_def("coralord_subsets")
        result = sensor(dg.build_sensor_context(instance=instance, resources={"coralord": resource}))
        # The window files known at load are one run of the subsets job; the new file another.
        assert [r.job_name for r in result.run_requests] == [f"{NAME}_subsets_job", f"{NAME}_new_subsets_job"]
        execute_requests(defs, instance, dg.SensorResult(run_requests=result.run_requests[:1]))
        CountingFileSystem.reads.clear()
        execute_requests(defs, instance, dg.SensorResult(run_requests=result.run_requests[1:]))
        assert requested(dg.SensorResult(run_requests=result.run_requests[1:])) == ["night_of_day3"]

    # Only the window's chunks were read: 3 times (49..51) x level 130 (index 0) x 2 variables.
    assert chunks_read() == {(v, t, 0) for v in ("vo", "w") for t in (49, 50, 51)}
    ws = Workspace.open(tmp_path / "registry")
    version = ws.registry.latest(f"{NAME}/night_of_day3")
    assert version is not None and str(version.version) == "1.0.0"
    manifest = ws.registry.manifest(version)
    assert manifest.rows == 3 * 1 * 512 and [f["name"] for f in manifest.fields] == [
        "time",
        "level",
        "coefficient",
        "vo",
        "w",
    ]
    [parent] = manifest.derived_from
    assert parent.name == NAME and parent.relation == "subsetOf"
    assert manifest.sources[0].params["variables"] == ["vo", "w"]


def test_bad_windows_fail_clearly_naming_the_file_and_field(era5: LoadedDescriptor, tmp_path: Path):
    ws = Workspace.open(tmp_path / "registry", create=True)
    publish_descriptor(era5, ws)
    subsets = era5.folder / "subsets"
    (subsets / "backwards.yaml").write_text(
        "params: {valid_time_start: '2024-01-02T00:00', valid_time_stop: '2024-01-01T00:00'}\n"
    )
    [sub] = [s for s in load_subsets(era5) if s.spec.name == "backwards"]
    with pytest.raises(
        DescriptorError, match=r"backwards\.yaml: field 'params': .*valid_time_stop is before"
    ):
        publish_subset(era5, sub, ws)
    (subsets / "backwards.yaml").write_text("params: {valid_time_start: 'yesterday', valid_time_stop: x}\n")
    [sub] = [s for s in load_subsets(era5) if s.spec.name == "backwards"]
    with pytest.raises(DescriptorError, match=r"field 'params\.valid_time_start'"):
        publish_subset(era5, sub, ws)
    (subsets / "backwards.yaml").unlink()

    (subsets / "box.yaml").write_text(
        "params: {valid_time_start: '2024-01-01T00:00', valid_time_stop: '2024-01-01T01:00', "
        "latitude: [40, 50], longitude: [0, 10]}\n"
    )
    [sub] = [s for s in load_subsets(era5) if s.spec.name == "box"]
    with pytest.raises(PipelineError, match="no latitude/longitude dimensions"):
        publish_subset(era5, sub, ws)
    (subsets / "box.yaml").write_text(
        "params: {valid_time_start: '2030-01-01T00:00', valid_time_stop: '2030-01-01T01:00'}\n"
    )
    [sub] = [s for s in load_subsets(era5) if s.spec.name == "box"]
    with pytest.raises(PipelineError, match="select no time of the store"):
        publish_subset(era5, sub, ws)
    assert ws.registry.latest(f"{NAME}/box") is None and ws.registry.latest(f"{NAME}/backwards") is None


def test_a_gridded_store_takes_a_lat_lon_box(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """The same pipeline over a store on a latitude/longitude grid (like ARCO-ERA5's ar/ stores)."""
    import pandas as pd

    lat, lon = np.arange(60.0, 29.0, -10.0), np.arange(0.0, 40.0, 10.0)
    times = pd.date_range("2024-01-01", periods=4, freq="h")
    values = np.arange(4 * 2 * len(lat) * len(lon), dtype="float32").reshape(4, 2, len(lat), len(lon))
    ds = xr.Dataset(
        {"u": (("time", "hybrid", "latitude", "longitude"), values)},
        coords={"time": times, "hybrid": [136, 137], "latitude": lat, "longitude": lon},
    )
    ds.to_zarr(tmp_path / "grid.zarr", zarr_format=2, consolidated=True)
    monkeypatch.setenv(override_variable(NAME), str(tmp_path / "grid.zarr"))
    dest = tmp_path / "uc"
    shutil.copytree(ERA5, dest, ignore=shutil.ignore_patterns("__pycache__", "subsets"))
    text = (dest / "descriptor.yaml").read_text()
    text = re.sub(r"params:\n(  .*\n)+", "", text) + (
        "params:\n  valid_time_start: '2024-01-01T01:00'\n  valid_time_stop: '2024-01-01T02:00'\n"
        "  levels: [137]\n  latitude: [35, 55]\n  longitude: [5, 25]\n"
    )
    (dest / "descriptor.yaml").write_text(text)
    ws = Workspace.open(tmp_path / "registry", create=True)
    result = publish_descriptor(load_descriptor(dest), ws)
    frame = open_dataset(NAME, workspace=ws).to_pandas()
    assert [f["name"] for f in result.manifest.fields] == ["time", "level", "latitude", "longitude", "u"]
    assert sorted(set(frame["latitude"])) == [40.0, 50.0] and sorted(set(frame["longitude"])) == [10.0, 20.0]
    assert len(frame) == 2 * 1 * 2 * 2
    expected = ds["u"].sel(time=slice("2024-01-01T01", "2024-01-01T02"), hybrid=[137], latitude=[50.0, 40.0])
    expected = expected.sel(longitude=[10.0, 20.0])
    np.testing.assert_array_equal(frame["u"].to_numpy(), expected.values.reshape(-1))


def test_a_store_change_inside_a_window_rebuilds_that_window_only(
    era5_store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """The store changes on day 2 only (its metadata too, as when data is appended or replaced): the
    dataset's own window (day 1) is unchanged, but the day-2 window subset is rebuilt."""
    import zarr

    store = tmp_path / "store.zarr"
    shutil.copytree(era5_store, store)
    monkeypatch.setenv(override_variable(NAME), str(store))
    dest = tmp_path / "use_cases" / "sodeda_era4"
    shutil.copytree(ERA5, dest, ignore=shutil.ignore_patterns("__pycache__"))
    text = (dest / "descriptor.yaml").read_text()
    (dest / "descriptor.yaml").write_text(
        text.replace('check: {cron: "0 6 * * *"}', "check: {interval_seconds: 1}")
    )
    desc = load_descriptor(dest)
    resource = CoralordResource(registry=str(tmp_path / "registry"))
    defs = build_definitions([desc], resource=resource)
    sources = defs.resolve_sensor_def("coralord_sources")
    subsets = defs.resolve_sensor_def("coralord_subsets")

    def tick(sensor: Any, cursor: str | None) -> Any:
        result = sensor(
            dg.build_sensor_context(instance=instance, cursor=cursor, resources={"coralord": resource})
        )
        for event in result.asset_events or []:
            instance.report_runless_asset_event(event)
        return result

    with dg.instance_for_test() as instance:
        first = tick(sources, None)
        assert [r.asset_selection for r in first.run_requests] == [[dg.AssetKey(NAME)]]
        assert defs.resolve_job_def("coralord_datasets_job").execute_in_process(instance=instance).success
        built = tick(subsets, None)
        execute_requests(defs, instance, built)
        assert tick(subsets, built.cursor).run_requests == []  # all current

        group = zarr.open_group(str(store), mode="r+", zarr_format=2)
        day2 = slice(24 + 6, 24 + 12)
        group["t"][day2, :, :] = group["t"][day2, :, :] + 1.0
        group.attrs["valid_time_stop"] = "2024-01-04"
        zarr.consolidate_metadata(str(store), zarr_format=2)

        time.sleep(1.1)  # the source's check interval
        second = tick(sources, first.cursor)
        assert "source changed: .zmetadata" in second.run_requests[0].tags["coralord/reason"]
        run = defs.resolve_job_def("coralord_datasets_job").execute_in_process(instance=instance)
        [mat] = run.asset_materializations_for_node(NAME)
        assert mat.metadata["coralord/status"].value == "unchanged, still v1.0.0"  # day 1 is the same

        rebuilt = tick(subsets, built.cursor)
        assert requested(rebuilt) == ["day2_morning", "surface_wind_day1"]  # in one run
        assert rebuilt.run_requests[0].tags["coralord/reason"] == (
            "day2_morning: its source changed since it was built; "
            "surface_wind_day1: its source changed since it was built"
        )
        execute_requests(defs, instance, rebuilt)
        assert tick(subsets, rebuilt.cursor).run_requests == []  # once per source change

    ws = Workspace.open(tmp_path / "registry")
    assert [str(v.version) for v in ws.registry.versions(f"{NAME}/day2_morning")] == ["2.0.0", "1.0.0"]
    assert [str(v.version) for v in ws.registry.versions(f"{NAME}/surface_wind_day1")] == ["1.0.0"]
    changed = open_dataset(f"{NAME}/day2_morning", workspace=ws).to_pandas()
    expected = xr.open_zarr(store, chunks=None).sel(
        time=slice("2024-01-02T06", "2024-01-02T11"), hybrid=[136, 137]
    )
    np.testing.assert_array_equal(changed["t"].to_numpy(), expected["t"].values.reshape(-1))
