"""Publishes killed with SIGKILL at every step: the next publish recovers, and nothing half-done shows.

One local registry with a bare remote. A loop of 40 publishes, each killed somewhere (a failpoint of
``coralord_dagster.faults`` in both kill modes, a Git hook inside ``git update-ref`` / ``git push``, the
remote's ``post-receive``), plus hand-left Git lock files and torn ``.tmp`` parts. Each killed publisher
is a fresh process forked, in its own session, from a fork server that paid the imports once (Python start
and imports are most of a small publish). After every kill a long-lived publisher process publishes the
next content with no manual step; at the end the registry, the remote, the catalog, the store and
``$TMPDIR`` must all be consistent and clean.

The kill schedule (two cycles, 50 steps, 40 of them kills)::

    failpoint  parts validated objects tagged pushed refs index   x  CORALORD_KILL_MODE group, process
    failpoint  parts:2 (the second new part)
    hook       reference-transaction "prepared" on refs/heads/main, on refs/tags/, on the first of any
    hook       pre-push in the registry (kills the push before it sends)
    hook       post-receive in the remote (the remote took the version, the publisher never knew)
    stale      index.lock, HEAD.lock, refs/heads/main.lock, packed-refs.lock, all four  (+ a .tmp part)
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from .helpers import JsonLinesProcess

BIN = Path(sys.executable).parent
NAME = "crash"

#: Run as ``serve`` (publish one content per line of stdin, answer one JSON line each: the publishes that
#: must succeed) or ``fork`` (a fork server: imports paid once, then per request a forked child in its own
#: session publishes with the kill settings it is given, and the server reports how the child ended).
SCRIPT = r"""
import json, os, sys, traceback
import numpy as np, pyarrow as pa
try:
    from coralord_dagster.model import DatasetInfo
except ImportError:
    from coralord_dagster.croissant import DatasetInfo
from coralord_dagster.workspace import Workspace

registry, storage, remote, name, mode = sys.argv[1:6]

def table(k):
    i = np.arange(2000, dtype=np.int64)
    return pa.table({"id": i, "value": i * 7 + k, "label": [f"k{k}-r{j % 31}" for j in range(2000)]})

def previous(p):
    return None if p is None else {"version": p.version, "content_id": p.content_id}

def publish(k):
    ws = Workspace.open(registry, create=True, storage=storage, remote=remote)
    info = DatasetInfo(name=name, description="crash test", license="CC0-1.0")
    res = ws.publisher().publish(table(k), info, part_rows=256)
    return {"ok": True, "k": k, "tag": res.tag, "version": str(res.version), "created": res.created,
            "content_id": res.manifest.content_id, "previous": previous(res.manifest.previous)}

def threads():
    task = "/proc/self/task"
    return sorted(open(f"{task}/{t}/comm").read().strip() for t in os.listdir(task))

