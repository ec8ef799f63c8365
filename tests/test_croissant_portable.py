"""Every use case's Croissant, read by mlcroissant wherever a consumer has it: in the publisher's
registry, exported at a tag into an empty folder, and from a ``git clone`` on another path after the
storage moved. Each time the records are exactly the version's rows and every part's sha256 is checked.
TensorFlow Datasets' ``CroissantBuilder`` builds them split by split. (Object storage over HTTP:
tests/test_s3.py.)"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from click.testing import CliRunner

from coralord_dagster.cli import cli
from coralord_dagster.client import open_dataset
from coralord_dagster.registry import Registry, dataset_dir
from coralord_dagster.workspace import Workspace

from .conftest import BIN
from .croissant_check import assert_croissant_gives, read_in_subprocess
from .helpers import unavailable
from .test_e2e import env_for, fresh_checkout, run_main_job
from .test_s3 import allow_public_reads
from .tfds_env import tfds_python

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``.coralord/`` after the README's main job: every use case's datasets and subsets."""
    tmp = tmp_path_factory.mktemp("portable")
    env = env_for(tmp, GIT_CONFIG_GLOBAL=str(tmp / "gitconfig"), GIT_CONFIG_NOSYSTEM="1")
    env.pop("DAGSTER_HOME")
    checkout = fresh_checkout(tmp)
    run_main_job(checkout, env)
    return checkout / ".coralord"


def versions(registry: Path) -> list[str]:
    refs = [f"{v.name}@v{v.version}" for v in Registry(registry).all_versions()]
    assert len(refs) >= 20 and any("/" in r for r in refs)  # datasets and subsets of every use case
    return refs


@pytest.fixture(scope="module")
def s3_home(
    s3_server: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Path, dict[str, str]]]:
    """The README's main job with its parts on S3 (moto over HTTP on 127.0.0.1), the parts' prefix
    readable by anyone as a team publishing open data sets it; yields ``.coralord/`` and the env."""
    import boto3

    tmp = tmp_path_factory.mktemp("portable-s3")
    aws = {
        "AWS_ACCESS_KEY_ID": "portable-key",
        "AWS_SECRET_ACCESS_KEY": "portable-secret",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": s3_server,
    }
    s3 = boto3.client("s3", endpoint_url=s3_server, **_boto_credentials(aws))
    s3.create_bucket(Bucket="portable")
    allow_public_reads(s3_server, "portable", "registry/parts/", **_boto_credentials(aws))
    env = env_for(tmp, GIT_CONFIG_GLOBAL=str(tmp / "gitconfig"), GIT_CONFIG_NOSYSTEM="1", **aws)
    env["CORALORD_STORAGE"] = "s3://portable/registry"
    env.pop("DAGSTER_HOME")
    checkout = fresh_checkout(tmp)
    run_main_job(checkout, env)
    yield checkout / ".coralord", env


def _boto_credentials(aws: dict[str, str]) -> dict[str, str]:
    return {
        "aws_access_key_id": aws["AWS_ACCESS_KEY_ID"],
        "aws_secret_access_key": aws["AWS_SECRET_ACCESS_KEY"],
        "region_name": aws["AWS_DEFAULT_REGION"],
    }


@pytest.fixture
def moved_storage(home: Path, tmp_path: Path) -> Iterator[Path]:
    """The storage, moved away from where the publisher had it (put back afterwards)."""
    moved = tmp_path / "moved-storage"
    os.rename(home / "storage", moved)
    try:
        yield moved
    finally:
        os.rename(moved, home / "storage")


def test_the_registrys_croissants_give_every_versions_rows(home: Path):
    ws = Workspace.open(home / "registry")
    for ref in versions(home / "registry"):
        ds = open_dataset(ref, workspace=ws)
        assert_croissant_gives(
            home / "registry" / dataset_dir(ds.name) / "croissant.json", ds.to_arrow(), ref
        )


def test_git_never_holds_links_to_the_publishers_disk(home: Path):
    registry = home / "registry"
    for tag in Registry(registry).repo.tags:
        listing = subprocess.run(
            ["git", "ls-tree", "-r", str(tag)], cwd=registry, capture_output=True, text=True, check=True
        ).stdout
        assert listing and not [line for line in listing.splitlines() if line.startswith("120000")], tag


