"""Three clones of one registry (one bare remote, one storage folder) publishing at the same time.

Each clone is a long-lived publisher process in its own session (imports paid once). Every round the
test hands all three their batch back to back, so the publishes overlap; the batches mix the same dataset
with different content from each clone, a dataset of each clone's own, and identical content from two
clones. The assertions are invariants that hold whatever the interleaving: the remote is the truth, a tag
name means one content everywhere, lineage names what the remote has, and no clone is ever stuck.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from .helpers import JsonLinesProcess

CLONES = 3
ROUNDS = 5

SCRIPT = r"""
import json, sys, traceback
import numpy as np, pyarrow as pa
try:
    from coralord_dagster.model import DatasetInfo
except ImportError:
    from coralord_dagster.croissant import DatasetInfo
from coralord_dagster.workspace import Workspace

registry, storage, remote = sys.argv[1:4]

def table(seed):
    i = np.arange(1200, dtype=np.int64)
    return pa.table({"id": i, "value": i * 13 + seed, "tag": [f"s{seed}-{j % 17}" for j in range(1200)]})

def previous(p):
    return None if p is None else {"version": p.version, "content_id": p.content_id}

print(json.dumps({"ready": True}), flush=True)
for line in sys.stdin:
    jobs, results = json.loads(line), []
    try:
        ws = Workspace.open(registry, create=True, storage=storage, remote=remote)
    except BaseException as e:
        ws, opened = None, f"{type(e).__name__}: {' '.join(str(e).split())[:400]}"
    for name, seed in jobs:
        if ws is None:
            results.append({"ok": False, "name": name, "seed": seed, "error": "open: " + opened})
            continue
        try:
            info = DatasetInfo(name=name, description=f"shared remote {name}", license="CC0-1.0")
            res = ws.publisher().publish(table(seed), info, part_rows=256)
            results.append({"ok": True, "name": name, "seed": seed, "tag": res.tag,
                            "version": str(res.version), "created": res.created,
                            "content_id": res.manifest.content_id,
                            "previous": previous(res.manifest.previous)})
        except BaseException as e:
            results.append({"ok": False, "name": name, "seed": seed,
                            "error": f"{type(e).__name__}: {' '.join(str(e).split())[:400]}"})
    print(json.dumps(results), flush=True)
"""


class Clone(JsonLinesProcess):
    """A publisher process for one clone: ``send(jobs)`` then ``receive()`` its results."""

    def __init__(self, index: int, registry: Path, storage: Path, remote: Path, logs: Path) -> None:
        self.index, self.registry = index, registry
        argv = [sys.executable, "-c", SCRIPT, str(registry), str(storage), str(remote)]
        super().__init__(argv, logs / f"clone{index}.err")

    def receive(self, timeout: float = 300) -> Any:
        return self.answer(timeout)


def git(repo: Path, *args: str, check: bool = True) -> str:
    proc = subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, check=False, timeout=120)
    if check and proc.returncode != 0:
        raise AssertionError(f"git {' '.join(args)} in {repo}: {proc.stderr.strip()}")
    return proc.stdout


def dataset_of(tag: str) -> tuple[str, str]:
    name, _, version = tag.rpartition("-v")
    return name, version


def semver(v: str) -> tuple[int, ...]:
    return tuple(int(x) for x in v.split("."))


def content_ids(repo: Path) -> dict[str, dict[str, Any]]:
    """Tag → its manifest (content id, version, previous), read from the Git objects of ``repo``."""
    out = {}
    for tag in git(repo, "tag", "--list").split():
        name, _ = dataset_of(tag)
        out[tag] = json.loads(git(repo, "show", f"{tag}:datasets/{name}/manifest.json"))
    return out


def ghosts(repo: Path) -> list[str]:
    tagged = set(git(repo, "for-each-ref", "refs/tags", "--format=%(*objectname) %(objectname)").split())
    if not git(repo, "rev-parse", "--verify", "--quiet", "refs/heads/main", check=False).strip():
        return []
    touching = git(repo, "log", "--format=%H", "refs/heads/main", "--", "datasets/*/manifest.json").split()
    return [c for c in touching if c not in tagged]


def remote_invariants(remote: Path, seen: dict[str, str]) -> tuple[list[str], dict[str, dict[str, Any]]]:
    """The remote's own consistency: tags on main, one content per tag (ever), lineage, no ghosts."""
    problems = []
    manifests = content_ids(remote)
    tags = set(manifests)
    on_main = set(git(remote, "tag", "--merged", "main").split()) if tags else set()
    if tags - on_main:
        problems.append(f"remote tags not reachable from main: {sorted(tags - on_main)}")
    for tag, m in manifests.items():
        if seen.setdefault(tag, m["content_id"]) != m["content_id"]:
            problems.append(f"remote tag {tag} moved from content {seen[tag][:12]} to {m['content_id'][:12]}")
    by_name: dict[str, list[str]] = {}
    for tag in tags:
        by_name.setdefault(dataset_of(tag)[0], []).append(tag)
    for name, named in by_name.items():
        ordered = sorted(named, key=lambda t: semver(dataset_of(t)[1]))
        for before, tag in zip([None, *ordered], ordered, strict=False):
            prev = manifests[tag].get("previous")
            if before is None:
                if prev is not None:
                    problems.append(f"{tag} is the first version of {name} but names previous {prev}")
                continue
            if not prev:
                problems.append(f"{tag} has no previous; the remote has {before} before it")
                continue
            named_tag = f"{name}-v{prev['version']}"
            if named_tag not in manifests:
                problems.append(f"{tag}: previous {named_tag} is not in the remote")
            elif manifests[named_tag]["content_id"] != prev["content_id"]:
                problems.append(
                    f"{tag}: previous {named_tag} has content {manifests[named_tag]['content_id'][:12]} "
                    f"in the remote, lineage says {prev['content_id'][:12]}"
                )
            if named_tag != before:
                problems.append(
                    f"{tag}: previous is {named_tag}, but the remote's version before it is {before}"
                )
    g = ghosts(remote)
    if g:
        problems.append(f"remote main has {len(g)} untagged commit(s) changing a manifest: {g[:3]}")
    return problems, manifests