def child(req):
    os.setsid()  # its own process group: a 'group' kill takes it and its Git children, not the server
    os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
    os.dup2(os.open(req["out"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644), 1)
    os.dup2(os.open(req["err"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644), 2)
    os.environ.update(req["env"])
    code = 1
    try:
        print(json.dumps(publish(req["k"])), flush=True)
        code = 0
    except BaseException:
        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)

print(json.dumps({"ready": True}), flush=True)
if mode == "fork":
    import mlcroissant  # what a publish imports lazily: paid here once, not in every child
    for line in sys.stdin:
        req = json.loads(line)
        before = threads()
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            child(req)
        print(json.dumps({"pid": pid, "threads": before}), flush=True)
        _, status = os.waitpid(pid, 0)
        print(json.dumps({"pid": pid, "signal": os.WTERMSIG(status) if os.WIFSIGNALED(status) else None,
                          "exit": os.WEXITSTATUS(status) if os.WIFEXITED(status) else None}), flush=True)
else:
    for line in sys.stdin:
        try:
            out = publish(int(line))
        except BaseException as e:
            said = " ".join(str(e).split())[:400]
            out = {"ok": False, "error": f"{type(e).__name__}: {said}", "traceback": traceback.format_exc()}
        print(json.dumps(out), flush=True)
"""

#: A Git hook that SIGKILLs its own process group (the publisher and every Git child) once, when armed:
#: the arm file holds a substring the hook's stdin must contain ("" = anything). Never fires in pytest's
#: own process group.
HOOK = """#!/bin/sh
input=$(cat)
{prepared_check}
arm="{arm}"
[ -f "$arm" ] || exit 0
want=$(cat "$arm")
case "$input" in *"$want"*) ;; *) exit 0 ;; esac
pgid=$(cut -d' ' -f5 /proc/$$/stat)
[ "$pgid" = "{pytest_pgid}" ] && exit 0
mv "$arm" "$arm.fired" 2>/dev/null || exit 0
kill -9 0
"""


@dataclass(frozen=True)
class Case:
    kind: str  # failpoint | hook | stale
    point: str = ""  # failpoint (with :n), hook name, or stale lock set
    mode: str = "group"  # CORALORD_KILL_MODE for failpoints
    want: str = ""  # for reference-transaction: a ref name the transaction must touch

    @property
    def label(self) -> str:
        if self.kind == "failpoint":
            return f"kill at {self.point} ({self.mode})"
        if self.kind == "hook":
            return f"hook {self.point}" + (
                f" on {self.want or 'any ref'}" if self.point.startswith("ref") else ""
            )
        return f"stale {self.point}"


POINTS = ("parts", "validated", "objects", "tagged", "pushed", "refs", "index")
KILLS = [
    *(Case("failpoint", p, m) for p in POINTS for m in ("group", "process")),
    Case("failpoint", "parts:2", "group"),
    Case("hook", "reference-transaction", want="refs/heads/main"),
    Case("hook", "reference-transaction", want="refs/tags/"),
    Case("hook", "reference-transaction", want=""),
    Case("hook", "pre-push"),
    Case("hook", "post-receive"),
]
STALE = ["index.lock", "HEAD.lock", "refs/heads/main.lock", "packed-refs.lock", "all"]
GIT_LOCKS = ["index.lock", "HEAD.lock", "refs/heads/main.lock", "packed-refs.lock"]


def schedule() -> list[Case]:
    out: list[Case] = []
    for cycle in range(2):
        for j, case in enumerate(KILLS):
            out.append(case)
            if j % 4 == 3:
                out.append(Case("stale", STALE[(cycle * 5 + j // 4) % len(STALE)]))
    return out


# ----------------------------------------------------------------------------- processes
class LineServer(JsonLinesProcess):
    """A helper process that says it is ready once its imports are done."""

    def __init__(self, argv: list[str], env: dict[str, str], log: Path) -> None:
        super().__init__(argv, log, env)
        assert self.answer(timeout=180) == {"ready": True}


class PublisherServer(LineServer):
    """Publishes content ``k`` on request: the publishes that must succeed after a kill."""

    def publish(self, k: int, timeout: float = 180) -> dict[str, Any]:
        self.send(str(k))
        return self.answer(timeout)


class ForkServer(LineServer):
    """Forks a fresh publisher per kill (its own session) and reports how it ended."""

    def run(self, k: int, env: dict[str, str], out: Path, err: Path, timeout: float = 180) -> dict[str, Any]:
        self.send(json.dumps({"k": k, "env": env, "out": str(out), "err": str(err)}))
        started = self.answer(timeout=60)
        other = [t for t in started["threads"] if t != "jemalloc_bg_thd"]
        assert len(other) == 1, f"the fork server runs threads {started['threads']}: forking it is unsafe"
        try:
            ended = self.answer(timeout)
        except TimeoutError:
            os.killpg(started["pid"], signal.SIGKILL)
            ended = self.answer(timeout=60)
            ended["hung"] = True
        return ended


def live_members(pgid: int) -> list[int]:
    """Processes of group ``pgid`` that still run (zombies excluded: PID 1 here may never reap them)."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            out.append(int(stat.parent.name))
    return out


