"""Git plumbing for the registry's writes: objects first, then every ref in one transaction.

A version is written without touching the index or the working tree: ``git fast-import`` stores its blobs,
tree and commit (on a private staging ref) in one pack, ``git mktag`` its annotated tag, and one
``git update-ref --stdin`` transaction moves ``main`` (compare-and-swap on the old value) and creates the
tag together: all or nothing. With a remote, ``git push --atomic`` of the same two refs comes first, so
nothing is tagged locally that the remote does not have. A process killed at any moment leaves at most
unreachable objects, a staging ref and Git lock files, which :func:`remove_stale_state` clears under the
registry lock.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from coralord_dagster.locking import ProcessLock

ZERO = "0" * 40
STAGING = "refs/coralord/staging"
DEFAULT_IDENTITY = ("coralord", "coralord@localhost")
#: Automatic maintenance could run in the background after we release the lock and hold Git's locks
#: then; it is run in the foreground under the lock instead (:meth:`Git.maintain`).
_NO_AUTO_GC = ["-c", "gc.auto=0", "-c", "maintenance.auto=false"]
_UNREACHABLE = re.compile(
    r"could not read from remote|unable to access|connection (refused|reset|timed out)|could not resolve|"
    r"does not appear to be a git repository|network is unreachable|early eof|the remote end hung up",
    re.IGNORECASE,
)


class GitFailure(Exception):
    """A git command failed; ``stderr`` holds what it said."""

    def __init__(self, args: Sequence[str], returncode: int, stderr: str, stdout: str = "") -> None:
        self.command = list(args)
        self.returncode = returncode
        self.stderr = stderr.strip()
        self.stdout = stdout
        super().__init__(f"git {' '.join(self.command[:2])} failed ({returncode}): {self.summary}")

    @property
    def summary(self) -> str:
        """Git's message on one line (every line of it, joined)."""
        return " / ".join(line.strip() for line in self.stderr.splitlines() if line.strip()) or "no message"

    @property
    def unreachable(self) -> bool:
        """The remote could not be reached (as opposed to: it answered and said no)."""
        return bool(_UNREACHABLE.search(self.stderr))


@dataclass(frozen=True)
class PushOutcome:
    ok: bool
    unreachable: bool = False
    message: str = ""
    #: Every ref was already what we pushed: another writer pushed these very objects first (a commit
    #: and tag are deterministic, so the same version built in the same second has the same ids).
    up_to_date: bool = False


