"""Eight processes create a registry that does not exist yet, all at once, and publish into it.

Every process pays its imports, builds its table, writes a "ready" file and waits for a "go" file; the
test creates "go" only when all eight are ready, so the eight ``Workspace.open(path, create=True)`` calls
and publishes really overlap (a file barrier: no sleeping as synchronisation).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

N = 8

SCRIPT = r"""
import json, os, pathlib, sys, time, traceback
import numpy as np, pyarrow as pa
try:
    from coralord_dagster.model import DatasetInfo
except ImportError:
    from coralord_dagster.croissant import DatasetInfo
from coralord_dagster.workspace import Workspace

registry, name, k = sys.argv[1], sys.argv[2], int(sys.argv[3])
ready, go = pathlib.Path(sys.argv[4]), pathlib.Path(sys.argv[5])
i = np.arange(1500, dtype=np.int64)
table = pa.table({"i": i * (k + 1), "who": [f"process-{k}"] * 1500})
info = DatasetInfo(name=name, description=f"init race {name}", license="CC0-1.0")
ready.with_suffix(".tmp").write_text(str(os.getpid()))
ready.with_suffix(".tmp").rename(ready)
deadline = time.monotonic() + 300
while not go.exists():
    if time.monotonic() > deadline:
        sys.exit("no go file within 300 s")
    time.sleep(0.002)