def clone_invariants(clone: Path, remote: Path, remote_manifests: dict[str, dict[str, Any]]) -> list[str]:
    """Nothing in a clone looks published unless the remote has it, with the same content."""
    problems = []
    for tag, m in content_ids(clone).items():
        theirs = remote_manifests.get(tag)
        if theirs is None:
            problems.append(f"{clone.name}: tag {tag} is not in the remote")
        elif theirs["content_id"] != m["content_id"]:
            problems.append(
                f"{clone.name}: tag {tag} has content {m['content_id'][:12]}, the remote's "
                f"{theirs['content_id'][:12]} (one tag, two content ids)"
            )
    head = git(clone, "rev-parse", "refs/heads/main", check=False).strip()
    if head and subprocess.run(["git", "merge-base", "--is-ancestor", head, "main"], cwd=remote).returncode:
        problems.append(f"{clone.name}: its main {head[:10]} is not on the remote's main")
    g = ghosts(clone)
    if g:
        problems.append(f"{clone.name}: {len(g)} untagged commit(s) on main change a manifest: {g[:3]}")
    return problems


def batch(r: int, c: int) -> list[tuple[str, int]]:
    """Round r's work for clone c, in an order that differs between clones and rounds."""
    jobs = [("shared", 100 * r + c), (f"own{c}", 100 * r + c)]
    if c in {r % CLONES, (r + 1) % CLONES}:
        jobs.append(("twin", 100 * r + 50))  # the same content from two clones
    shift = (r + c) % len(jobs)
    return jobs[shift:] + jobs[:shift]


@pytest.mark.slow
def test_three_clones_publish_concurrently_through_one_remote(tmp_path: Path):
    import git as gitpython

    from coralord_dagster.workspace import Workspace

    remote, storage, logs = tmp_path / "remote.git", tmp_path / "storage", tmp_path / "logs"
    logs.mkdir()
    gitpython.Repo.init(remote, bare=True, initial_branch="main")
    paths = [tmp_path / f"clone{c}" for c in range(CLONES)]
    for path in paths:
        Workspace.open(path, create=True, storage=str(storage), remote=str(remote))
    clones = [Clone(c, paths[c], storage, remote, logs) for c in range(CLONES)]
    seen: dict[str, str] = {}  # remote tag → content id, over all rounds
    try:
        for clone in clones:
            assert clone.receive(timeout=180) == {"ready": True}
        for r in range(ROUNDS + 1):
            final = r == ROUNDS
            results: dict[int, list[dict[str, Any]]] = {}
            if final:  # everyone publishes once more, one after the other: nobody may be stuck
                for clone in clones:
                    clone.send([("shared", 10_000 + clone.index)])
                    results[clone.index] = clone.receive()
            else:
                for clone in clones:  # back to back: the three batches overlap
                    clone.send(batch(r, clone.index))
                for clone in clones:
                    results[clone.index] = clone.receive()
            problems = round_problems(r, results, remote, paths, seen)
            assert not problems, f"round {r}{' (final, sequential)' if final else ''}:\n" + "\n".join(
                problems
            )
    finally:
        for clone in clones:
            clone.close()


