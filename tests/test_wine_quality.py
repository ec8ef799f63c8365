"""The three-stage use case (download → process → analyze), DVC data-registry style, in Dagster."""

from __future__ import annotations

import json
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

from coralord_dagster.client import open_dataset
from coralord_dagster.orchestration import CoralordResource, build_definitions
from coralord_dagster.registry import dataset_dir
from coralord_dagster.workspace import Workspace
from use_cases.wine_quality.fixture import make_fixture
from use_cases.wine_quality.pipeline import COLUMNS

from .conftest import REPO
from .helpers import croissant_records

WINE = REPO / "use_cases" / "wine_quality"
STAGES = ["wine_quality_raw", "wine_quality", "wine_quality_stats"]


def run_stages(defs: dg.Definitions, instance: dg.DagsterInstance) -> dg.ExecuteInProcessResult:
    result = defs.resolve_job_def("coralord_datasets_job").execute_in_process(instance=instance)
    assert result.success
    return result


def materializations(result: dg.ExecuteInProcessResult, name: str) -> dict[str, dg.MetadataValue]:
    [mat] = [m for m in result.asset_materializations_for_node(name)]
    return mat.metadata


def expected_stats(processed: pd.DataFrame) -> dict[str, float]:
    """The analyze stage's headline numbers, computed independently."""
    out = {"rows": float(len(processed)), "red_share": float((processed.color == "red").mean())}
    for split in ("train", "val"):
        part = processed[processed.split == split]
        out[f"rows/{split}"] = float(len(part))
        out[f"quality_mean/{split}"] = float(part.quality.mean())
    out["quality_mean"] = float(processed.quality.mean())
    out["alcohol_mean"] = float(processed.alcohol.mean())
    return out


def test_three_stages_publish_with_lineage_statistics_and_metadata(wine, tmp_path: Path):
    assert sorted(d.name for d in wine) == sorted(STAGES) and {d.group for d in wine} == {"wine_quality"}
    resource = CoralordResource(registry=str(tmp_path / "registry"))
    defs = build_definitions(wine, resource=resource)
    graph = defs.resolve_asset_graph()
    assert graph.get(dg.AssetKey("wine_quality")).parent_keys == {dg.AssetKey("wine_quality_raw")}
    assert graph.get(dg.AssetKey("wine_quality_stats")).parent_keys == {dg.AssetKey("wine_quality")}
    with dg.instance_for_test() as instance:
        result = run_stages(defs, instance)
    ws = Workspace.open(tmp_path / "registry")

    # download: the files as they are (text), both colors, including the rows process will drop.
    raw = open_dataset("wine_quality_raw", workspace=ws).to_pandas()
    source = Path(str(tmp_path / "wine-source"))
    csv = pd.concat(
        [
            pd.read_csv(source / f"winequality-{c}.csv", sep=";", dtype=str, keep_default_na=False).assign(
                color=c
            )
            for c in ("red", "white")
        ],
        ignore_index=True,
    )
    pd.testing.assert_frame_equal(raw, csv[[*COLUMNS, "color"]], check_dtype=False)

    # process: typed, invalid and duplicate rows dropped, split 80/20, built from raw v1.0.0.
    processed = open_dataset("wine_quality", workspace=ws).to_pandas()
    typed = csv.rename(columns=lambda c: c.lower().replace(" ", "_"))
    for c in typed.columns.drop("color"):
        typed[c] = pd.to_numeric(typed[c], errors="coerce")
    clean = typed.dropna().drop_duplicates()
    assert len(processed) == len(clean) == len(raw) - 4  # per file: one duplicate, one missing value
    assert processed.quality.dtype == "int64" and processed.alcohol.dtype == "float64"
    assert set(processed.split) == {"train", "val"} and 0.7 < (processed.split == "train").mean() < 0.9
    manifest = ws.registry.manifest(ws.registry.latest("wine_quality"))
    assert manifest.derived_from[0].name == "wine_quality_raw" and manifest.derived_from[0].version == "1.0.0"

    # analyze: the statistics, in its rows, in its Croissant and as Dagster metadata.
    stats = open_dataset("wine_quality_stats", workspace=ws).to_pandas()
    alcohol = stats[(stats.split == "train") & (stats.column == "alcohol")].iloc[0]
    assert alcohol["mean"] == pytest.approx(processed[processed.split == "train"].alcohol.mean())
    assert alcohol["p50"] == pytest.approx(processed[processed.split == "train"].alcohol.median())
    expected = expected_stats(processed)
    folder = ws.registry.path / dataset_dir("wine_quality_stats")
    doc = json.loads((folder / "croissant.json").read_text())
    assert doc["coralord:metrics"] == pytest.approx(expected)
    assert len(croissant_records(folder / "croissant.json")) == len(stats)
    metadata = materializations(result, "wine_quality_stats")
    assert {k.removeprefix("metric/"): v.value for k, v in metadata.items() if k.startswith("metric/")} == (
        pytest.approx(expected)
    )

    # No Docker here (CORALORD_DOCKER=off): process ran in-process, and its version says so.
    env = json.loads((ws.registry.path / dataset_dir("wine_quality") / "croissant.json").read_text())[
        "coralord:environment"
    ]
    assert (
        env["image"] == "coralord/wine-quality:1" and env["runner"] == "in-process" and env["digest"] is None
    )
    assert "Docker unavailable (CORALORD_DOCKER=off)" in env["fallback"]
    assert materializations(result, "wine_quality")["coralord/environment"].value == env