res = Workspace.open(registry, create=True).publisher().publish(table, info, part_rows=256)
prev = res.manifest.previous
get = (prev.get if isinstance(prev, dict) else (lambda key: getattr(prev, key, None))) if prev else None
print(json.dumps({
    "tag": res.tag, "version": str(res.version), "created": res.created,
    "content_id": res.manifest.content_id,
    "previous": {"version": str(get("version")), "content_id": get("content_id")} if get else None,
    "warnings": [str(w) for w in getattr(res, "warnings", [])],
}), flush=True)
"""


def race(tmp_path: Path, registry: Path, names: list[str]) -> list[dict[str, Any]]:
    """Start one publisher per name (content k for the k-th), release them together, collect results."""
    barrier = tmp_path / f"barrier-{registry.parent.name}"
    barrier.mkdir()
    go = barrier / "go"
    procs, logs = [], []
    for k, name in enumerate(names):
        out, err = (barrier / f"{k}.out").open("w"), (barrier / f"{k}.err").open("w")
        logs.append((out, err))
        argv = [
            sys.executable,
            "-c",
            SCRIPT,
            str(registry),
            name,
            str(k),
            str(barrier / f"{k}.ready"),
            str(go),
        ]
        procs.append(subprocess.Popen(argv, stdout=out, stderr=err, start_new_session=True))
    try:
        deadline = time.monotonic() + 240
        while not all((barrier / f"{k}.ready").exists() for k in range(len(names))):
            early = [k for k, p in enumerate(procs) if p.poll() is not None]
            assert not early, (
                f"publishers {early} exited before the barrier: "
                + (barrier / f"{early[0]}.err").read_text()[-2000:]
            )
            assert time.monotonic() < deadline, "the publishers did not get ready within 240 s"
            time.sleep(0.02)
        assert not registry.exists(), "nobody may create the registry before the go"
        go.touch()
        for p in procs:
            p.wait(timeout=300)
    finally:
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
        for out, err in logs:
            out.close()
            err.close()
    failed = {k: (barrier / f"{k}.err").read_text()[-1500:] for k, p in enumerate(procs) if p.returncode}
    assert not failed, f"{len(failed)} of {len(procs)} publishers failed: {failed}"
    return [
        json.loads((barrier / f"{k}.out").read_text().strip().splitlines()[-1]) for k in range(len(names))
    ]


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, check=True).stdout


def manifest_at(repo: Path, tag: str, name: str) -> dict[str, Any]:
    return json.loads(git(repo, "show", f"{tag}:datasets/{name}/manifest.json"))


def check_registry(registry: Path, tags: set[str], results: list[dict[str, Any]]) -> None:
    """One history, every tag on it, every manifest commit tagged, clean tree, catalog complete."""
    from coralord_dagster.catalog import Catalog

    assert set(git(registry, "tag", "--list").split()) == tags
    assert set(git(registry, "tag", "--merged", "main").split()) == tags, "every tag is on main"
    roots = git(registry, "rev-list", "--max-parents=0", "main").split()
    assert len(roots) == 1, f"one registry was created, not {len(roots)} histories"
    tagged = set(git(registry, "for-each-ref", "refs/tags", "--format=%(*objectname)").split())
    touching = set(git(registry, "log", "--format=%H", "main", "--", "datasets/*/manifest.json").split())
    assert touching <= tagged, f"untagged commits change a manifest: {sorted(touching - tagged)}"
    fsck = subprocess.run(
        ["git", "fsck", "--strict", "--no-dangling", "--no-progress"],
        cwd=registry,
        capture_output=True,
        text=True,
        check=False,
    )
    assert fsck.returncode == 0 and "error" not in fsck.stderr.lower(), fsck.stderr
    assert git(registry, "status", "--porcelain", "--untracked-files=all") == ""
    catalog = Catalog(registry / ".git" / "coralord" / "catalog.duckdb")
    indexed = {r[0] for r in catalog.query("SELECT tag FROM versions")}
    warned = [w for r in results for w in r["warnings"]]
    assert indexed == tags, (
        f"the catalog lacks {sorted(tags - indexed)}, has extra {sorted(indexed - tags)}; warnings: {warned}"
    )


@pytest.mark.slow
def test_eight_processes_create_a_registry_each_publishing_its_own_dataset(tmp_path: Path):
    from click.testing import CliRunner

    from coralord_dagster.cli import cli
    from coralord_dagster.registry import Registry

    registry = tmp_path / "round1" / "deep" / "registry"  # not even its parents exist
    names = [f"race_{k}" for k in range(N)]
    results = race(tmp_path, registry, names)

    expected = {f"{n}-v1.0.0" for n in names}
    assert sorted(r["tag"] for r in results) == sorted(expected)
    assert all(r["created"] for r in results)
    check_registry(registry, expected, results)
    reg = Registry(registry)
    for name, r in zip(names, results, strict=True):
        manifest = reg.manifest(reg.versions(name)[0])
        assert manifest.content_id == r["content_id"] and manifest.rows == 1500
        verify = CliRunner().invoke(cli, ["--registry", str(registry), "verify", f"{name}@v1.0.0"])
        assert verify.exit_code == 0, verify.output


@pytest.mark.slow
def test_eight_processes_create_a_registry_all_publishing_one_dataset(tmp_path: Path):
    registry = tmp_path / "round2" / "registry"
    results = race(tmp_path, registry, ["shared"] * N)

    expected = [f"{n + 1}.0.0" for n in range(N)]  # each publisher replaced the rows: MAJOR each time
    assert sorted((r["version"] for r in results), key=lambda v: int(v.split(".")[0])) == expected, (
        "each publisher got its own version, decided against the one before"
    )
    assert all(r["created"] for r in results)
    tags = {f"shared-v{v}" for v in expected}
    check_registry(registry, tags, results)
    manifests = {v: manifest_at(registry, f"shared-v{v}", "shared") for v in expected}
    assert len({m["content_id"] for m in manifests.values()}) == N, "eight contents, eight versions"
    for r in results:
        assert manifests[r["version"]]["content_id"] == r["content_id"], (
            f"{r['tag']} is what its publisher made"
        )
    assert manifests["1.0.0"]["previous"] is None
    for before, after in zip(expected, expected[1:], strict=False):
        prev = manifests[after]["previous"]
        assert prev["version"] == before, f"v{after} names v{prev['version']} as previous, not v{before}"
        assert prev["content_id"] == manifests[before]["content_id"], f"v{after}: previous content id"
        reported = next(r for r in results if r["version"] == after)["previous"]
        assert reported == {"version": before, "content_id": manifests[before]["content_id"]}
