"""A real Docker engine for the tests: the configured one, or a ``dockerd`` the tests start themselves.

Nothing can be pulled from an image registry here, so the base image (Debian bookworm with Python 3.11
and pip) is built locally with ``debootstrap`` and ``docker import``, and the Python packages a use
case's image needs are downloaded as wheels from the package index into its build context. Images
and wheels are kept under ``~/.cache/coralord-tests`` between runs.

Where no engine can be had (no ``dockerd``, not root) the Docker tests are skipped with the reason,
unless ``REQUIRE_SYSTEM_TESTS=1`` (CI sets it), which turns that into a failure.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from .helpers import stop_process_group, unavailable

BASE_IMAGE = "coralord-test/bookworm-python:1"
CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "coralord-tests"
DEBIAN_MIRROR = "http://deb.debian.org/debian"


def _ping(host: str) -> bool:
    import docker

    try:
        docker.DockerClient(base_url=host, timeout=5).ping()
        return True
    except Exception:
        return False


def engine() -> Iterator[str]:
    """Yield a ``DOCKER_HOST`` URL of a running engine (started here if need be, stopped after)."""
    for host in filter(None, [os.environ.get("DOCKER_HOST"), "unix:///var/run/docker.sock"]):
        if _ping(host):
            yield host
            return
    dockerd = shutil.which("dockerd") or ("/usr/sbin/dockerd" if Path("/usr/sbin/dockerd").exists() else None)
    if dockerd is None or os.geteuid() != 0:
        unavailable("no Docker engine: dockerd is not installed or the tests do not run as root")
    run_dir = Path(tempfile.mkdtemp(prefix="crd-"))  # short: a unix socket path has a length limit
    host = f"unix://{run_dir}/docker.sock"
    data_root = CACHE / "docker"
    data_root.mkdir(parents=True, exist_ok=True)
    log = (run_dir / "dockerd.log").open("wb")
    proc = subprocess.Popen(
        [
            dockerd,
            "--data-root",
            str(data_root),
            "--exec-root",
            str(run_dir / "exec"),
            "-H",
            host,
            "--pidfile",
            str(run_dir / "dockerd.pid"),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        while not _ping(host):
            if proc.poll() is not None or time.monotonic() > deadline:
                unavailable(f"dockerd did not start: {(run_dir / 'dockerd.log').read_text()[-1500:]}")
            time.sleep(0.3)
        yield host
    finally:
        stop_process_group(proc, timeout=30)
        log.close()
        # dockerd leaves its network namespace mounted under its exec root.
        for line in Path("/proc/self/mounts").read_text().splitlines():
            mount_point = line.split()[1]
            if mount_point.startswith(str(run_dir)):
                subprocess.run(["umount", "-l", mount_point], check=False, capture_output=True)
        shutil.rmtree(run_dir, ignore_errors=True)


def base_image(host: str) -> str:
    """The local base image (Debian bookworm, Python 3.11, pip), built with debootstrap if missing."""
    import docker

    client = docker.DockerClient(base_url=host)
    try:
        client.images.get(BASE_IMAGE)
        return BASE_IMAGE
    except docker.errors.ImageNotFound:
        pass
    debootstrap = shutil.which("debootstrap") or "/usr/sbin/debootstrap"
    if not Path(debootstrap).exists():
        unavailable("debootstrap is not installed (apt-get install debootstrap)")
    with tempfile.TemporaryDirectory(prefix="coralord-rootfs-") as rootfs:
        subprocess.run(
            [
                debootstrap,
                "--variant=minbase",
                "--include=python3,python3-pip,ca-certificates",
                "bookworm",
                rootfs,
                DEBIAN_MIRROR,
            ],
            check=True,
            capture_output=True,
            timeout=900,
        )
        tar = subprocess.Popen(["tar", "-C", rootfs, "-c", "."], stdout=subprocess.PIPE)
        assert tar.stdout is not None
        client.api.import_image_from_stream(tar.stdout, repository=BASE_IMAGE.split(":")[0], tag="1")
        tar.wait(timeout=300)
    client.images.get(BASE_IMAGE)
    return BASE_IMAGE


def wheels(requirements: Path) -> Path:
    """Wheels of ``requirements`` (for Python 3.11 on Linux), downloaded once from the package index."""
    dest = CACHE / "wheels" / requirements.parent.parent.name
    dest.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--quiet",
            "--only-binary=:all:",
            "--dest",
            str(dest),
            "-r",
            str(requirements),
        ],
        check=True,
        capture_output=True,
        timeout=600,
    )
    return dest