class Git:
    """Runs git in one repository; while ``lock`` is held its descriptor is inherited by every git child."""

    def __init__(self, path: Path, lock: ProcessLock | None = None) -> None:
        self.path = path
        self.lock = lock
        self._identity: tuple[str, str] | None = None

    def run(
        self, *args: str, input: bytes | None = None, check: bool = True, env: Mapping[str, str] | None = None
    ) -> subprocess.CompletedProcess[bytes]:
        fds = (self.lock.fd,) if self.lock is not None and self.lock.fd is not None else ()
        proc = subprocess.run(
            ["git", *_NO_AUTO_GC, *args],
            cwd=self.path,
            input=input,
            capture_output=True,
            pass_fds=fds,
            env={**os.environ, "GIT_TERMINAL_PROMPT": "0", **(env or {})},
            check=False,
        )
        if check and proc.returncode != 0:
            raise GitFailure(
                args, proc.returncode, proc.stderr.decode(errors="replace"), proc.stdout.decode()
            )
        return proc

    def out(self, *args: str) -> str:
        return self.run(*args).stdout.decode()

    # ----------------------------------------------------------------- identity and refs
    def identity(self) -> tuple[str, str]:
        """The configured user, or 'coralord' on machines without one."""
        if self._identity is None:
            name = self.run("config", "user.name", check=False).stdout.decode().strip()
            email = self.run("config", "user.email", check=False).stdout.decode().strip()
            self._identity = (name, email) if name and email else DEFAULT_IDENTITY
        return self._identity

    def _signature(self) -> str:
        name, email = self.identity()
        return f"{name} <{email}> {int(time.time())} +0000"

    def refs(self, *patterns: str) -> dict[str, str]:
        """ref name → object id (the tag object for annotated tags)."""
        text = self.out("for-each-ref", "--format=%(refname) %(objectname)", *patterns)
        pairs = (line.split(" ", 1) for line in text.splitlines() if line)
        return {name: oid for name, oid in pairs}

    def rev(self, ref: str) -> str | None:
        proc = self.run("rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}", check=False)
        return proc.stdout.decode().strip() or None

    def is_ancestor(self, older: str, newer: str) -> bool:
        return self.run("merge-base", "--is-ancestor", older, newer, check=False).returncode == 0

    def update_refs(self, updates: Iterable[tuple[str, str, str | None]]) -> None:
        """One all-or-nothing transaction of (ref, new, expected old) updates; new = ZERO deletes, expected
        old = None does not check, ZERO means "must not exist"."""
        lines = ["start"]
        for ref, new, old in updates:
            if new == ZERO:
                lines.append(f"delete {ref}" + (f" {old}" if old else ""))
            else:
                lines.append(f"update {ref} {new}" + (f" {old}" if old else ""))
        lines += ["prepare", "commit", ""]
        self.run("update-ref", "--stdin", input="\n".join(lines).encode())

    # ----------------------------------------------------------------- writing a version
    def stage_commit(
        self,
        parent: str | None,
        folder: str,
        files: Mapping[str, bytes],
        *,
        keep: str | None,
        message: str,
    ) -> tuple[str, str]:
        """Write the commit replacing ``folder`` (but its ``keep`` subfolder) by ``files``; returns
        (commit id, staging ref). Nothing but the staging ref points at it."""
        ref = f"{STAGING}/{uuid.uuid4().hex}"
        old: list[str] = []
        if parent is not None:
            listing = self.run("ls-tree", "--name-only", "-z", parent, f"{folder}/").stdout.decode()
            old = [p for p in listing.split("\0") if p and p != f"{folder}/{keep}"]
        msg = message.encode() + b"\n"
        out = [
            b"commit %s\nmark :1\ncommitter %s\ndata %d\n%s"
            % (ref.encode(), self._signature().encode(), len(msg), msg)
        ]
        if parent is not None:
            out.append(b"from %s\n" % parent.encode())
        out += [b"D %s\n" % _quote(p) for p in old]
        for rel, data in files.items():
            out.append(b"M 100644 inline %s\ndata %d\n%s\n" % (_quote(f"{folder}/{rel}"), len(data), data))
        out.append(b"done\n")
        marks = self.path / ".git" / "coralord" / f"marks-{uuid.uuid4().hex}"
        marks.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.run("fast-import", "--quiet", "--done", f"--export-marks={marks}", input=b"".join(out))
            commit = marks.read_text().split()[1]
        finally:
            marks.unlink(missing_ok=True)
        return commit, ref

    def make_tag(self, commit: str, tag: str, message: str) -> str:
        """Write an annotated tag object for ``commit`` (no ref yet); returns its id."""
        text = f"object {commit}\ntype commit\ntag {tag}\ntagger {self._signature()}\n\n{message}\n"
        return self.run("mktag", input=text.encode()).stdout.decode().strip()

    # ----------------------------------------------------------------- remotes
    def has_remote(self, name: str = "origin") -> bool:
        return name in self.out("remote").split()

    def fetch(self, refspecs: Sequence[str]) -> None:
        self.run("fetch", "--quiet", "--prune", "--no-tags", "origin", *refspecs)

    def push_atomic(self, refspecs: Sequence[str]) -> PushOutcome:
        """``git push --atomic``: every ref lands or none does."""
        try:
            out = self.run("push", "--atomic", "--porcelain", "origin", *refspecs).stdout.decode()
            flags = [line[0] for line in out.splitlines() if line[:1] in ("=", " ", "*", "+", "-", "!")]
            return PushOutcome(True, up_to_date=bool(flags) and all(f == "=" for f in flags))
        except GitFailure as e:
            detail = " / ".join(
                line.strip()
                for line in (e.stdout + "\n" + e.stderr).splitlines()
                if line.startswith(("!", "error", "fatal", "remote:"))
            )
            return PushOutcome(False, e.unreachable, detail or e.summary)

    def maintain(self) -> None:
        """Pack loose objects and the per-version packs when Git's thresholds say so, in the foreground."""
        self.run("-c", "gc.auto=6700", "-c", "gc.autoDetach=false", "gc", "--auto", "--quiet", check=False)


def _quote(path: str) -> bytes:
    """A path for fast-import (C-style quoted when it needs to be)."""
    if any(c in path for c in '"\\\n') or path.startswith('"'):
        return b'"' + path.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").encode() + b'"'
    return path.encode()


def remove_stale_state(git_dir: Path, git: Git) -> list[str]:
    """Remove what a killed writer left: Git lock files, temporary object files, staging refs.

    Only call this while holding the registry lock: then no coralord writer — nor any Git command one
    started, which inherits the lock — is alive to own them.
    """
    removed = []
    candidates = [
        git_dir / n for n in ("index.lock", "HEAD.lock", "packed-refs.lock", "config.lock", "shallow.lock")
    ]
    candidates += list((git_dir / "refs").rglob("*.lock"))
    candidates += list((git_dir / "objects").glob("pack/tmp_*"))
    candidates += list((git_dir / "objects").glob("??/tmp_obj_*"))
    candidates += list((git_dir / "coralord").glob("marks-*"))
    for path in candidates:
        if path.exists():
            path.unlink(missing_ok=True)
            removed.append(str(path.relative_to(git_dir)))
    staging = git.refs(STAGING)
    if staging:
        git.update_refs((ref, ZERO, None) for ref in staging)
        removed += list(staging)
    return removed