def test_a_changed_download_flows_through_the_stages(wine, tmp_path: Path):
    """New upstream rows: every stage gets a new version; the metrics plot gets a second point."""
    resource = CoralordResource(registry=str(tmp_path / "registry"))
    defs = build_definitions(wine, resource=resource)
    with dg.instance_for_test() as instance:
        run_stages(defs, instance)
        again = run_stages(defs, instance)  # nothing changed: no new version anywhere
        for stage in STAGES:
            assert materializations(again, stage)["coralord/status"].value == "unchanged, still v1.0.0"

        # Declarative automation follows the stages: an unchanged upstream (same data version, its
        # content id) requests nothing.
        automation = dg.evaluate_automation_conditions(defs, instance)
        assert automation.total_requested == 0
        raw, processed = dg.AssetKey("wine_quality_raw"), dg.AssetKey("wine_quality")
        job = defs.resolve_job_def("coralord_datasets_job")

        make_fixture(tmp_path / "wine-source", red=450)  # a new upstream release: more red wines
        # The source sensor sees the CSV change and rebuilds the first stage...
        sensor = defs.resolve_sensor_def("coralord_sources")
        ctx = dg.build_sensor_context(instance=instance, resources={"coralord": resource})
        first = sensor(ctx)
        assert [r.asset_selection for r in first.run_requests] == [[raw]]
        job.execute_in_process(instance=instance, asset_selection=[raw])
        # ... and the next stage follows the new upstream content declaratively, not by the sensor.
        second = sensor(
            dg.build_sensor_context(instance=instance, cursor=first.cursor, resources={"coralord": resource})
        )
        assert second.run_requests == []
        automation = dg.evaluate_automation_conditions(defs, instance, cursor=automation.cursor)
        assert automation.get_num_requested(processed) == 1 and automation.total_requested == 1
        job.execute_in_process(instance=instance, asset_selection=[processed])
        automation = dg.evaluate_automation_conditions(defs, instance, cursor=automation.cursor)
        assert automation.get_num_requested(dg.AssetKey("wine_quality_stats")) == 1
        run_stages(defs, instance)
        records = instance.fetch_materializations(dg.AssetKey("wine_quality_stats"), limit=10).records
        events = sorted(records, key=lambda r: r.storage_id)
        rows = [e.asset_materialization.metadata["metric/rows"].value for e in events]
        diff = events[-1].asset_materialization.metadata["coralord/diff_json"].value
    assert len(rows) == 3 and rows[0] == rows[1] < rows[2]  # one point per materialization
    # by the descriptor's key: the same 36 statistics, changed in place (not 36 removed and 36 added)
    assert diff["key"] == ["split", "column"], diff
    assert diff["rows"]["added"] == diff["rows"]["removed"] == 0 and diff["rows"]["changed"] > 0, diff
    ws = Workspace.open(tmp_path / "registry")
    assert [str(v.version) for v in ws.registry.versions("wine_quality_stats")] == ["2.0.0", "1.0.0"]
    latest = ws.registry.manifest(ws.registry.latest("wine_quality"))
    assert latest.derived_from[0].version == "2.0.0"
