"""Helpers shared by tests: reading Croissant files back with mlcroissant, editing use cases."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import mlcroissant as mlc


def croissant_records(path: Path | str, record_set: str = "records") -> list[dict[str, Any]]:
    logging.getLogger().setLevel(logging.ERROR)
    return list(mlc.Dataset(jsonld=str(path)).records(record_set))


def field_values(records: list[dict[str, Any]], field: str) -> list[Any]:
    values = [r[f"records/{field}"] for r in records]
    return [v.decode() if isinstance(v, bytes) else v for v in values]


def edit_pipeline(use_case: Path, old: str, new: str) -> None:
    path = use_case / "pipeline.py"
    text = path.read_text()
    assert old in text, old
    path.write_text(text.replace(old, new))


def asset_of(defs: Any, name: str) -> Any:
    """The unbound asset definition for ``name`` (to materialize with a test's own resources)."""
    import dagster as dg

    key = dg.AssetKey(name.split("/"))
    return next(a for a in defs.assets if a.key == key)


def run_ok(
    cmd: list[str], *, cwd: Path, env: dict[str, str], timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """Run a command as a user would; fail the test with its stderr if it fails."""
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


@contextmanager
def dagster_dev(
    workspace: Path, *, cwd: Path, env: dict[str, str], port: int
) -> Iterator[subprocess.Popen[bytes]]:
    """``dagster dev`` (webserver + daemon) in its own session, stopped by its process group."""
    bin_dir = Path(sys.executable).parent
    proc = subprocess.Popen(
        [str(bin_dir / "dagster"), "dev", "-w", str(workspace), "-p", str(port)],
        cwd=cwd,
        env=env,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield proc
    finally:
        stop_process_group(proc)


def unavailable(reason: str) -> None:
    """Skip a test whose system component (Chromium, a Docker engine) is missing here; where
    ``REQUIRE_SYSTEM_TESTS=1`` (CI sets it) fail instead, so CI never passes without running it."""
    import pytest

    if os.environ.get("REQUIRE_SYSTEM_TESTS") == "1":
        pytest.fail(f"required here (REQUIRE_SYSTEM_TESTS=1): {reason}")
    pytest.skip(reason)


def stop_process_group(proc: subprocess.Popen[bytes], timeout: float = 20) -> None:
    """Stop a process started in its own session, and its children: SIGTERM, then SIGKILL."""
    if proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def wait_for_http(url: str, timeout: float = 60, proc: subprocess.Popen[bytes] | None = None) -> None:
    """Until ``url`` answers (a server this test started is up); fails if ``proc`` exits first."""
    import time
    import urllib.request

    deadline = time.time() + timeout
    while True:
        try:
            urllib.request.urlopen(url, timeout=2)
            return
        except OSError:
            if proc is not None and proc.poll() is not None:
                raise RuntimeError(f"the server for {url} exited") from None
            if time.time() > deadline:
                raise RuntimeError(f"{url} did not answer within {timeout} s") from None
            time.sleep(0.2)
