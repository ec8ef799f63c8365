"""Declared quality checks gate a version: they run on the built table before anything is written; a
failure publishes nothing (no tag, no catalog entry, no part) and names the check and the offending
values, in the API, in ``coralord publish`` (exit 1) and as a failed blocking asset check in Dagster."""

from __future__ import annotations

import json
import subprocess
from dataclasses import replace
from pathlib import Path
from typing import Any

import dagster as dg
import pyarrow as pa
import pytest

from coralord_dagster.checks import CheckFailedError, Checks, check_table
from coralord_dagster.descriptor import load_descriptor
from coralord_dagster.errors import DescriptorError
from coralord_dagster.model import DatasetInfo
from coralord_dagster.orchestration import CoralordIOManager, CoralordResource, build_definitions
from coralord_dagster.workspace import Workspace

from .conftest import BIN
from .helpers import asset_of


def table(n: int = 100) -> pa.Table:
    return pa.table(
        {
            "id": list(range(n)),
            "label": [i % 3 for i in range(n)],
            "score": [i / n for i in range(n)],
            "name": [f"n{i}" for i in range(n)],
        }
    )


def info(**checks: Any) -> DatasetInfo:
    return DatasetInfo(name="gated", description="d", license="MIT", checks=Checks.model_validate(checks))


def stored_parts(ws: Workspace) -> list[Path]:
    return sorted(Path(ws.store.root).rglob("*.parquet"))


#: Each kind of check, a declaration it fails, and what its message must name.
VIOLATIONS = {
    "rows": ({"rows": {"min": 101}}, "rows: 100 rows (must be >= 101)"),
    "not_null": ({"not_null": ["name"]}, "not_null(name): 1 null(s)"),
    "unique": ({"unique": ["label"]}, "unique(label): 3 value(s) repeated"),
    "unique combination": ({"unique": [["label", "name"]]}, "unique(label, name): 1 value(s) repeated"),
    "accepted_values": (
        {"accepted_values": {"label": [0, 1]}},
        "accepted_values(label): 33 row(s) outside [0, 1], e.g. [2]",
    ),
    "range": (
        {"range": {"score": {"min": 0, "max": 0.5}}},
        "range(score): 49 row(s) outside [0, 0.5], e.g. [0.51, 0.52",
    ),
    "schema": ({"schema": {"label": "string"}}, "schema(label): type int64 (contract: string)"),
    "missing column": ({"not_null": ["nope"]}, "not_null(nope): column 'nope' is missing"),
}


def broken_table() -> pa.Table:
    t = table()
    names = t.column("name").to_pylist()
    names[7] = None
    names[5] = names[4] = "same"  # (label, name) repeats once: rows 4 and 5 differ in label, 5 and 8 not
    names[8] = "same"
    labels = t.column("label").to_pylist()
    labels[8] = labels[5]
    return t.set_column(3, "name", pa.array(names)).set_column(1, "label", pa.array(labels))


@pytest.mark.parametrize("kind", list(VIOLATIONS))
def test_a_violated_check_publishes_nothing_and_names_the_values(ws: Workspace, kind: str):
    declared, message = VIOLATIONS[kind]
    pub = ws.publisher()
    first = pub.publish(table(), info())  # a version to protect
    parts_before, tags_before = stored_parts(ws), [t.name for t in ws.registry.repo.tags]
    catalog_before = ws.catalog.search("gated")
    with pytest.raises(CheckFailedError) as failed:
        pub.publish(broken_table(), info(**declared))
    assert message in str(failed.value) and "nothing was published" in str(failed.value)
    assert failed.value.exit_code == 1
    assert [t.name for t in ws.registry.repo.tags] == tags_before
    assert stored_parts(ws) == parts_before, "no part was written"
    assert ws.catalog.search("gated") == catalog_before
    assert ws.registry.latest("gated").tag == first.tag


def test_the_change_limits_hold_against_the_previous_version(ws: Workspace):
    pub = ws.publisher()
    pub.publish(table(100), info())
    with pytest.raises(CheckFailedError, match=r"max_row_drop: rows 100 -> 90 \(-10.0%; at most -5.0%\)"):
        pub.publish(table(90), info(max_row_drop=0.05))
    with pytest.raises(CheckFailedError, match=r"max_row_growth: rows 100 -> 200"):
        pub.publish(table(200), info(max_row_growth=0.5))
    assert pub.publish(table(96), info(max_row_drop=0.05)).created  # -4%: within the limit
    with pytest.raises(CheckFailedError, match="max_row_drop"):
        pub.publish(table(95), info(max_row_drop=0))  # no drop at all