def round_problems(
    r: int, results: dict[int, list[dict[str, Any]]], remote: Path, paths: list[Path], seen: dict[str, str]
) -> list[str]:
    problems = [
        f"clone {c}: publishing {res['name']} failed: {res['error']}"
        for c, rs in results.items()
        for res in rs
        if not res["ok"]
    ]
    found, manifests = remote_invariants(remote, seen)
    problems += found
    for path in paths:
        problems += clone_invariants(path, remote, manifests)
    done = [(c, res) for c, rs in results.items() for res in rs if res["ok"]]
    for c, res in done:
        theirs = manifests.get(res["tag"])
        if theirs is None:
            problems.append(
                f"clone {c}: reported {res['tag']} (created={res['created']}) but the remote lacks it"
            )
        elif theirs["content_id"] != res["content_id"]:
            problems.append(
                f"clone {c}: reported {res['tag']} with content {res['content_id'][:12]}, the remote has "
                f"{theirs['content_id'][:12]}"
            )
        elif res["created"]:
            prev = theirs.get("previous")
            recorded = {"version": prev["version"], "content_id": prev["content_id"]} if prev else None
            if res["previous"] != recorded:
                problems.append(
                    f"clone {c}: {res['tag']} reported previous {res['previous']}, remote {recorded}"
                )
    versions = {}
    for tag in manifests:
        versions.setdefault(dataset_of(tag)[0], []).append(tag)
    if r < ROUNDS:
        twins = [res for _, res in done if res["name"] == "twin"]
        if len(twins) == 2:
            if len({(t["tag"], t["content_id"]) for t in twins}) != 1:
                problems.append(f"identical twin content became two versions: {[t['tag'] for t in twins]}")
            if sum(t["created"] for t in twins) != 1:
                problems.append(f"identical twin content: created flags {[t['created'] for t in twins]}")
        if len(versions.get("twin", [])) != r + 1:
            problems.append(f"twin has {len(versions.get('twin', []))} versions after {r + 1} rounds")
        shared = [res for _, res in done if res["name"] == "shared"]
        if len({s["tag"] for s in shared}) != len(shared) or not all(s["created"] for s in shared):
            problems.append(f"three contents of shared: {[(s['tag'], s['created']) for s in shared]}")
        if len(versions.get("shared", [])) != CLONES * (r + 1):
            problems.append(f"shared has {len(versions.get('shared', []))} versions after round {r}")
        for c in range(CLONES):
            if len(versions.get(f"own{c}", [])) != r + 1:
                problems.append(f"own{c} has {len(versions.get(f'own{c}', []))} versions after round {r}")
    elif not all(res["created"] for _, res in done):
        problems.append("a new content in the final round was reported as unchanged")
    return problems


# ----------------------------------------------------------------------------- pushes the remote refuses
PRE_RECEIVE = """#!/bin/sh
cat >/dev/null
n=$(cat "{counter}" 2>/dev/null || echo 0)
echo $((n + 1)) > "{counter}"
if [ "$n" -lt {limit} ]; then
    echo "policy: push refused by the test's pre-receive hook (push $n)" >&2
    exit 1
fi
exit 0
"""


def table(seed: int) -> Any:
    import numpy as np
    import pyarrow as pa

    i = np.arange(1200, dtype=np.int64)
    return pa.table({"id": i, "value": i * 13 + seed, "tag": [f"s{seed}-{j % 17}" for j in range(1200)]})


def info(name: str) -> Any:
    try:
        from coralord_dagster.model import DatasetInfo  # type: ignore[attr-defined]
    except ImportError:
        from coralord_dagster.croissant import DatasetInfo
    return DatasetInfo(name=name, description="push policy", license="CC0-1.0")


