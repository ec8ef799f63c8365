"""Helpers shared by tests: reading Croissant files back with mlcroissant, editing use cases."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
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
def serving(
    command: list[str], *, cwd: Path, env: dict[str, str], log: Path | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    """A server process in its own session (``dagster dev``, ``dg dev``), stopped by its process group;
    its output goes to ``log`` (default nowhere)."""
    with open(log or os.devnull, "wb") as out:
        proc = subprocess.Popen(
            command, cwd=cwd, env=env, start_new_session=True, stdout=out, stderr=subprocess.STDOUT
        )
        try:
            yield proc
        finally:
            stop_process_group(proc)


def dagster_dev(
    workspace: Path, *, cwd: Path, env: dict[str, str], port: int, log: Path | None = None
) -> AbstractContextManager[subprocess.Popen[bytes]]:
    """``dagster dev`` (webserver + daemon) for ``workspace``."""
    bin_dir = Path(sys.executable).parent
    command = [str(bin_dir / "dagster"), "dev", "-w", str(workspace), "-p", str(port)]
    return serving(command, cwd=cwd, env=env, log=log)


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


class JsonLinesProcess:
    """A long-lived helper process in its own session, spoken to in JSON lines with bounded waits.

    Lines it prints that are not JSON (``{`` or ``[`` first) are ignored; stderr goes to ``log``.
    """

    def __init__(self, argv: list[str], log: Path, env: dict[str, str] | None = None) -> None:
        import queue
        import threading

        self.log = log
        self._err = log.open("w")
        self.proc = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._err,
            text=True,
            env=env,
            start_new_session=True,
        )
        self._lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.startswith(("{", "[")):
                self._lines.put(line)
        self._lines.put(None)

    def send(self, message: Any) -> None:
        """Send ``message`` (a string as it is, anything else as JSON) as one line."""
        assert self.proc.stdin is not None
        self.proc.stdin.write((message if isinstance(message, str) else json.dumps(message)) + "\n")
        self.proc.stdin.flush()

    def answer(self, timeout: float) -> Any:
        """The next JSON line; TimeoutError after ``timeout`` s, AssertionError if the process exited."""
        import queue

        try:
            line = self._lines.get(timeout=timeout)
        except queue.Empty:
            raise TimeoutError(f"{self.log.stem}: no answer within {timeout} s; {self.tail()}") from None
        if line is None:
            raise AssertionError(f"{self.log.stem} exited ({self.proc.poll()}); {self.tail()}")
        return json.loads(line)

    def tail(self) -> str:
        self._err.flush()
        return "stderr: " + self.log.read_text()[-2000:]

    def close(self) -> None:
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self._err.close()


def public_object(endpoint: str) -> None:
    """``s3://datasets/raw/data.csv``, readable anonymously (a public bucket, as public data is)."""
    import boto3

    client = boto3.client("s3", endpoint_url=endpoint)
    client.put_bucket_acl(Bucket="datasets", ACL="public-read")
    client.put_object(Bucket="datasets", Key="raw/data.csv", Body=b"x\n1\n", ACL="public-read")


def public_s3_source(endpoint: str) -> Any:
    """A url source on the public ``s3://datasets/raw/data.csv``, its endpoint named by the descriptor."""
    from coralord_dagster.sources import Source

    return Source(
        kind="url",
        uri="s3://datasets/raw",
        base="s3://datasets/raw",
        files=("data.csv",),
        options={"storage_options": {"endpoint_url": endpoint}},
    )


def in_croissant_order(table: Any, split_column: str = "split") -> Any:
    """``table``'s rows in the order mlcroissant reads a whole version with splits: split by split in
    the order of their folders' names (``parts/test/`` before ``parts/train/``), each split in row order."""
    import pyarrow as pa

    if isinstance(table, pa.Table):
        table = table.to_pandas()
    return table.sort_values(split_column, kind="stable").reset_index(drop=True)


def execute_requests(defs: Any, instance: Any, result: Any) -> None:
    """Run a sensor result's run requests in process, as the daemon would start them."""
    for run in result.run_requests or []:
        job = defs.resolve_job_def(run.job_name)
        assert job.execute_in_process(
            instance=instance, asset_selection=run.asset_selection, run_config=run.run_config
        ).success


def requested(result: Any) -> list[str]:
    """The subsets a subsets-sensor result asks to publish: listed assets and new files alike."""
    names: list[str] = []
    for run in result.run_requests or []:
        names += [k.path[-1] for k in run.asset_selection or []]
        for op in (run.run_config or {}).get("ops", {}).values():
            names += op["config"]["subsets"]
    return sorted(names)


def graphql(base: str, query: str, **variables: object) -> dict[str, Any]:
    """One query to a Dagster webserver's GraphQL API (``base``: its URL); fails on GraphQL errors."""
    import urllib.request

    body = json.dumps({"query": query, "variables": variables}).encode()
    request = urllib.request.Request(base + "/graphql", body, {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        answer = json.loads(response.read())
    assert "errors" not in answer, answer
    return answer["data"]