def wait_group_gone(pgid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while live_members(pgid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def git(cwd: Path, *args: str, check: bool = True) -> str:
    proc = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=False, timeout=120)
    if check and proc.returncode != 0:
        raise AssertionError(f"git {' '.join(args)} in {cwd} failed: {proc.stderr.strip()}")
    return proc.stdout


def tag_objects(repo: Path) -> dict[str, str]:
    out = git(repo, "for-each-ref", "refs/tags", "--format=%(refname:short) %(objectname)")
    return dict(line.split(" ") for line in out.splitlines())


def manifest_at(repo: Path, tag: str) -> dict[str, Any]:
    return json.loads(git(repo, "show", f"{tag}:datasets/{NAME}/manifest.json"))


def ghosts(repo: Path) -> list[str]:
    """Commits on main that change a dataset's manifest with no tag pointing at them."""
    tagged = set(git(repo, "for-each-ref", "refs/tags", "--format=%(*objectname) %(objectname)").split())
    if not git(repo, "rev-parse", "--verify", "--quiet", "refs/heads/main", check=False).strip():
        return []
    touching = git(repo, "log", "--format=%H", "refs/heads/main", "--", "datasets/*/manifest.json").split()
    return [c for c in touching if c not in tagged]


def git_lock_files(gitdir: Path) -> list[str]:
    """Git's own lock files (coralord's inter-process lock files are not Git's and may stay)."""
    return sorted(
        str(p.relative_to(gitdir))
        for p in gitdir.rglob("*.lock")
        if not p.name.startswith("coralord") and "coralord" not in p.relative_to(gitdir).parts
    )


def install_hooks(registry: Path, remote: Path, arm_dir: Path) -> None:
    pgid = os.getpgid(0)
    hooks = [
        (registry / ".git" / "hooks", "reference-transaction", '[ "$1" = prepared ] || exit 0'),
        (registry / ".git" / "hooks", "pre-push", ""),
        (remote / "hooks", "post-receive", ""),
    ]
    for folder, name, check in hooks:
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / name
        path.write_text(HOOK.format(prepared_check=check, arm=arm_dir / name, pytest_pgid=pgid))
        path.chmod(0o755)


def leave_stale(registry: Path, storage: Path, which: str) -> None:
    """What a process killed inside Git and inside a part write leaves behind."""
    for rel in GIT_LOCKS if which == "all" else [which]:
        path = registry / ".git" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"")
    sha = uuid.uuid4().hex * 2
    torn = storage / "parts" / sha[:2] / f".{sha}.{uuid.uuid4().hex}.tmp"
    torn.parent.mkdir(parents=True, exist_ok=True)
    torn.write_bytes(b"PAR1 torn part")
    old = time.time() - 7200
    os.utime(torn, (old, old))


def cli(*args: str) -> Any:
    from click.testing import CliRunner

    from coralord_dagster.cli import cli as coralord

    return CliRunner().invoke(coralord, list(args))


def catalog_tags(registry: Path) -> set[str]:
    from coralord_dagster.catalog import Catalog

    path = registry / ".git" / "coralord" / "catalog.duckdb"
    return {r[0] for r in Catalog(path).query("SELECT tag FROM versions WHERE name = ?", [NAME])}


def outcome(stdout: str, stderr: str) -> str:
    """What a publisher that was not killed did: the version it published, or its error."""
    for line in stdout.splitlines():
        if line.startswith("{") and json.loads(line).get("ok"):
            return f"it published {json.loads(line)['tag']} unharmed"
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    errors = [n for n, ln in enumerate(lines) if not ln.startswith((" ", "Traceback")) and ":" in ln]
    return " / ".join(lines[errors[-1] : errors[-1] + 3]) if errors else repr(stderr[-300:])


def semver(v: str) -> tuple[int, ...]:
    return tuple(int(x) for x in v.split("."))


