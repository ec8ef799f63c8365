import json
import subprocess
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from coralord_dagster.cli import cli
from coralord_dagster.use_case import publish_descriptor, run_pipeline
from coralord_dagster.workspace import Workspace

from .conftest import BIN


@pytest.fixture
def published(fmnist, ws: Workspace):
    publish_descriptor(fmnist, ws)
    return ws


def run(ws: Workspace, *args: str):
    return CliRunner().invoke(cli, ["--registry", str(ws.registry.path), *args])


def test_list_log_show(published: Workspace):
    out = run(published, "list")
    assert out.exit_code == 0 and "fashion_mnist" in out.output and "v1.0.0" in out.output
    listed = json.loads(run(published, "list", "--json").output)
    assert (
        listed[0]["name"] == "fashion_mnist"
        and listed[0]["rows"] == 700
        and listed[0]["tag"] == "fashion_mnist-v1.0.0"
    )
    log = json.loads(run(published, "log", "fashion_mnist", "--json").output)
    assert [v["version"] for v in log] == ["1.0.0"]
    shown = json.loads(run(published, "show", "fashion_mnist@v1.0.0").output)
    assert shown["version"] == "1.0.0" and shown["conformsTo"] == "http://mlcommons.org/croissant/1.1"
    content_id = listed[0]["content_id"]
    assert json.loads(run(published, "show", f"fashion_mnist@{content_id[:10]}").output)["version"] == "1.0.0"


def test_get_yields_what_the_pipeline_produced(fmnist, published: Workspace, tmp_path: Path):
    out = tmp_path / "out.parquet"
    result = run(published, "get", "fashion_mnist@v1.0.0", "-o", str(out))
    assert result.exit_code == 0, result.output
    assert pq.read_table(out).equals(run_pipeline(fmnist))
    csv = tmp_path / "labels.csv"
    assert (
        run(
            published, "get", "fashion_mnist", "--columns", "label,split", "--format", "csv", "-o", str(csv)
        ).exit_code
        == 0
    )
    assert csv.read_text().splitlines()[0] == "label,split"


def test_verify_detects_a_flipped_byte_and_names_the_part(published: Workspace):
    assert run(published, "verify", "fashion_mnist").exit_code == 0
    part = published.registry.manifest(published.registry.latest("fashion_mnist")).parts[0]
    path = Path(published.store.part_path(part.sha256))
    data = bytearray(path.read_bytes())
    data[100] ^= 0x01
    path.write_bytes(bytes(data))
    fast = run(published, "verify", "fashion_mnist", "--fast")  # per-chunk digests see it too
    assert fast.exit_code == 1 and part.sha256 in fast.output
    result = run(published, "verify", "fashion_mnist")
    assert result.exit_code == 1 and part.sha256 in result.output and "corrupt" in result.output
    get = run(published, "get", "fashion_mnist", "-o", str(path.parent / "x.parquet"))
    assert get.exit_code == 1 and "is corrupt" in get.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["show", "nope"], "dataset 'nope' is not in the registry"),
        (["show", "fashion_mnist@v7.0.0"], "has no version 'v7.0.0'"),
        (["get", "Bad-Name"], "invalid dataset name"),
        (["log", "fashion_mnist@vx"], "invalid revision"),
        (["get", "fashion_mnist", "--columns", "nope"], "has no column(s) ['nope']"),
    ],
)
def test_input_errors_exit_2_with_one_line(published: Workspace, args, message):
    result = run(published, *args)
    assert result.exit_code == 2
    assert len(result.stderr.strip().splitlines()) == 1 and message in result.stderr


def test_missing_registry_exits_2(tmp_path: Path):
    result = CliRunner().invoke(cli, ["--registry", str(tmp_path / "none"), "list"])
    assert result.exit_code == 2 and "no registry at" in result.stderr


def test_catalog_rebuild_command(published: Workspace):
    published.catalog.path.unlink()
    result = run(published, "catalog", "rebuild")
    assert result.exit_code == 0 and "1 version(s) indexed" in result.output
    assert published.catalog.query("SELECT name FROM datasets") == [("fashion_mnist",)]


def test_the_installed_command_runs(published: Workspace):
    proc = subprocess.run(
        [str(BIN / "coralord"), "--registry", str(published.registry.path), "list", "--json"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)[0]["version"] == "1.0.0"
