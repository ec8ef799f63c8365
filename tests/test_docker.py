"""Reproducible environments with a real Docker engine: a pipeline step in a locally built image."""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest

from coralord_dagster.descriptor import LoadedDescriptor, discover_descriptors
from coralord_dagster.orchestration import CoralordResource, build_definitions
from coralord_dagster.registry import dataset_dir
from coralord_dagster.workspace import Workspace

from . import docker_engine
from .conftest import BIN
from .helpers import edit_pipeline

pytestmark = [pytest.mark.docker, pytest.mark.slow]
IMAGE = "coralord/wine-quality:1"


@pytest.fixture(scope="session")
def docker_host() -> Iterator[str]:
    yield from docker_engine.engine()


@pytest.fixture
def in_docker(wine: list[LoadedDescriptor], docker_host: str, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The wine use case set up to build its image offline: a local base, wheels in its context."""
    import docker

    monkeypatch.setenv("DOCKER_HOST", docker_host)
    monkeypatch.delenv("CORALORD_DOCKER")
    monkeypatch.setenv("CORALORD_DOCKER_BASE", docker_engine.base_image(docker_host))
    monkeypatch.setenv("CORALORD_DOCKER_PIP_NO_INDEX", "1")
    use_case = wine[0].folder.parent
    env = use_case / "env"
    for wheel in docker_engine.wheels(env / "requirements.txt").glob("*.whl"):
        shutil.copy(wheel, env / "wheels")
    client = docker.DockerClient(base_url=docker_host)
    with contextlib.suppress(docker.errors.ImageNotFound):  # built afresh by the run, from the Dockerfile
        client.images.remove(IMAGE, force=True)
    return use_case


def test_a_step_runs_in_the_built_image_and_the_version_records_its_digest(
    in_docker: Path, docker_host: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    import docker

    resource = CoralordResource(registry=str(tmp_path / "registry"))
    defs = build_definitions(discover_descriptors(in_docker.parent), resource=resource)
    with dg.instance_for_test() as instance:
        result = defs.resolve_job_def("coralord_datasets_job").execute_in_process(instance=instance)
        assert result.success
        logs = [e.user_message for e in instance.all_logs(result.run_id)]
    client = docker.DockerClient(base_url=docker_host)
    image = client.images.get(IMAGE)
    assert client.containers.list(all=True, filters={"label": "coralord.step"}) == []  # removed after use
    # The step really ran in the container (its own Python, reported over Dagster Pipes).
    assert any("running process in the container, Python 3.11" in m for m in logs), logs[-20:]

    ws = Workspace.open(tmp_path / "registry")
    doc = json.loads((ws.registry.path / dataset_dir("wine_quality") / "croissant.json").read_text())
    env = doc["coralord:environment"]
    assert env == {
        "image": IMAGE,
        "dockerfile": "../env/Dockerfile",
        "digest": image.id,
        "runner": "dagster-docker PipesDockerClient",
    }
    [mat] = result.asset_materializations_for_node("wine_quality")
    assert mat.metadata["coralord/environment"].value["digest"] == image.id

    # `coralord show` displays it.
    show = subprocess.run(
        [str(BIN / "coralord"), "--registry", str(ws.registry.path), "show", "wine_quality"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(show.stdout)["coralord:environment"]["digest"] == image.id

    # The same stage in-process gives the same content: the image pins the environment, not the data.
    monkeypatch.setenv("CORALORD_DOCKER", "off")
    other = CoralordResource(registry=str(tmp_path / "registry-in-process"))
    with dg.instance_for_test() as instance:
        assert (
            build_definitions(discover_descriptors(in_docker.parent), resource=other)
            .resolve_job_def("coralord_datasets_job")
            .execute_in_process(instance=instance)
            .success
        )
    local = Workspace.open(tmp_path / "registry-in-process")
    assert (
        local.registry.manifest(local.registry.latest("wine_quality")).content_id
        == ws.registry.manifest(ws.registry.latest("wine_quality")).content_id
    )
    monkeypatch.delenv("CORALORD_DOCKER")

    # A step failing in the container fails the run clearly and publishes nothing.
    edit_pipeline(in_docker, "    raw = source.to_pandas()\n", '    raise ValueError("bad batch")\n')
    with dg.instance_for_test() as instance:
        failed = defs.resolve_job_def("coralord_datasets_job").execute_in_process(
            instance=instance, raise_on_error=False
        )
        errors = [e.step_failure_data.error.to_string() for e in failed.all_events if e.is_step_failure]
        logs = " ".join(e.user_message for e in instance.all_logs(failed.run_id))
    assert not failed.success
    assert any(f"failed in image {IMAGE}" in m for m in errors), errors
    assert "ValueError: bad batch" in logs
    assert [str(v.version) for v in ws.registry.versions("wine_quality")] == ["1.0.0"]
