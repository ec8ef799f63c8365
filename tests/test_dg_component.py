"""The ``dg`` Component: a dataset folder scaffolded into a fresh ``dg`` project with ``dg scaffold
defs coralord_dagster.DatasetComponent``, checked and listed by ``dg``, and materialized by Dagster's CLI;
two components in one project merge."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from .conftest import BIN, registry_tags

pytestmark = pytest.mark.slow

PYPROJECT = """\
[project]
name = "proj"
version = "0.1.0"

[tool.dg]
directory_type = "project"

[tool.dg.project]
root_module = "proj"
defs_module = "proj.defs"

[tool.dg.cli]
telemetry = { enabled = false }
"""

DEFINITIONS = """\
from pathlib import Path

from dagster import definitions, load_from_defs_folder


@definitions
def defs():
    return load_from_defs_folder(path_within_project=Path(__file__).parent)
"""


def dg(project: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [str(BIN / "dg"), *args],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, f"dg {' '.join(args)}: {proc.stdout[-2000:]}{proc.stderr[-3000:]}"
    return proc


def test_scaffold_check_list_and_materialize_a_dataset_component(tmp_path: Path):
    project = tmp_path / "proj"
    (project / "src" / "proj" / "defs").mkdir(parents=True)
    (project / "pyproject.toml").write_text(PYPROJECT)
    (project / "src" / "proj" / "__init__.py").write_text("")
    (project / "src" / "proj" / "defs" / "__init__.py").write_text("")
    (project / "src" / "proj" / "definitions.py").write_text(DEFINITIONS)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CORALORD_", "DAGSTER_"))}
    env.update(
        PYTHONPATH=str(project / "src"),
        CORALORD_REGISTRY=str(tmp_path / "registry"),
        CORALORD_CACHE=str(tmp_path / "cache"),
        DAGSTER_DG_UPDATE_CHECK_ENABLED="0",
    )

    listed = dg(project, env, "list", "components", "--json")
    assert "coralord_dagster.DatasetComponent" in {c["key"] for c in json.loads(listed.stdout)["items"]}
    for name in ("my_data", "more_data"):
        dg(project, env, "scaffold", "defs", "coralord_dagster.DatasetComponent", name)
    folder = project / "src" / "proj" / "defs" / "my_data"
    assert (folder / "defs.yaml").read_text() == (
        "type: coralord_dagster.DatasetComponent\nattributes:\n  descriptor: descriptor.yaml\n"
    )
    assert {p.name for p in folder.iterdir()} >= {
        "defs.yaml",
        "descriptor.yaml",
        "pipeline.py",
        "data",
        "subsets",
    }

    checked = dg(project, env, "check", "defs")
    assert "All definitions loaded successfully" in checked.stdout + checked.stderr
    defs = json.loads(dg(project, env, "list", "defs", "--json").stdout)
    assets = {a["asset_key"] for a in defs["assets"]}
    assert {"my_data", "more_data", "my_data/source", "my_data/label_a", "more_data/label_a"} <= assets, (
        assets
    )
    assert {"coralord_sources__my_data", "coralord_sources__more_data"} <= {
        s["name"] for s in defs["sensors"]
    }
    assert {c["key"] for c in defs["asset_checks"]} >= {"my_data:quality", "my_data:parts_intact"}

    materialize = [
        str(BIN / "dagster"),
        "asset",
        "materialize",
        "-m",
        "proj.definitions",
        "--select",
        "my_data",
    ]
    proc = subprocess.run(
        materialize, cwd=project, env=env, capture_output=True, text=True, timeout=300, check=False
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert registry_tags(tmp_path / "registry") == ["my_data-v1.0.0"]


def test_the_projects_own_use_cases_are_a_dg_project(tmp_path: Path):
    """``[tool.dg]``: every use case folder's ``defs.yaml`` is a DatasetComponent; ``dg check defs``,
    ``dg list defs`` and ``dg dev`` load them, with the same assets as ``workspace.yaml``'s module."""
    import sys
    import time

    from definitions import defs as workspace_defs

    from .conftest import REPO, free_port
    from .helpers import graphql, serving, wait_for_http

    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CORALORD_", "DAGSTER_"))}
    env.update(
        VIRTUAL_ENV=str(Path(sys.executable).parent.parent),
        DAGSTER_HOME=str(home),
        DAGSTER_DG_UPDATE_CHECK_ENABLED="0",
        CORALORD_REGISTRY=str(tmp_path / "registry"),
    )
    checked = dg(REPO, env, "check", "defs")
    assert "All definitions loaded successfully" in checked.stdout + checked.stderr
    listed = json.loads(dg(REPO, env, "list", "defs", "--json").stdout)
    assets = {a["asset_key"] for a in listed["assets"]}
    expected = {"/".join(k.path) for k in workspace_defs.resolve_asset_graph().get_all_asset_keys()}
    assert assets == expected and "fashion_mnist/pullover" in assets
    groups = {a["asset_key"]: a["group_name"] for a in listed["assets"]}
    assert groups["wine_quality_raw"] == groups["wine_quality_stats"] == "wine_quality"
    assert "coralord_sources__fashion_mnist" in {s["name"] for s in listed["sensors"]}

    port = free_port()
    with serving([str(BIN / "dg"), "dev", "-p", str(port)], cwd=REPO, env=env) as proc:
        base = f"http://127.0.0.1:{port}"
        wait_for_http(base + "/server_info", timeout=120, proc=proc)
        deadline = time.time() + 120
        while True:
            try:
                nodes = graphql(base, "{ assetNodes { assetKey { path } } }")["assetNodes"]
            except (OSError, AssertionError):
                nodes = []
            if nodes:
                break
            assert time.time() < deadline and proc.poll() is None, "dg dev did not serve the project"
            time.sleep(1)
        assert {"/".join(n["assetKey"]["path"]) for n in nodes} == expected
