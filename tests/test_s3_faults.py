"""S3 that fails: publish, get, verify through a proxy that breaks a share of all requests.

The ``coralord`` CLI runs as a user runs it (a subprocess; endpoint, credentials and storage from the
environment) and the Python API in this process. Every command must either succeed with exactly the data
that was published, or fail cleanly: exit code 3, one ``coralord: error: ...`` line, no traceback, and a
failed publish leaves no tag and a registry that ``git fsck`` finds intact. Never wrong data.
"""

from __future__ import annotations

import os
import random
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from coralord_dagster.client import open_dataset
from coralord_dagster.croissant import DatasetInfo
from coralord_dagster.errors import StorageUnavailableError
from coralord_dagster.workspace import Workspace

from .conftest import BIN
from .faulty_proxy import DEFAULT_KINDS, FaultyS3, faulty_s3  # noqa: F401 - a fixture

pytestmark = pytest.mark.slow

STORAGE = "s3://datasets/coralord"
NAME = "faulty_probe"
#: Failure rate of the proxy while the commands run (a quarter or more of all requests).
RATE = 0.3
#: Seconds within which a command must give up when storage is down.
OUTAGE_LIMIT_S = 60
COLUMNS = ["id", "label"]
WHERE = "label = 3 AND value > 0.25"

PIPELINE = """
import pyarrow as pa


def build(source) -> pa.Table:
    return source.read_parquet("table.parquet")
"""

DESCRIPTOR = f"""
name: {NAME}
description: A small table published through a storage proxy that drops and breaks requests.
license: CC0-1.0
source:
  kind: url
  url: source
  files: [table.parquet]
pipeline: pipeline.py:build
splits:
  column: split
  names: [train, test]
storage:
  part_rows: 1024
"""