def test_a_passing_version_records_its_results_in_manifest_and_croissant(ws: Workspace):
    declared = {
        "rows": {"min": 10, "max": 1000},
        "not_null": ["id"],
        "unique": ["id"],
        "accepted_values": {"label": [0, 1, 2]},
        "range": {"score": {"min": 0, "max": 1}},
        "schema": {"id": "int64", "name": "string"},
    }
    result = ws.publisher().publish(table(), info(**declared))
    names = [c["check"] for c in result.manifest.checks]
    assert names == [
        "rows",
        "schema(id)",
        "schema(name)",
        "not_null(id)",
        "unique(id)",
        "accepted_values(label)",
        "range(score)",
    ]
    assert all(c["passed"] for c in result.manifest.checks)
    doc = json.loads((ws.registry.path / "datasets" / "gated" / "croissant.json").read_text())
    assert doc["coralord:checks"] == result.manifest.checks


def test_a_declared_key_must_be_unique(ws: Workspace):
    keyed = replace(info(), key=("label",))  # a key alone is checked
    with pytest.raises(CheckFailedError, match=r"unique\(label\): 3 value\(s\) repeated"):
        ws.publisher().publish(table(), keyed)
    assert ws.publisher().publish(table(), replace(keyed, key=("id",))).created


def test_check_results_name_examples_of_repeated_keys():
    [result] = check_table(Checks(unique=["label"]), table(6))
    assert not result.passed and result.details["examples"][0] == {"label": 0, "rows": 2}


@pytest.mark.parametrize(
    ("checks", "field"),
    [
        ("checks:\n  range:\n    x: {min: 3, max: 1}\n", "checks.range.x"),
        ("checks:\n  rows: {}\n", "checks.rows"),
        ("checks:\n  max_row_drop: 1.5\n", "checks.max_row_drop"),
        ("checks:\n  not_nul: [x]\n", "checks.not_nul"),
    ],
)
def test_a_bad_declaration_is_refused_at_validation_naming_the_field(
    use_case_copy: Path, checks: str, field: str
):
    path = use_case_copy / "descriptor.yaml"
    path.write_text(path.read_text() + checks)
    with pytest.raises(DescriptorError, match=field.replace(".", r"\.")):
        load_descriptor(path)


def declare(use_case: Path, checks: str) -> None:
    path = use_case / "descriptor.yaml"
    path.write_text(path.read_text() + checks)