def publish_bounded(clone: Path, storage: Path, remote: Path, seed: int, timeout: float = 300) -> Any:
    """Publish in this process, but fail (not hang) if it takes longer than ``timeout``."""
    from coralord_dagster.workspace import Workspace

    box: dict[str, Any] = {}

    def run() -> None:
        try:
            ws = Workspace.open(clone, create=True, storage=str(storage), remote=str(remote))
            box["result"] = ws.publisher().publish(table(seed), info("policy"), part_rows=256)
        except BaseException as e:  # handed to the test thread
            box["error"] = e

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(timeout)
    assert not worker.is_alive(), f"a publish took more than {timeout} s"
    if "error" in box:
        raise box["error"]
    return box["result"]


def refusing_remote(tmp_path: Path, limit: int) -> tuple[Path, Path, Path, Path]:
    import git as gitpython

    remote, clone, storage = tmp_path / "remote.git", tmp_path / "clone", tmp_path / "storage"
    gitpython.Repo.init(remote, bare=True, initial_branch="main")
    first = publish_bounded(clone, storage, remote, 1)
    assert first.created and first.tag == "policy-v1.0.0"
    counter = tmp_path / "pushes"
    hook = remote / "hooks" / "pre-receive"
    hook.write_text(PRE_RECEIVE.format(counter=counter, limit=limit))
    hook.chmod(0o755)
    return remote, clone, storage, counter


def assert_nothing_unpushed(clone: Path, remote: Path) -> None:
    problems, manifests = remote_invariants(remote, {})
    problems += clone_invariants(clone, remote, manifests)
    assert not problems, "\n".join(problems)


@pytest.mark.slow
def test_a_push_the_remote_refuses_once_is_retried_or_fails_cleanly(tmp_path: Path):
    from coralord_dagster.errors import CoralordError

    remote, clone, storage, counter = refusing_remote(tmp_path, limit=1)
    try:
        second = publish_bounded(clone, storage, remote, 2)
    except CoralordError as e:
        second = None
        assert "refused by the test's pre-receive hook" in str(e) or "declined" in str(e), (
            f"the error should say the remote refused the push: {e}"
        )
    assert int(counter.read_text()) >= 1, "the remote saw the push"
    assert_nothing_unpushed(clone, remote)
    remote_tags = set(git(remote, "tag", "--list").split())
    if second is not None:  # retried and accepted
        assert second.created and second.tag in remote_tags
    else:
        assert remote_tags == {"policy-v1.0.0"}
    third = publish_bounded(clone, storage, remote, 3)
    expected = "3.0.0" if second else "2.0.0"
    assert third.created and str(third.version) == expected, "a refused version is never claimed"
    manifests = content_ids(remote)
    assert manifests[third.tag]["content_id"] == third.manifest.content_id
    assert set(git(clone, "tag", "--list").split()) == set(manifests), "clone and remote agree"
    assert_nothing_unpushed(clone, remote)


@pytest.mark.slow
def test_a_remote_that_refuses_every_push_fails_clearly_and_poisons_nothing(tmp_path: Path):
    from coralord_dagster.errors import CoralordError

    remote, clone, storage, counter = refusing_remote(tmp_path, limit=1_000_000)
    started = time.monotonic()
    with pytest.raises(CoralordError) as refused:
        publish_bounded(clone, storage, remote, 2)
    took = time.monotonic() - started
    message = str(refused.value)
    assert "refused by the test's pre-receive hook" in message or "declined" in message, message
    assert int(counter.read_text()) >= 1
    assert took < 120, f"a refusal is not retried for minutes ({took:.0f} s, {counter.read_text()} pushes)"
    assert_nothing_unpushed(clone, remote)
    assert set(git(clone, "tag", "--list").split()) == {"policy-v1.0.0"}, "nothing tagged locally"
    (remote / "hooks" / "pre-receive").unlink()
    after = publish_bounded(clone, storage, remote, 4)
    assert after.created and str(after.version) == "2.0.0"
    assert after.manifest.content_id == content_ids(remote)["policy-v2.0.0"]["content_id"]
    assert set(git(clone, "tag", "--list").split()) == {"policy-v1.0.0", "policy-v2.0.0"}
    assert_nothing_unpushed(clone, remote)