def make_table(rows: int = 12_000, seed: int = 7) -> pa.Table:
    rng = random.Random(seed)
    return pa.table(
        {
            "id": pa.array(range(rows), pa.int64()),
            "label": pa.array([rng.randrange(10) for _ in range(rows)], pa.int64()),
            "value": pa.array([rng.random() for _ in range(rows)], pa.float64()),
            "text": pa.array([f"row {i} {rng.getrandbits(40):x}" for i in range(rows)], pa.string()),
            # contiguous splits: a version keeps the rows in this order (it groups rows by split)
            "split": pa.array([("train", "test")[i >= rows * 4 // 5] for i in range(rows)], pa.string()),
        }
    )


def write_use_case(root: Path, table: pa.Table) -> Path:
    (root / "source").mkdir(parents=True, exist_ok=True)
    pq.write_table(table, root / "source" / "table.parquet")
    (root / "pipeline.py").write_text(PIPELINE)
    (root / "descriptor.yaml").write_text(DESCRIPTOR)
    return root / "descriptor.yaml"


def expected_where(table: pa.Table) -> pa.Table:
    return table.filter(pc.and_(pc.equal(table["label"], 3), pc.greater(table["value"], 0.25)))


class Cli:
    """``coralord`` as a subprocess with the user's environment; every run gets a fresh part cache, so
    that each one reads from storage rather than from what an earlier run cached."""

    def __init__(self, faulty: FaultyS3, tmp_path: Path) -> None:
        self.tmp = tmp_path
        self.registry = tmp_path / "registry"
        self.env = {
            **os.environ,
            **faulty.env,
            "CORALORD_STORAGE": STORAGE,
            "CORALORD_REGISTRY": str(self.registry),
        }
        self.env.pop("CORALORD_STORAGE_RETRIES", None)  # the defaults, as a user has them
        self.runs = 0

    def __call__(self, *args: str, timeout: float = 300) -> tuple[subprocess.CompletedProcess[str], float]:
        self.runs += 1
        env = {**self.env, "CORALORD_CACHE": str(self.tmp / f"cache-{self.runs}")}
        start = time.monotonic()
        proc = subprocess.run(
            [str(BIN / "coralord"), *args],
            cwd=self.tmp,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        return proc, time.monotonic() - start


def assert_clean(proc: subprocess.CompletedProcess[str], what: str) -> bool:
    """True if the command succeeded; False if it failed the way an unreachable storage must fail."""
    said = f"{what}: exit {proc.returncode}\nstderr: {proc.stderr[-4000:]}"
    assert "Traceback" not in proc.stderr, said
    if proc.returncode == 0:
        return True
    assert proc.returncode == 3, said
    errors = [line for line in proc.stderr.splitlines() if line.startswith("coralord: error: ")]
    assert len(errors) == 1, said
    assert "after" in errors[0] and "attempt" in errors[0], said
    return False


def tags(registry: Path) -> list[str]:
    if not (registry / ".git").exists():
        return []
    out = subprocess.run(["git", "tag"], cwd=registry, capture_output=True, text=True, check=True).stdout
    return sorted(out.split())


def assert_registry_intact(registry: Path) -> None:
    if not (registry / ".git").exists():
        return  # a publish that failed before the registry was created
    fsck = subprocess.run(
        ["git", "fsck", "--strict", "--full", "--no-dangling", "--no-progress"],
        cwd=registry,
        capture_output=True,
        text=True,
        check=False,
    )
    said = (fsck.stdout + fsck.stderr).strip()
    assert fsck.returncode == 0 and not any(w in said.lower() for w in ("error", "missing", "broken")), said


def publish_until_done(cli: Cli, descriptor: Path, tries: int = 4) -> list[bool]:
    """``coralord publish`` until it succeeds, as a user would rerun it; each failure must be clean."""
    outcomes = []
    for _ in range(tries):
        before = tags(cli.registry)
        proc, _elapsed = cli("publish", str(descriptor))
        ok = assert_clean(proc, "coralord publish")
        outcomes.append(ok)
        assert_registry_intact(cli.registry)
        if ok:
            assert tags(cli.registry) == sorted({*before, f"{NAME}-v1.0.0"}), proc.stderr
            return outcomes
        assert tags(cli.registry) == before, f"a failed publish left a tag: {proc.stderr}"
    return outcomes


def check_get(cli: Cli, expected: pa.Table, *extra: str) -> bool:
    out = cli.tmp / f"out-{cli.runs + 1}.parquet"
    proc, _elapsed = cli("get", NAME, "-o", str(out), *extra)
    if not assert_clean(proc, f"coralord get {' '.join(extra)}"):
        assert not out.exists(), "a failed get left an output file"
        return False
    got = pq.read_table(out)
    assert got.schema.names == expected.schema.names and got.num_rows == expected.num_rows
    assert got.equals(expected), f"coralord get {' '.join(extra)} returned different data"
    return True


def api_outcome(func: Callable[[], Any]) -> tuple[bool, Any]:
    """(True, result), or (False, error) when the API said storage is unavailable; anything else fails."""
    try:
        return True, func()
    except StorageUnavailableError as e:
        message = str(e)
        assert "\n" not in message and "Traceback" not in message and "attempt" in message, message
        return False, e


def test_cli_and_api_through_a_faulty_s3(faulty_s3: FaultyS3, tmp_path: Path):  # noqa: F811
    table = make_table()
    descriptor = write_use_case(tmp_path / "use_case", table)
    cli = Cli(faulty_s3, tmp_path)
    faulty_s3.configure(rate=RATE, kinds=DEFAULT_KINDS, seed=20261202)

    # The CLI: publish (rerun until it works), then fetch it whole, some columns, some rows; verify.
    published = publish_until_done(cli, descriptor)
    results: dict[str, list[bool]] = {"publish": published}
    if published[-1]:
        for _round in range(2):
            results.setdefault("get", []).append(check_get(cli, table))
            results.setdefault("get --columns", []).append(
                check_get(cli, table.select(COLUMNS), "--columns", ",".join(COLUMNS))
            )
            results.setdefault("get --where", []).append(
                check_get(cli, expected_where(table), "--where", WHERE)
            )
            proc, _elapsed = cli("verify", NAME)
            ok = assert_clean(proc, "coralord verify")
            assert not ok or proc.stdout.startswith(f"OK {NAME} v1.0.0"), proc.stdout
            assert "FAIL" not in proc.stdout, f"verify reported intact parts as broken: {proc.stdout}"
            results.setdefault("verify", []).append(ok)

    # The Python API, in this process, through the same proxy.
    api_table = make_table(rows=6_000, seed=11)
    ws = Workspace.open(tmp_path / "api-registry", storage=STORAGE, create=True)
    info = DatasetInfo(name="api_probe", description="published through a faulty proxy", license="CC0-1.0")
    ok, outcome = api_outcome(lambda: ws.publisher().publish(api_table, info, part_rows=512))
    results["api publish"] = [ok]
    assert_registry_intact(ws.registry.path)
    if not ok:
        assert tags(ws.registry.path) == []
    else:
        assert tags(ws.registry.path) == ["api_probe-v1.0.0"]
        for label, columns, where, expected in (
            ("api read", None, None, api_table),
            ("api read columns+where", ["id", "value"], "label = 3", None),
        ):
            ok, got = api_outcome(
                lambda columns=columns, where=where: open_dataset(
                    "api_probe", workspace=ws, columns=columns, where=where
                ).to_arrow()
            )
            results[label] = [ok]
            if ok:
                if expected is None:
                    expected = api_table.filter(pc.equal(api_table["label"], 3)).select(["id", "value"])
                assert got.equals(expected), f"{label} returned different data"

    # The faults really happened, every kind of them, at the rate asked for.
    stats = faulty_s3.stats
    print(f"proxy: {stats.summary()}; outcomes: {results}")
    for kind in DEFAULT_KINDS:
        assert stats.faults[kind] > 0, f"no {kind} fault was injected: {stats.summary()}"
    assert stats.failed >= 0.2 * stats.requests, stats.summary()


@pytest.mark.parametrize("kinds", [DEFAULT_KINDS, ("refuse",)], ids=["all-faults", "refused"])
def test_storage_down_fails_fast_with_exit_3(faulty_s3: FaultyS3, tmp_path: Path, kinds: tuple[str, ...]):  # noqa: F811
    table = make_table(rows=4_000)
    descriptor = write_use_case(tmp_path / "use_case", table)
    cli = Cli(faulty_s3, tmp_path)
    proc, _elapsed = cli("publish", str(descriptor))  # while storage works
    assert proc.returncode == 0, proc.stderr
    before = tags(cli.registry)
    assert before == [f"{NAME}-v1.0.0"]

    faulty_s3.configure(rate=1.0, kinds=kinds, seed=3)
    pq.write_table(make_table(rows=4_500), tmp_path / "use_case" / "source" / "table.parquet")  # a v2.0.0
    commands = {
        "get": ["get", NAME, "-o", str(tmp_path / "out.parquet")],
        "get --where": ["get", NAME, "--where", WHERE, "-o", str(tmp_path / "some.parquet")],
        "verify": ["verify", NAME],
        "publish": ["publish", str(descriptor)],
    }
    for label, args in commands.items():
        faults_before = faulty_s3.stats.failed
        proc, elapsed = cli(*args, timeout=OUTAGE_LIMIT_S * 3)
        said = (
            f"coralord {label}: exit {proc.returncode} after {elapsed:.1f} s\nstderr: {proc.stderr[-3000:]}"
        )
        assert faulty_s3.stats.failed > faults_before, said  # it did try to reach storage
        assert "Traceback" not in proc.stderr, said
        assert proc.returncode == 3, said
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("coralord: error: "), said
        assert "check the network/endpoint and retry" in lines[0], said
        assert faulty_s3.env["AWS_SECRET_ACCESS_KEY"] not in proc.stderr + proc.stdout
        assert elapsed < OUTAGE_LIMIT_S, said
        assert not (tmp_path / "out.parquet").exists() and not (tmp_path / "some.parquet").exists()
        assert tags(cli.registry) == before, said
        assert_registry_intact(cli.registry)
    for kind in kinds:
        assert faulty_s3.stats.faults[kind] > 0, faulty_s3.stats.summary()