def test_export_at_a_tag_into_an_empty_folder(home: Path, tmp_path: Path):
    registry = str(home / "registry")
    ws = Workspace.open(registry)
    runner = CliRunner()
    for i, ref in enumerate(versions(home / "registry")):
        dest = tmp_path / f"export-{i}"
        result = runner.invoke(cli, ["--registry", registry, "export", ref, str(dest)])
        assert result.exit_code == 0, result.output
        croissant = Path(result.stdout.strip())
        assert croissant == dest / "croissant.json"
        assert_croissant_gives(croissant, open_dataset(ref, workspace=ws).to_arrow(), f"export of {ref}")
    # as a user runs it, too
    dest = tmp_path / "by-hand"
    proc = subprocess.run(
        [str(BIN / "coralord"), "--registry", registry, "export", "fashion_mnist@v1.0.0", str(dest)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0 and proc.stdout.strip() == str(dest / "croissant.json"), proc.stderr
    assert "fashion_mnist v1.0.0 ->" in proc.stderr


def test_a_clone_elsewhere_exports_from_moved_storage(
    home: Path, moved_storage: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    clone = tmp_path / "elsewhere" / "clone"
    subprocess.run(["git", "clone", "-q", str(home / "registry"), str(clone)], check=True)
    assert not list(clone.rglob("parts"))  # nothing in Git points at the publisher's disk
    assert not (home / "storage").exists()

    # Without the documented setting the clone says what to do, without a traceback.
    runner = CliRunner()
    failed = runner.invoke(cli, ["--registry", str(clone), "export", "fashion_mnist", str(tmp_path / "x")])
    assert failed.exit_code == 2 and "set CORALORD_STORAGE" in failed.stderr, failed.output
    assert "Traceback" not in failed.output

    monkeypatch.setenv("CORALORD_STORAGE", str(moved_storage))  # the documented resolution
    ws = Workspace.open(clone)
    for i, ref in enumerate(versions(clone)):
        dest = tmp_path / f"export-{i}"
        result = runner.invoke(cli, ["--registry", str(clone), "export", ref, str(dest)])
        assert result.exit_code == 0, result.output
        assert_croissant_gives(dest / "croissant.json", open_dataset(ref, workspace=ws).to_arrow(), ref)
    shutil.rmtree(tmp_path / "elsewhere")


@pytest.fixture(scope="module")
def tfds(home: Path) -> Path:
    python = tfds_python()
    if isinstance(python, str):
        unavailable(python)
    assert isinstance(python, Path)
    return python


@pytest.mark.parametrize(
    "ref", ["fashion_mnist@v1.0.0", "fashion_mnist/pullover@v1.0.0", "wine_quality@v1.0.0"]
)
def test_tfds_croissant_builder_builds_every_split(home: Path, tfds: Path, tmp_path: Path, ref: str):
    """The docs' TFDS recipe: export, then ``CroissantBuilder``; each split holds exactly our rows."""
    ds = open_dataset(ref, workspace=Workspace.open(home / "registry"))
    croissant = ds.local_copy(tmp_path / "export")
    out = tmp_path / "tfds.json"
    proc = subprocess.run(
        [
            str(tfds),
            str(Path(__file__).parent / "tfds_build.py"),
            str(croissant),
            str(tmp_path / "data"),
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    built = json.loads(out.read_text())
    # the builder is named after the dataset or subset itself, never after the upstream source
    assert built["name"] == ds.name.replace("/", "__") and built["version"] == str(ds.version)
    table = ds.to_arrow()
    ours = {
        s: table.filter(pc.equal(table.column("split"), s)) for s in set(table.column("split").to_pylist())
    }
    assert set(built["splits"]) == set(ours)
    for split, got in built["splits"].items():
        want = ours[split]
        assert len(got["rows"]) == want.num_rows, split
        for f in want.schema:
            if pa.types.is_struct(f.type):  # images: decoded to pixels, in order
                assert [r[f.name]["dtype"] for r in got["rows"]] == ["uint8"] * want.num_rows
                continue
            values = [r[f.name] for r in got["rows"]]
            if pa.types.is_floating(f.type):
                # float64 stays float64; TFDS keeps floats in float32 lists (tf.train.Example), so the
                # values it holds are ours rounded to float32 — a TFDS limit, documented.
                assert got["dtypes"][f.name] == "float64", f.name
                assert values == np.asarray(want.column(f.name), dtype=np.float32).astype(float).tolist()
            else:
                assert values == want.column(f.name).to_pylist(), (split, f.name)


def test_on_s3_every_part_is_an_http_url_and_every_export_gives_the_rows(
    s3_home: tuple[Path, dict[str, str]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    home, env = s3_home
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION", "AWS_ENDPOINT_URL"):
        monkeypatch.setenv(key, env[key])
    registry = home / "registry"
    ws = Workspace.open(registry)
    assert ws.store.url == "s3://portable/registry"
    runner = CliRunner()
    for i, ref in enumerate(versions(registry)):
        ds = open_dataset(ref, workspace=ws)
        doc = ds.croissant
        urls = [d["contentUrl"] for d in doc["distribution"] if d["@type"] == "cr:FileObject"]
        assert urls == [
            f"{env['AWS_ENDPOINT_URL']}/portable/registry/parts/{p.sha256[:2]}/{p.sha256}.parquet"
            for p in ds.manifest.parts
        ], ref
        dest = tmp_path / f"export-{i}"
        result = runner.invoke(cli, ["--registry", str(registry), "export", ref, str(dest)])
        assert result.exit_code == 0, result.output
        assert_croissant_gives(dest / "croissant.json", ds.to_arrow(), f"S3 export of {ref}")
    # The registry's own Croissant, read over HTTP with no credentials: every part's sha256 checks.
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(key)
    croissant = registry / "datasets" / "wine_quality" / "croissant.json"
    parts = len(json.loads(croissant.read_text())["distribution"]) - 2
    proc = read_in_subprocess(croissant, "part_files", tmp_path / "croissant-cache")
    assert proc.returncode == 0 and proc.stdout.split() == [str(parts)], proc.stderr[-2000:]