def test_coralord_publish_exits_1_naming_the_check(fmnist, use_case_copy: Path, tmp_path: Path):
    declare(use_case_copy, "checks:\n  accepted_values:\n    label: [0, 1]\n")
    registry = tmp_path / "reg"
    proc = subprocess.run(
        [
            str(BIN / "coralord"),
            "--registry",
            str(registry),
            "publish",
            str(use_case_copy / "descriptor.yaml"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 1, proc.stderr
    [line] = proc.stderr.strip().splitlines()
    assert line.startswith("coralord: error: fashion_mnist: 1 check(s) failed, nothing was published")
    assert "accepted_values(label):" in line and "Traceback" not in proc.stderr
    tags = subprocess.run(["git", "-C", str(registry), "tag"], capture_output=True, text=True, check=False)
    assert tags.stdout.strip() == ""


def test_in_dagster_a_failed_gate_is_a_failed_blocking_check_and_no_materialization(
    fmnist, use_case_copy: Path, tmp_path: Path
):
    declare(use_case_copy, "checks:\n  rows: {min: 700}\n  range:\n    label: {max: 8}\n")
    resource = CoralordResource(registry=str(tmp_path / "reg"))
    defs = build_definitions(use_case_copy.parent, resource=resource)
    res = {"coralord": resource, "coralord_io_manager": CoralordIOManager(coralord=resource)}
    asset = asset_of(defs, "fashion_mnist")
    [spec] = asset.check_specs
    assert spec.name == "quality" and spec.blocking
    run = dg.materialize([asset], resources=res, raise_on_error=False)
    assert not run.success
    [evaluation] = run.get_asset_check_evaluations()
    assert evaluation.check_name == "quality" and not evaluation.passed
    assert "range(label)" in evaluation.description and "e.g. [9]" in evaluation.description
    assert run.asset_materializations_for_node("fashion_mnist") == []
    failure = next(e for e in run.all_events if e.event_type_value == "STEP_FAILURE")
    assert "nothing was published" in failure.step_failure_data.error.message
    assert not list(Workspace.open(tmp_path / "reg").registry.repo.tags)

    # Fixed: the check passes, the version is published with its results.
    path = use_case_copy / "descriptor.yaml"
    path.write_text(path.read_text().replace("label: {max: 8}", "label: {max: 9}"))
    defs = build_definitions(use_case_copy.parent, resource=resource)
    run = dg.materialize([asset_of(defs, "fashion_mnist")], resources=res)
    [evaluation] = run.get_asset_check_evaluations()
    assert evaluation.passed and evaluation.description == "2 check(s) passed"
    ws = Workspace.open(tmp_path / "reg")
    manifest = ws.registry.manifest(ws.registry.latest("fashion_mnist"))
    assert [c["check"] for c in manifest.checks] == ["rows", "range(label)"]


def test_a_subset_files_checks_gate_the_subset(fmnist, use_case_copy: Path, ws: Workspace):
    from coralord_dagster.descriptor import load_subsets
    from coralord_dagster.subsets import publish_subset
    from coralord_dagster.use_case import publish_descriptor

    (use_case_copy / "subsets" / "gated.yaml").write_text("where: label = 2\nchecks:\n  rows: {min: 1000}\n")
    desc = load_descriptor(use_case_copy / "descriptor.yaml")
    publish_descriptor(desc, ws)
    sub = next(s for s in load_subsets(desc) if s.spec.name == "gated")
    with pytest.raises(CheckFailedError, match=r"fashion_mnist/gated: 1 check\(s\) failed.*rows: 62 rows"):
        publish_subset(desc, sub, ws)
    assert ws.registry.latest("fashion_mnist/gated") is None


def test_in_dagster_a_subsets_gate_is_its_own_blocking_check_the_others_publish(
    fmnist, use_case_copy: Path, tmp_path: Path
):
    from coralord_dagster.orchestration.subsets import subsets_job_name

    (use_case_copy / "subsets" / "gated.yaml").write_text("where: label = 2\nchecks:\n  rows: {min: 1000}\n")
    resource = CoralordResource(registry=str(tmp_path / "reg"))
    defs = build_definitions(use_case_copy.parent, resource=resource)
    gated, pullover = dg.AssetKey(["fashion_mnist", "gated"]), dg.AssetKey(["fashion_mnist", "pullover"])
    [spec] = [s for s in defs.resolve_assets_def(gated).check_specs if s.name == "quality"]
    assert spec.blocking and spec.asset_key == gated
    with dg.instance_for_test() as instance:
        assert defs.resolve_job_def("coralord_datasets_job").execute_in_process(instance=instance).success
        run = defs.resolve_job_def(subsets_job_name("fashion_mnist")).execute_in_process(
            instance=instance, asset_selection=[gated, pullover], raise_on_error=False
        )
        assert not run.success
        [evaluation] = [e for e in run.get_asset_check_evaluations() if e.check_name == "quality"]
        assert evaluation.asset_key == gated and not evaluation.passed and "62 rows" in evaluation.description
        failure = next(e for e in run.all_events if e.is_step_failure)
        assert "fashion_mnist/gated: 1 check(s) failed" in failure.step_failure_data.error.message
        assert [m.asset_key for m in run.get_asset_materialization_events()] == [pullover]
    ws = Workspace.open(tmp_path / "reg")
    assert ws.registry.latest("fashion_mnist/gated") is None
    assert ws.registry.latest("fashion_mnist/pullover") is not None


def test_owners_tags_and_freshness_reach_the_asset_and_leave_versions_alone(
    fmnist, use_case_copy: Path, ws: Workspace
):
    from coralord_dagster.use_case import publish_descriptor

    before = load_descriptor(use_case_copy / "descriptor.yaml")
    publish_descriptor(before, ws)
    declare(
        use_case_copy,
        "owners: [team:vision, alice@example.com]\ntags: {domain: vision}\n"
        "freshness: {fail_after_hours: 48, warn_after_hours: 24}\n",
    )
    after = load_descriptor(use_case_copy / "descriptor.yaml")
    assert after.metadata_digest() == before.metadata_digest()  # not what the Croissant says
    assert not publish_descriptor(after, ws).created
    asset = asset_of(build_definitions(use_case_copy.parent), "fashion_mnist")
    spec = next(iter(asset.specs))
    assert spec.owners == ["team:vision", "alice@example.com"] and spec.tags["domain"] == "vision"
    assert spec.freshness_policy is not None
    declare(use_case_copy, "")
    bad = use_case_copy / "descriptor.yaml"
    bad.write_text(bad.read_text().replace("alice@example.com", "alice"))
    with pytest.raises(DescriptorError, match=r"field 'owners'.*neither emails nor 'team:<name>'"):
        load_descriptor(bad)