# ----------------------------------------------------------------------------- the test
@pytest.mark.slow
def test_sigkill_anywhere_in_a_publish_then_the_next_publish_recovers(tmp_path: Path):
    from coralord_dagster.workspace import Workspace

    started = time.monotonic()
    registry, storage, remote = tmp_path / "registry", tmp_path / "storage", tmp_path / "remote.git"
    private_tmp, arm_dir, logs = tmp_path / "tmpdir", tmp_path / "arm", tmp_path / "logs"
    for d in (private_tmp, arm_dir, logs):
        d.mkdir()
    import git as gitpython

    gitpython.Repo.init(remote, bare=True, initial_branch="main")
    Workspace.open(registry, create=True, storage=str(storage), remote=str(remote))
    install_hooks(registry, remote, arm_dir)

    env = {k: v for k, v in os.environ.items() if not k.startswith("CORALORD_KILL")}
    env["TMPDIR"] = str(private_tmp)
    argv = [sys.executable, "-c", SCRIPT, str(registry), str(storage), str(remote), NAME]
    server = PublisherServer([*argv, "serve"], env, logs / "server.err")
    # No BLAS thread pool in the fork server: its only other thread is jemalloc's (fork-safe).
    single = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    forker = ForkServer([*argv, "fork"], {**env, **single}, logs / "forker.err")

    problems: list[str] = []
    successes: list[dict[str, Any]] = []
    lingering: list[int] = []  # process groups killed in 'process' mode: Git children may live on
    started_groups: list[int] = [server.proc.pid, forker.proc.pid]
    k = 0
    failed_in_a_row = 0
    try:
        for i, case in enumerate(schedule()):
            label = f"step {i} ({case.label})"
            k += 1
            if case.kind == "stale":
                leave_stale(registry, storage, case.point)
            else:
                kill_env: dict[str, str] = {}
                if case.kind == "failpoint":
                    kill_env["CORALORD_KILL_AT"] = case.point
                    kill_env["CORALORD_KILL_MODE"] = case.mode
                else:
                    (arm_dir / case.point).write_text(case.want)
                ended = forker.run(k, kill_env, logs / f"{i}.out", logs / f"{i}.err")
                pid = ended["pid"]
                started_groups.append(pid)
                if ended.get("hung"):
                    problems.append(f"{label}: the publisher hung for 180 s (killed by the test)")
                if case.kind == "hook":
                    armed = arm_dir / case.point
                    if armed.exists():
                        armed.unlink()
                        problems.append(f"{label}: the hook never fired")
                    (arm_dir / f"{case.point}.fired").unlink(missing_ok=True)
                if ended["signal"] != signal.SIGKILL:
                    said = outcome((logs / f"{i}.out").read_text(), (logs / f"{i}.err").read_text())
                    how = f"signal {ended['signal']}" if ended["signal"] else f"exit code {ended['exit']}"
                    problems.append(f"{label}: ended by {how}, not SIGKILL: {said}")
                if case.mode == "group" or case.kind == "hook":
                    if not wait_group_gone(pid, 30):
                        problems.append(f"{label}: its process group still runs: {live_members(pid)}")
                else:
                    lingering.append(pid)
                # Nothing looks published unless the remote has it (local read first: a surviving
                # Git child may still add to the remote, never take away from it).
                local = tag_objects(registry)
                remote_tags = tag_objects(remote)
                unpushed = sorted(t for t, o in local.items() if remote_tags.get(t) != o)
                if unpushed:
                    problems.append(f"{label}: tagged locally but not (so) in the remote: {unpushed}")
            k += 1
            res = server.publish(k)
            if not res["ok"]:
                problems.append(f"{label}: the next publish failed: {res['error']}")
                failed_in_a_row += 1
                if failed_in_a_row >= 3:
                    problems.append(f"{label}: stopped after 3 failed publishes in a row")
                    break
                continue
            failed_in_a_row = 0
            successes.append(res)
            problems += check_after_publish(label, res, registry, remote)
    finally:
        server.close()
        forker.close()
        for pgid in lingering:
            if not wait_group_gone(pgid, 60):
                problems.append(f"process group {pgid} (killed in 'process' mode) still runs after 60 s")
        for pgid in started_groups:  # never leave a process of ours behind, whatever failed
            if live_members(pgid):
                os.killpg(pgid, signal.SIGKILL)

    problems += final_checks(registry, storage, remote, private_tmp, env, successes)
    elapsed = time.monotonic() - started
    assert not problems, f"{len(problems)} problem(s) in {elapsed:.0f} s:\n" + "\n".join(problems)


def check_after_publish(label: str, res: dict[str, Any], registry: Path, remote: Path) -> list[str]:
    problems = []
    if not res["created"]:
        problems.append(f"{label}: new content reported as unchanged ({res['tag']})")
    remote_tags = tag_objects(remote)
    if res["tag"] not in remote_tags:
        problems.append(f"{label}: the next publish reported {res['tag']} but the remote lacks it")
    elif manifest_at(remote, res["tag"])["content_id"] != res["content_id"]:
        problems.append(f"{label}: {res['tag']} has another content id in the remote than reported")
    local = tag_objects(registry)
    if local != remote_tags:
        diff = sorted(set(local.items()) ^ set(remote_tags.items()))
        problems.append(f"{label}: local and remote tags differ after a publish: {diff[:6]}")
    locks = git_lock_files(registry / ".git")
    if locks:
        problems.append(f"{label}: Git lock files left after the next publish: {locks}")
    dirty = git(registry, "status", "--porcelain", "--untracked-files=all", check=False).strip()
    if dirty:
        problems.append(f"{label}: working tree not restored: {dirty.splitlines()[:5]}")
    head = git(registry, "rev-parse", "HEAD", check=False).strip()
    main = git(remote, "rev-parse", "refs/heads/main", check=False).strip()
    if head != main:
        problems.append(f"{label}: local HEAD {head[:10]} is not the remote's main {main[:10]}")
    missing = set(local) - catalog_tags(registry)
    if missing:
        problems.append(f"{label}: the catalog lacks {sorted(missing)}")
    return problems


