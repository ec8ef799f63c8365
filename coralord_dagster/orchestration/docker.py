"""Reproducible environments: run a dataset's pipeline in the Docker image its descriptor names.

A descriptor's ``environment: {image, dockerfile}`` pins the software its pipeline runs with. The
pipeline then runs in that image through dagster-docker's ``PipesDockerClient``: one container per
step, its logs and result streamed back over Dagster Pipes, while the run itself — reading inputs,
publishing parts, committing to the registry — stays in the host process. (The ``docker_executor``
would run whole Dagster steps in the image instead, which needs Dagster, coralord, the registry and its
credentials inside every image; Pipes needs only ``dagster-pipes``, and credentials never enter it.)

The image is built from the descriptor's Dockerfile when it is missing (``CORALORD_DOCKER_BASE`` sets
its ``BASE`` build argument, e.g. a locally built base when no registry can be reached). The image's
digest is recorded in the version's Croissant (``coralord:environment``), so the version can be rebuilt
in exactly that environment. Without a reachable Docker engine the pipeline runs in-process, and the
Croissant and the materialization metadata say so; ``CORALORD_DOCKER=off`` forces that.
"""

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import dagster as dg
import pyarrow.parquet as pq
from pydantic import BaseModel

from coralord_dagster.client import DatasetVersion
from coralord_dagster.descriptor import LoadedDescriptor
from coralord_dagster.errors import PipelineError
from coralord_dagster.publish import Result
from coralord_dagster.sources import Source
from coralord_dagster.use_case import Runner, in_process

STEP_SCRIPT = Path(__file__).with_name("docker_step.py")
RUNNER = "dagster-docker PipesDockerClient"


def docker_client() -> tuple[Any, str | None]:
    """A Docker client that answers, or (None, why not)."""
    if os.environ.get("CORALORD_DOCKER", "").lower() in ("off", "0", "false", "no"):
        return None, "CORALORD_DOCKER=off"
    try:
        import docker

        client = docker.from_env(timeout=30)
        client.ping()
    except Exception as e:  # no socket, no permission, engine down: all mean "no Docker here"
        return None, f"no Docker engine reachable: {_why(e)}"
    return client, None


def _why(e: Exception) -> str:
    """Why the Docker engine did not answer, in words (docker-py wraps the cause in long reprs).

    >>> _why(Exception("('Connection aborted.', FileNotFoundError(2, 'No such file or directory'))"))
    'no Docker socket (start an engine, or set DOCKER_HOST)'
    """
    text = str(e)
    if "FileNotFoundError" in text or "No such file" in text:
        return "no Docker socket (start an engine, or set DOCKER_HOST)"
    if "PermissionError" in text or "Permission denied" in text:
        return "permission denied on the Docker socket"
    if "Connection refused" in text:
        return "the Docker engine refuses connections"
    return f"{type(e).__name__}: {text[:200]}"


def ensure_image(client: Any, desc: LoadedDescriptor, log: Any = None) -> Any:
    """The descriptor's image, built from its Dockerfile when it is not there yet."""
    import docker

    env = desc.spec.environment
    assert env.image is not None
    try:
        return client.images.get(env.image)
    except docker.errors.ImageNotFound:
        if not env.dockerfile:
            raise PipelineError(
                f"{desc.path}: field 'environment.image': image {env.image!r} is not present and no "
                "'environment.dockerfile' says how to build it; build or load the image, or add a Dockerfile"
            ) from None
    dockerfile = desc.local_file(env.dockerfile, "environment.dockerfile")  # inside the use case
    if not dockerfile.is_file():
        raise PipelineError(f"{desc.path}: field 'environment.dockerfile': {dockerfile} does not exist")
    buildargs = {"BASE": os.environ["CORALORD_DOCKER_BASE"]} if os.environ.get("CORALORD_DOCKER_BASE") else {}
    if os.environ.get("CORALORD_DOCKER_PIP_NO_INDEX"):
        buildargs["PIP_NO_INDEX"] = "1"
    if log:
        log.info(f"building {env.image} from {dockerfile}")
    try:
        image, _ = client.images.build(
            path=str(dockerfile.parent),
            dockerfile=dockerfile.name,
            tag=env.image,
            buildargs=buildargs,
            network_mode="host",
            rm=True,
        )
    except docker.errors.BuildError as e:
        tail = " | ".join(str(c.get("stream", c.get("error", ""))).strip() for c in list(e.build_log)[-5:])
        raise PipelineError(
            f"{desc.path}: building {env.image} from {dockerfile} failed: {e.msg}; {tail}"
        ) from None
    return image


