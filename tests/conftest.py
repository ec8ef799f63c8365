"""Shared fixtures: real Git registries, real DuckDB files, a real S3-compatible server process."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from coralord_dagster.descriptor import LoadedDescriptor, discover_descriptors, load_descriptor
from coralord_dagster.registry import Registry
from coralord_dagster.sources import override_variable
from coralord_dagster.workspace import Workspace
from use_cases.huggingface_fmnist.fixture import make_fixture
from use_cases.wine_quality.fixture import make_fixture as make_wine

from .helpers import wait_for_http

REPO = Path(__file__).resolve().parent.parent
FMNIST = REPO / "use_cases" / "huggingface_fmnist"
BIN = Path(sys.executable).parent


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No test sees the developer's coralord settings, cache or Git identity."""
    for var in list(os.environ):
        if var.startswith(("CORALORD_", "DAGSTER_HOME", "AWS_", "FSSPEC_")):
            monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("CORALORD_CACHE", str(tmp_path / "cache"))
    # Docker environments run only where a test asks for them (tests/test_docker.py): elsewhere a
    # descriptor's image would depend on whether this machine happens to run a Docker engine.
    monkeypatch.setenv("CORALORD_DOCKER", "off")
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(tmp_path / "gitconfig"))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")


@pytest.fixture(scope="session")
def fmnist_source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The Fashion-MNIST fixture in the Hub's Parquet layout (generated once per session)."""
    return make_fixture(tmp_path_factory.mktemp("fmnist-source"))


@pytest.fixture
def fmnist(monkeypatch: pytest.MonkeyPatch, fmnist_source: Path, tmp_path: Path) -> LoadedDescriptor:
    """The shipped fashion_mnist descriptor, its source pointed at a private copy of the fixture."""
    src = tmp_path / "fmnist-source"
    shutil.copytree(fmnist_source, src)
    monkeypatch.setenv(override_variable("fashion_mnist"), str(src))
    return load_descriptor(FMNIST)


@pytest.fixture
def wine(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[LoadedDescriptor]:
    """The wine_quality stage descriptors (a private copy) and its CSV files in the UCI layout."""
    dest = tmp_path / "use_cases" / "wine_quality"
    shutil.copytree(REPO / "use_cases" / "wine_quality", dest, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setenv(override_variable("wine_quality_raw"), str(make_wine(tmp_path / "wine-source")))
    return discover_descriptors(dest.parent)


@pytest.fixture
def use_case_copy(tmp_path: Path) -> Path:
    """A private copy of the fashion_mnist use case folder, free to edit."""
    dest = tmp_path / "use_cases" / "huggingface_fmnist"
    shutil.copytree(FMNIST, dest, ignore=shutil.ignore_patterns("__pycache__"))
    return dest


@pytest.fixture
def ws(tmp_path: Path) -> Workspace:
    """A fresh local registry with local storage and a catalog."""
    return Workspace.open(tmp_path / "coralord" / "registry", create=True)


@pytest.fixture
def bare_remote(tmp_path: Path) -> Path:
    import git

    path = tmp_path / "remote.git"
    git.Repo.init(path, bare=True, initial_branch="main")
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def s3_server() -> Iterator[str]:
    """A real S3-compatible HTTP server process (moto) on 127.0.0.1; yields its endpoint URL."""
    port = free_port()
    proc = subprocess.Popen(
        [str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        wait_for_http(endpoint + "/moto-api/", timeout=30, proc=proc)
    except RuntimeError:
        proc.kill()
        raise
    yield endpoint
    proc.terminate()
    proc.wait(timeout=10)


@pytest.fixture
def s3(s3_server: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Credentials and endpoint for the S3 server, as a user would set them (environment only)."""
    urllib.request.urlopen(urllib.request.Request(s3_server + "/moto-api/reset", method="POST"))
    env = {
        "AWS_ACCESS_KEY_ID": "coralord-test-key",
        "AWS_SECRET_ACCESS_KEY": "coralord-test-secret-do-not-leak",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": s3_server,
    }
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    import s3fs

    s3fs.S3FileSystem.clear_instance_cache()
    fs = s3fs.S3FileSystem(endpoint_url=s3_server)
    fs.mkdir("datasets")
    return env


def registry_tags(path: Path) -> list[str]:
    return sorted(t.name for t in Registry(path).repo.tags)