def final_checks(
    registry: Path, storage: Path, remote: Path, private_tmp: Path, env: dict[str, str], successes: list
) -> list[str]:
    problems = []
    for repo in (registry, remote):
        fsck = subprocess.run(
            ["git", "fsck", "--strict", "--full", "--no-dangling", "--no-progress"],
            cwd=repo,
            capture_output=True,
            text=True,
            check=False,
        )
        said = (fsck.stdout + fsck.stderr).strip()
        if fsck.returncode != 0 or any(w in said.lower() for w in ("error", "missing", "broken", "warning")):
            problems.append(f"git fsck in {repo.name}: exit {fsck.returncode}: {said[:600]}")
    locks = git_lock_files(registry / ".git") + [f"remote:{p}" for p in git_lock_files(remote)]
    if locks:
        problems.append(f"Git lock files left at the end: {locks}")

    gc = subprocess.run(
        [str(BIN / "coralord"), "--registry", str(registry), "gc", "--grace", "0", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if gc.returncode != 0:
        problems.append(f"coralord gc --grace 0: exit {gc.returncode}: {gc.stderr.strip()[-400:]}")
    torn = sorted(str(p.relative_to(storage)) for p in (storage / "parts").rglob("*.tmp"))
    if torn:
        problems.append(f"{len(torn)} .tmp part(s) left after gc --grace 0: {torn[:4]}")
    leftovers = sorted(p.name for p in private_tmp.iterdir() if p.name.startswith("coralord-"))
    if leftovers:
        problems.append(f"$TMPDIR holds {len(leftovers)} coralord-* leftover(s) after gc: {leftovers[:4]}")

    local, remote_tags = tag_objects(registry), tag_objects(remote)
    if set(local) != set(remote_tags):
        problems.append(
            f"tags only local {sorted(set(local) - set(remote_tags))}, "
            f"only remote {sorted(set(remote_tags) - set(local))}"
        )
    tags = sorted(local, key=lambda t: semver(t.rsplit("-v", 1)[1]))
    for tag in tags:  # after gc: it must not have deleted a part some tag references
        verify = cli("--registry", str(registry), "verify", f"{NAME}@v{tag.rsplit('-v', 1)[1]}")
        if verify.exit_code != 0:
            problems.append(f"coralord verify {tag}: exit {verify.exit_code}: {verify.output.strip()[-300:]}")
    log = cli("--registry", str(registry), "log", NAME, "--json")
    if log.exit_code != 0 or {r["tag"] for r in json.loads(log.stdout)} != set(tags):
        problems.append(f"coralord log --json does not list exactly the tags: {log.output[-300:]}")
    listed = cli("--registry", str(registry), "list", "--json")
    rows = json.loads(listed.stdout) if listed.exit_code == 0 else []
    if tags and [r["tag"] for r in rows if r["name"] == NAME] != [tags[-1]]:
        problems.append(f"coralord list --json does not show {tags[-1]} as latest: {listed.output[-300:]}")
    missing = set(tags) - catalog_tags(registry)
    if missing:
        problems.append(f"the catalog lacks {len(missing)} tag(s): {sorted(missing)[:6]}")

    manifests = {}
    for tag in tags:
        mine, theirs = manifest_at(registry, tag), manifest_at(remote, tag) if tag in remote_tags else {}
        manifests[tag] = mine
        if mine["content_id"] != theirs.get("content_id"):
            problems.append(
                f"{tag}: content id {mine['content_id'][:12]} here, {theirs.get('content_id')} remote"
            )
    expected = [f"{n + 1}.0.0" for n in range(len(tags))]  # every publish changes the rows: MAJOR
    versions = [t.rsplit("-v", 1)[1] for t in tags]
    if versions != expected:
        problems.append(f"versions are not 1.0.0..{len(tags)}.0.0 in steps of one: {versions}")
    for before, tag in zip(tags, tags[1:], strict=False):
        prev = manifests[tag].get("previous") or {}
        if (
            prev.get("version") != before.rsplit("-v", 1)[1]
            or prev.get("content_id") != manifests[before]["content_id"]
        ):
            problems.append(
                f"{tag}: previous {prev} is not {before} ({manifests[before]['content_id'][:12]})"
            )
    for repo in (registry, remote):
        g = ghosts(repo)
        if g:
            problems.append(f"{repo.name}: {len(g)} commit(s) on main change a manifest with no tag: {g[:3]}")
    for res in successes:
        if manifests.get(res["tag"], {}).get("content_id") != res["content_id"]:
            problems.append(
                f"published {res['tag']} ({res['content_id'][:12]}) is not in the registry as such"
            )
    if len(successes) < len(schedule()):
        problems.append(f"only {len(successes)} of {len(schedule())} publishes after a kill succeeded")
    return problems