def environment_runner(
    context: dg.AssetExecutionContext, desc: LoadedDescriptor
) -> tuple[Runner, dict[str, Any] | None]:
    """How to run ``desc``'s pipeline, and what the Croissant records about where it ran."""
    env = desc.spec.environment
    if not env.image:
        return in_process, None
    described: dict[str, Any] = env.model_dump(exclude_none=True)
    client, why_not = docker_client()
    if client is None:
        note = f"Docker unavailable ({why_not}): the pipeline ran in-process, not in {env.image}"
        context.log.warning(f"{desc.name}: {note}")
        return in_process, {**described, "digest": None, "runner": "in-process", "fallback": note}
    image = ensure_image(client, desc, context.log)
    described.update(digest=image.id, runner=RUNNER)

    def run_in_container(desc: LoadedDescriptor, func: Any, source: Any, kwargs: dict[str, Any]) -> Any:
        return _run_step(context, client, desc, image.id, func, source, kwargs)

    return run_in_container, described


def _run_step(
    context: dg.AssetExecutionContext,
    client: Any,
    desc: LoadedDescriptor,
    image_id: str,
    func: Any,
    source: Any,
    kwargs: dict[str, Any],
) -> Any:
    from dagster_docker import PipesDockerClient
    from dagster_pipes import DagsterPipesError

    io_dir = Path(tempfile.mkdtemp(prefix="coralord-step-"))
    os.chmod(io_dir, 0o777)  # the container's user writes the output here
    # The use case's files are mounted read-only at their own paths, so paths mean the same inside.
    folders = {desc.folder.resolve(), desc.pipeline_file().parent}
    volumes = {str(f): {"bind": str(f), "mode": "ro"} for f in folders}
    volumes[str(STEP_SCRIPT)] = {"bind": "/coralord/step.py", "mode": "ro"}
    volumes[str(io_dir)] = {"bind": str(io_dir), "mode": "rw"}
    if isinstance(source, DatasetVersion):
        path = io_dir / "input.parquet"
        pq.write_table(source.to_arrow(verify=True), path)
        given: dict[str, Any] = {
            "kind": "dataset",
            "name": source.name,
            "version": source.version,
            "path": str(path),
        }
    elif isinstance(source, Source) and "://" not in source.location:
        location = str(Path(source.location).resolve())
        volumes[location] = {"bind": location, "mode": "ro"}
        given = {"kind": "url", "location": location, "files": list(source.files)}
    else:
        raise PipelineError(
            f"{desc.path}: field 'environment.image': a pipeline in a Docker image reads a 'dataset' source "
            f"or local files; {getattr(source, 'uri', source)!r} is neither (publish it as a dataset first)"
        )
    params = kwargs.get("params")
    extras = {
        "pipeline_file": str(desc.pipeline_file()),
        "function": func.__name__,
        "input": given,
        "output": str(io_dir / "output.parquet"),
        "params": params.model_dump(mode="json") if isinstance(params, BaseModel) else params,
    }
    try:
        try:
            completed = PipesDockerClient().run(
                context=context,
                image=image_id,
                command=["python3", "/coralord/step.py"],
                extras=extras,
                container_kwargs={
                    "volumes": volumes,
                    "network_mode": "host",
                    "working_dir": str(desc.folder.resolve()),
                    "labels": {"coralord.step": io_dir.name},
                },
            )
        except DagsterPipesError as e:
            raise PipelineError(
                f"{desc.path}: pipeline {desc.spec.pipeline} failed in image {desc.spec.environment.image} "
                f"({image_id[:19]}): {e}; the step's traceback is in the run's logs"
            ) from None
        messages = [
            m for m in completed.get_custom_messages() if isinstance(m, dict) and "coralord/output" in m
        ]
        if not messages:
            raise PipelineError(f"{desc.path}: the step in {image_id[:19]} reported no output")
        # Read into memory: the step's folder goes away. A DataFrame was converted in the container
        # exactly as the publisher converts one in-process, so both give the same parts.
        table = pq.read_table(messages[-1]["coralord/output"]).combine_chunks()
    finally:
        shutil.rmtree(io_dir, ignore_errors=True)
        # PipesDockerClient stops its container but leaves it; the logs are in Dagster already.
        for container in client.containers.list(all=True, filters={"label": f"coralord.step={io_dir.name}"}):
            container.remove(force=True)
    context.log.info(f"{desc.name}: {table.num_rows} rows computed in {image_id[:19]}")
    return Result(table, messages[-1]["metrics"]) if messages[-1].get("metrics") else table
