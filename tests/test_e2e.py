"""End to end, as a user runs it: the README's main job, Dagster's own CLI, the coralord CLI."""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from coralord_dagster.registry import dataset_dir

from .conftest import BIN, FMNIST, REPO, registry_tags
from .helpers import croissant_records, dagster_dev, run_ok

pytestmark = pytest.mark.slow


def env_for(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CORALORD_", "DAGSTER_"))}
    env.update({"DAGSTER_HOME": str(tmp_path / "dagster_home"), "CORALORD_CACHE": str(tmp_path / "cache")})
    env.update(extra)
    Path(env["DAGSTER_HOME"]).mkdir(parents=True, exist_ok=True)
    (Path(env["DAGSTER_HOME"]) / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    return env


def fresh_checkout(tmp_path: Path) -> Path:
    dest = tmp_path / "checkout"
    shutil.copytree(
        REPO, dest, ignore=shutil.ignore_patterns(".git", ".coralord", "__pycache__", ".venv", "*.egg-info")
    )
    return dest


def run_main_job(checkout: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """README command 1's job, as the user runs it from the checkout."""
    return run_ok([sys.executable, "-m", "definitions.main"], cwd=checkout, env=env)


def test_readme_main_job_publishes_once_and_is_idempotent(tmp_path: Path):
    checkout = fresh_checkout(tmp_path)
    env = env_for(tmp_path)
    env.pop("DAGSTER_HOME")  # the main job sets its own under .coralord/
    first = run_main_job(checkout, env)
    assert "fashion_mnist: published fashion_mnist v1.0.0" in first.stdout
    assert "fashion_mnist" in first.stdout.split("NAME")[1] and "v1.0.0" in first.stdout
    registry = checkout / ".coralord" / "registry"
    subsets = sorted(p.stem for p in (FMNIST / "subsets").glob("*.yaml"))
    windows = sorted(p.stem for p in (REPO / "use_cases" / "sodeda_era4" / "subsets").glob("*.yaml"))
    stages = ["wine_quality_raw", "wine_quality", "wine_quality_stats"]
    expected = sorted(
        [
            "fashion_mnist-v1.0.0",
            *(f"fashion_mnist/{s}-v1.0.0" for s in subsets),
            "era5_model_level_wind-v1.0.0",
            *(f"era5_model_level_wind/{w}-v1.0.0" for w in windows),
            *(f"{s}-v1.0.0" for s in stages),
            "wine_quality/red-v1.0.0",
        ]
    )
    assert {"pullover", "sneaker", "train", "test", "balanced_10pct"} <= set(subsets)
    assert {"day2_morning", "surface_wind_day1"} <= set(windows)
    assert registry_tags(registry) == expected
    for s in subsets:  # the list shows each subset with its parent version
        assert re.search(rf"fashion_mnist/{s} +v1\.0\.0 .* fashion_mnist@v1\.0\.0", first.stdout), s
    for w in windows:
        assert re.search(
            rf"era5_model_level_wind/{w} +v1\.0\.0 .* era5_model_level_wind@v1\.0\.0", first.stdout
        )
    assert re.search(r"wine_quality_stats +v1\.0\.0 .* wine_quality@v1\.0\.0", first.stdout)
    # Every new use case's Croissant loads in mlcroissant and yields exactly the published rows.
    for name in ["era5_model_level_wind", *(f"era5_model_level_wind/{w}" for w in windows), *stages]:
        manifest = json.loads((registry / dataset_dir(name) / "manifest.json").read_text())
        records = croissant_records(registry / dataset_dir(name) / "croissant.json")
        assert len(records) == manifest["rows"] > 0, name

    second = run_main_job(checkout, env)
    assert "fashion_mnist: unchanged, still v1.0.0" in second.stdout
    assert "fashion_mnist/pullover: unchanged, still v1.0.0" in second.stdout
    assert registry_tags(registry) == expected

    show = subprocess.run(
        [str(BIN / "coralord"), "show", "fashion_mnist"],
        cwd=checkout,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert show.returncode == 0 and json.loads(show.stdout)["name"] == "fashion_mnist"
    listed = subprocess.run(
        [str(BIN / "coralord"), "list"], cwd=checkout, env=env, capture_output=True, text=True, check=False
    )
    assert "fashion_mnist" in listed.stdout and "v1.0.0" in listed.stdout


def test_dagster_cli_materializes_the_asset(tmp_path: Path, fmnist_source: Path):
    env = env_for(
        tmp_path,
        CORALORD_REGISTRY=str(tmp_path / "registry"),
        CORALORD_SOURCE__FASHION_MNIST=str(fmnist_source),
    )
    dagster = str(BIN / "dagster")
    cmd = [dagster, "asset", "materialize", "-m", "definitions", "--select", "fashion_mnist"]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert registry_tags(tmp_path / "registry") == ["fashion_mnist-v1.0.0"]
    assert "published fashion_mnist v1.0.0" in proc.stderr + proc.stdout
    assert "BetaWarning" not in proc.stderr + proc.stdout  # no beta notice on every command


def test_dagster_loads_the_code_location_from_workspace_yaml(tmp_path: Path):
    proc = subprocess.run(
        [str(BIN / "dagster"), "definitions", "validate", "-w", "workspace.yaml"],
        cwd=REPO,
        env=env_for(tmp_path),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Validation successful" in proc.stdout + proc.stderr


def test_dagster_dev_serves_the_asset_with_its_code_version(tmp_path: Path, fmnist_source: Path):
    import time
    import urllib.request

    from coralord_dagster.descriptor import load_descriptor

    from .conftest import FMNIST, free_port

    port = free_port()
    env = env_for(tmp_path, CORALORD_SOURCE__FASHION_MNIST=str(fmnist_source))
    query = json.dumps({"query": "{ assetNodes { assetKey { path } opVersion description } }"}).encode()
    with dagster_dev(REPO / "workspace.yaml", cwd=REPO, env=env, port=port):
        deadline, nodes = time.time() + 90, None
        while time.time() < deadline and nodes is None:
            try:
                request = urllib.request.Request(
                    f"http://127.0.0.1:{port}/graphql",
                    data=query,
                    headers={"Content-Type": "application/json"},
                )
                data = json.loads(urllib.request.urlopen(request, timeout=5).read())
                nodes = data["data"]["assetNodes"] or None
            except (OSError, KeyError, TypeError):
                time.sleep(0.5)
        assert nodes, "dagster dev did not serve the code location"
        [node] = [n for n in nodes if n["assetKey"]["path"] == ["fashion_mnist"]]
        assert node["opVersion"] == load_descriptor(FMNIST).code_version()


def test_no_empty_subsets_nodes():
    """Every subset is an asset under its own name; no dataset has an empty subsets node."""
    from definitions import defs

    keys = {"/".join(k.path) for k in defs.resolve_asset_graph().get_all_asset_keys()}
    assert {"fashion_mnist/pullover", "era5_model_level_wind/day2_morning", "wine_quality/red"} <= keys
    assert not [k for k in keys if k.endswith("/subsets")]
    assert {j.name for j in defs.jobs or []} >= {"fashion_mnist_subsets_job", "wine_quality_subsets_job"}
    assert "wine_quality_stats_subsets_job" not in {j.name for j in defs.jobs or []}
