"""``coralord status``: whether each dataset and subset is current, and why not, decided by the same
core module the sensors use."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from coralord_dagster.cli import cli
from coralord_dagster.descriptor import discover_descriptors, load_subsets
from coralord_dagster.sources import override_variable
from coralord_dagster.status import status
from coralord_dagster.subsets import publish_subset
from coralord_dagster.use_case import publish_descriptor
from coralord_dagster.workspace import Workspace
from use_cases.huggingface_fmnist.fixture import make_fixture

from .helpers import edit_pipeline


def states(ws: Workspace, use_cases: Path) -> dict[str, tuple[str, list[str]]]:
    return {s.name: (s.state, s.reasons) for s in status(ws, discover_descriptors(use_cases))}


def test_status_says_what_is_stale_and_why(fmnist, use_case_copy: Path, ws: Workspace, monkeypatch, tmp_path):
    use_cases = use_case_copy.parent
    [desc] = discover_descriptors(use_cases)
    first = states(ws, use_cases)
    assert first["fashion_mnist"] == ("stale", ["no version published yet"])
    assert first["fashion_mnist/pullover"] == ("stale", ["fashion_mnist has no version yet"])

    publish_descriptor(desc, ws)
    for sub in load_subsets(desc):
        publish_subset(desc, sub, ws)
    now = states(ws, use_cases)
    assert all(state == "current" for state, _ in now.values()), now

    # A subset file edited, a source changed, a pipeline edited: each said, nothing else.
    (use_case_copy / "subsets" / "pullover.yaml").write_text("where: label = 2 AND split = 'train'\n")
    monkeypatch.setenv(override_variable("fashion_mnist"), str(make_fixture(tmp_path / "new", seed=9)))
    edit_pipeline(
        use_case_copy, "    return pa.concat_tables(tables)", "    return pa.concat_tables(tables)  # v2"
    )
    code = discover_descriptors(use_cases)[0].code_version()
    after = states(ws, use_cases)
    assert after["fashion_mnist"][0] == "stale"
    assert after["fashion_mnist"][1][0] == "source differs from the published version"
    assert after["fashion_mnist"][1][1].endswith(f"-> {code}")
    assert after["fashion_mnist/pullover"] == ("stale", ["its definition changed"])
    assert after["fashion_mnist/sneaker"] == ("current", [])

    # Built again: the parent's new version makes every subset stale until they follow.
    [desc] = discover_descriptors(use_cases)
    publish_descriptor(desc, ws)
    rebuilt = states(ws, use_cases)
    assert rebuilt["fashion_mnist"] == ("current", [])
    assert rebuilt["fashion_mnist/sneaker"] == ("stale", ["its parent fashion_mnist is now v2.0.0"])


def test_the_cli_prints_a_table_and_json(fmnist, use_case_copy: Path, ws: Workspace):
    [desc] = discover_descriptors(use_case_copy.parent)
    publish_descriptor(desc, ws)
    args = ["--registry", str(ws.registry.path), "status", str(use_case_copy.parent)]
    table = CliRunner().invoke(cli, args)
    assert table.exit_code == 0, table.output
    lines = table.stdout.splitlines()
    assert lines[0].split() == ["NAME", "VERSION", "STATE", "WHY"]
    assert lines[1].split() == ["fashion_mnist", "v1.0.0", "current"]
    assert any(line.split()[:3] == ["fashion_mnist/pullover", "-", "stale"] for line in lines)
    as_json = CliRunner().invoke(cli, [*args, "--json"])
    rows = {r["name"]: r for r in json.loads(as_json.stdout)}
    assert rows["fashion_mnist"] == {
        "name": "fashion_mnist",
        "version": "1.0.0",
        "state": "current",
        "reasons": [],
    }
