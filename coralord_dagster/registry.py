"""The Git registry: descriptors, manifests and Croissant files, one commit and one tag per version.

Layout (a contract)::

    coralord.toml                        storage URL and defaults (never secrets)
    datasets/<name>/descriptor.yaml
    datasets/<name>/manifest.json
    datasets/<name>/croissant.json
    datasets/<name>/parts/…              links to the parts (local storage; not in Git), for mlcroissant
    datasets/<name>/subsets/<subset>/…   the same per subset

Writes happen under one inter-process lock (:mod:`coralord_dagster.locking`) and through Git plumbing
(:mod:`coralord_dagster.gitops`): a version's objects are written first, then ``main`` and its tag move in
one transaction. With a remote the remote is the truth: a version is pushed (``--atomic``) before any
local ref names it, and :meth:`Registry.sync` makes the local refs the remote's. Taking the lock first
recovers from whatever a killed writer left behind.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import re
import shutil
import subprocess
import tomllib
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

import git

from coralord_dagster import faults
from coralord_dagster.errors import (
    ConfigError,
    DatasetNotFoundError,
    IntegrityError,
    PublishConflictError,
    RegistryError,
    StorageUnavailableError,
    VersionNotFoundError,
)
from coralord_dagster.gitops import ZERO, Git, GitFailure, remove_stale_state
from coralord_dagster.locking import ProcessLock
from coralord_dagster.model import Manifest
from coralord_dagster.naming import Ref, SemVer, parse_tag, tag_name, validate_name
from coralord_dagster.redact import redact_url, refuse_url_credentials

log = logging.getLogger(__name__)

CONFIG_FILE = "coralord.toml"
LOCK_TIMEOUT_S = 600
REMOTE_TAGS = "refs/coralord/remote-tags"
UNPUBLISHED = "refs/coralord/unpublished"


def dataset_dir(name: str) -> str:
    """Registry folder of a dataset or ``dataset/subset``."""
    parent, _, subset = validate_name(name).partition("/")
    return f"datasets/{parent}/subsets/{subset}" if subset else f"datasets/{parent}"


def is_git_url(location: str) -> bool:
    return "://" in location or location.startswith("git@") or location.endswith(".git")


class PushRejectedError(PublishConflictError):
    """The remote moved while we published (someone published first): decide again."""


class PushRefusedError(RegistryError):
    """The remote refused the version although nobody published meanwhile (a hook, a permission)."""


@dataclass(frozen=True)
class VersionInfo:
    name: str
    version: SemVer
    tag: str
    commit: str
    date: str

    @property
    def label(self) -> str:
        return f"v{self.version}"


class Registry:
    """A Git registry checked out at ``path``.

    >>> import tempfile
    >>> reg = Registry.init(tempfile.mkdtemp() + "/registry", storage_url="../storage")
    >>> reg.datasets()
    []
    """

    def __init__(self, path: Path | str, *, remote: str | None = None, read_only: bool = False) -> None:
        self.path = Path(path).resolve()
        try:
            self.repo = git.Repo(self.path)
        except (git.NoSuchPathError, git.InvalidGitRepositoryError):
            raise RegistryError(
                f"no registry at {self.path}: materialize a dataset first, or pass --registry / set "
                "CORALORD_REGISTRY to an existing registry"
            ) from None
        self.read_only = read_only
        self.origin: str | None = None  # the URL a read-only clone was made from
        self._lock = ProcessLock(self.path / ".git" / "coralord.lock", LOCK_TIMEOUT_S, self._recover)
        self.git = Git(self.path, self._lock)
        if remote:
            self.set_remote(remote)

    # ----------------------------------------------------------------- creation and configuration
    @classmethod
    def init(cls, path: Path | str, *, storage_url: str, remote: str | None = None) -> Registry:
        """Create a registry (or open the one already there); safe when many processes race to do it.

        The repository is prepared in a private folder and renamed into place, so nobody ever opens a
        half-made one. With a ``remote`` that already holds a registry, it is cloned instead.
        """
        refuse_url_credentials(storage_url, "storage URL", user_too=True)
        refuse_url_credentials(remote, "remote")
        path = Path(path).resolve()
        if not (path / ".git").exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.parent / f".{path.name}.init-{uuid.uuid4().hex[:12]}"
            try:
                if remote and _remote_has_main(remote):
                    _git_cli(path.parent, "clone", "--quiet", "--branch", "main", "--", remote, str(tmp))
                else:
                    _new_repository(tmp, storage_url, remote)
                try:
                    os.rename(tmp, path)  # atomic; replaces an empty folder, fails on a non-empty one
                except OSError as e:
                    if e.errno not in (errno.ENOTEMPTY, errno.EEXIST) or not (path / ".git").exists():
                        raise ConfigError(
                            f"cannot create a registry at {path}: {e.strerror}; choose an empty or new folder"
                        ) from None
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
        return cls(path, remote=remote)

    @classmethod
    def open(cls, location: str | Path, *, cache_dir: Path | None = None) -> Registry:
        """Open a local registry path, or clone/fetch a Git URL into the cache (read-only use)."""
        refuse_url_credentials(str(location), "registry")
        loc = str(location)
        if Path(loc).is_dir() and (Path(loc) / ".git").exists():
            return cls(loc)
        if not is_git_url(loc) and not Path(loc).is_dir():
            return cls(loc)  # raises the "no registry" error
        cache = (
            (cache_dir or default_cache_dir()) / "registries" / hashlib.sha256(loc.encode()).hexdigest()[:16]
        )
        try:
            with ProcessLock(str(cache) + ".lock", LOCK_TIMEOUT_S):
                if (cache / ".git").exists():
                    repo = git.Repo(cache)
                    repo.git.fetch("--prune", "--prune-tags", "--tags", "--force", "origin", "--")
                    repo.git.reset(
                        "--hard", "origin/HEAD" if _has_ref(repo, "origin/HEAD") else "origin/main", "--"
                    )
                else:
                    shutil.rmtree(cache, ignore_errors=True)
                    _git_cli(cache.parent, "clone", "--quiet", "--", loc, str(cache))
        except git.GitCommandError as e:
            message = " / ".join(x.strip() for x in str(e.stderr).splitlines() if x.strip())
            failure = GitFailure(["fetch"], e.status if isinstance(e.status, int) else 1, str(e.stderr))
            error = StorageUnavailableError if failure.unreachable else RegistryError
            raise error(f"cannot fetch registry {redact_url(loc)}: {redact_url(message) or e}") from None
        clone = cls(cache, read_only=True)
        clone.origin = loc
        return clone

    def set_remote(self, url: str) -> None:
        refuse_url_credentials(url, "remote")  # .git/config keeps it
        if "origin" in [r.name for r in self.repo.remotes]:
            if self.repo.remotes.origin.url != url:
                self.repo.remotes.origin.set_url(url)
        else:
            self.repo.create_remote("origin", url)

    @property
    def has_remote(self) -> bool:
        return not self.read_only and "origin" in [r.name for r in self.repo.remotes]

    @property
    def config(self) -> Mapping[str, object]:
        try:
            return tomllib.loads((self.path / CONFIG_FILE).read_text())
        except FileNotFoundError:
            return {}
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"{self.path / CONFIG_FILE}: invalid TOML ({e}); fix the file") from None

    def storage_url(self) -> str:
        """Storage URL from ``coralord.toml``; relative paths are relative to the registry."""
        storage = self.config.get("storage", {})
        url = storage.get("url") if isinstance(storage, dict) else None
        if not url:
            raise ConfigError(
                f"{self.path / CONFIG_FILE}: missing [storage] url; set it or pass a storage URL"
            )
        if "://" in url:
            return url
        # A relative path is beside the publisher's registry. Read through a clone (a Git URL, or `git
        # clone` of it), it is found beside the origin when the origin is a folder on this machine.
        origin = self.origin or self._origin_remote()
        beside_origin = _local_folder(origin) / url if origin and _local_folder(origin) else None
        if self.origin is None:
            here = (self.path / url).resolve()
            if here.exists() or beside_origin is None or not beside_origin.exists():
                return str(here)
        if beside_origin is not None and beside_origin.exists():
            return str(beside_origin.resolve())
        raise ConfigError(
            f"registry {redact_url(str(origin))} keeps its parts at the relative path {url!r}, which exists "
            "only beside the publisher's registry; set CORALORD_STORAGE to the storage URL"
        )

    def public_url(self) -> str | None:
        """``[storage] public_url`` from ``coralord.toml``: where consumers fetch the parts over HTTP."""
        storage = self.config.get("storage", {})
        url = storage.get("public_url") if isinstance(storage, dict) else None
        if url is not None and not isinstance(url, str):
            raise ConfigError(f"{self.path / CONFIG_FILE}: [storage] public_url must be a string URL")
        return url or None

    def _origin_remote(self) -> str | None:
        try:
            return (
                str(self.repo.remotes.origin.url) if "origin" in [r.name for r in self.repo.remotes] else None
            )
        except (ValueError, git.GitError):
            return None

    # ----------------------------------------------------------------- reading
    def _tags(self, name: str | None = None) -> Iterator[tuple[str, str, str]]:
        """Version tags (tag, commit, date): all, or only ``name``'s, which git selects by pattern, so
        looking up one dataset does not read every tag of the registry into Python."""
        pattern = f"refs/tags/{name}-v*" if name is not None else "refs/tags"  # names are [a-z0-9_/]
        out = self.repo.git.for_each_ref(
            pattern, format="%(refname:short)\t%(*objectname)%(objectname)\t%(creatordate:iso-strict)"
        )
        for line in out.splitlines():
            tag, obj, date = line.split("\t")
            yield tag, obj[:40], date

    def versions(self, name: str) -> list[VersionInfo]:
        """All published versions of ``name``, newest first."""
        validate_name(name)
        found = []
        for tag, commit, date in self._tags(name):
            parsed = parse_tag(tag)
            if parsed and parsed[0] == name:
                found.append(VersionInfo(name, parsed[1], tag, commit, date))
        return sorted(found, key=lambda v: v.version, reverse=True)

    def all_versions(self) -> list[VersionInfo]:
        """Every published version of every dataset, oldest first (publication order)."""
        found = []
        for tag, commit, date in self._tags():
            parsed = parse_tag(tag)
            if parsed:
                found.append(VersionInfo(parsed[0], parsed[1], tag, commit, date))
        return sorted(found, key=lambda v: (v.date, v.name, v.version))

    def datasets(self) -> list[str]:
        return sorted({v.name for v in self.all_versions()})

    def latest(self, name: str) -> VersionInfo | None:
        versions = self.versions(name)
        return versions[0] if versions else None

    def resolve(self, ref: Ref) -> VersionInfo:
        """The version a ``NAME@REV`` reference points at."""
        versions = self.versions(ref.name)
        if not versions:
            known = self.datasets()
            close = [d for d in known if d.split("/")[0] == ref.name.split("/")[0] or ref.name in d]
            hint = (
                f"; did you mean {close[0]!r}?"
                if close
                else (f"; known: {', '.join(known)}" if known else "")
            )
            raise DatasetNotFoundError(f"dataset {ref.name!r} is not in the registry {self.path}{hint}")
        if ref.rev == "latest":
            return versions[0]
        if ref.semver is not None:
            for v in versions:
                if v.version == ref.semver:
                    return v
        else:
            for v in versions:  # newest first: a content id shared by a metadata-only PATCH → the newest
                if self.manifest(v).content_id.startswith(ref.rev):
                    return v
        listed = ", ".join(v.label for v in versions[:10])
        raise VersionNotFoundError(f"{ref.name} has no version {ref.rev!r}; published: {listed}")

    def read_file(self, rev: str, relpath: str) -> bytes:
        try:
            blob = self.repo.commit(rev).tree / relpath
        except (KeyError, ValueError, git.BadName):
            raise VersionNotFoundError(f"{relpath} does not exist at {rev} in registry {self.path}") from None
        return blob.data_stream.read()

    def manifest(self, version: VersionInfo) -> Manifest:
        text = self.read_file(version.tag, f"{dataset_dir(version.name)}/manifest.json")
        try:
            return Manifest.loads(text)
        except (ValueError, KeyError) as e:
            raise IntegrityError(
                f"{version.tag}: manifest.json is invalid (the registry is damaged or was edited): {e}"
            ) from None

    # ----------------------------------------------------------------- writing
    @contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the registry's write lock (taking it first recovers from a killed writer)."""
        if self.read_only:
            raise RegistryError(f"registry {self.path} is a read-only clone; publish to the original")
        with self._lock:
            yield

    def _recover(self) -> None:
        """Clear what a killed writer left (we hold the lock, so none is alive) and restore the tree."""
        git_dir = self.path / ".git"
        try:
            removed = remove_stale_state(git_dir, self.git)
            if removed:
                log.warning("registry %s: removed what an interrupted write left: %s", self.path, removed)
            if self.git.run("symbolic-ref", "-q", "HEAD", check=False).stdout.strip() != b"refs/heads/main":
                self.git.run("symbolic-ref", "HEAD", "refs/heads/main")
            self._refresh_worktree(force=bool(removed))
        except GitFailure as e:
            raise RegistryError(f"registry {self.path} cannot be recovered: {e.summary}") from None

    def _refresh_worktree(self, *, force: bool = False) -> None:
        """Check out ``main`` (the working tree is a view for people; Git's objects are the truth)."""
        marker = self.path / ".git" / "coralord" / "worktree"
        head = self.git.rev("refs/heads/main")
        if head is None or (not force and marker.exists() and marker.read_text().strip() == head):
            return
        self.git.run("reset", "--hard", "--quiet", "refs/heads/main", "--")
        self.git.run("clean", "-fdq", "--", "datasets")
        marker.parent.mkdir(parents=True, exist_ok=True)
        _atomic_write(marker, head.encode())

    def sync(self) -> None:
        """Make local ``main`` and tags the remote's (call inside :meth:`locked`; no-op without a remote).

        Local versions the remote lacks are pushed when they fast-forward it (a registry given a remote
        for the first time, or one written before publishing became remote-first); otherwise they are
        set aside under ``refs/coralord/unpublished/`` and a warning names them.
        """
        if not self.has_remote:
            return
        try:
            # Wildcards: an empty remote (no main yet) is not an error.
            self.git.fetch(["+refs/heads/*:refs/remotes/origin/*", f"+refs/tags/*:{REMOTE_TAGS}/*"])
            refs = self.git.refs("refs/heads/main", "refs/remotes/origin/main", "refs/tags", REMOTE_TAGS)
            local_main, remote_main = refs.get("refs/heads/main"), refs.get("refs/remotes/origin/main")
            local = {r.removeprefix("refs/tags/"): o for r, o in refs.items() if r.startswith("refs/tags/")}
            remote = {
                r.removeprefix(f"{REMOTE_TAGS}/"): o for r, o in refs.items() if r.startswith(REMOTE_TAGS)
            }
            pending = {t: o for t, o in local.items() if t not in remote and parse_tag(t)}
            if (
                local_main
                and local_main != remote_main
                and pending | {"": ""}
                and (remote_main is None or self.git.is_ancestor(remote_main, local_main))
            ):
                ahead = {t: o for t, o in pending.items() if self.git.is_ancestor(t, local_main)}
                if self.git.push_atomic(
                    [f"{local_main}:refs/heads/main", *(f"{o}:refs/tags/{t}" for t, o in ahead.items())]
                ).ok:
                    remote_main, remote = local_main, {**remote, **ahead}
                    pending = {t: o for t, o in pending.items() if t not in ahead}
            updates: list[tuple[str, str, str | None]] = []
            if remote_main and remote_main != local_main:
                updates.append(("refs/heads/main", remote_main, local_main or ZERO))
            for tag, oid in remote.items():
                if local.get(tag) != oid:
                    updates.append((f"refs/tags/{tag}", oid, None))
            for tag, oid in pending.items():
                updates += [(f"refs/tags/{tag}", ZERO, oid), (f"{UNPUBLISHED}/{tag}", oid, None)]
            if pending:
                log.warning(
                    "registry %s: versions %s were never pushed and conflict with the remote; set aside "
                    "under %s/ (republish to publish their content)",
                    self.path,
                    sorted(pending),
                    UNPUBLISHED,
                )
            if updates:
                self.git.update_refs(updates)
            self._refresh_worktree()
        except GitFailure as e:
            raise self._remote_error("cannot sync with", e) from None

    def _remote_error(self, what: str, e: GitFailure) -> RegistryError | StorageUnavailableError:
        url = redact_url(self.repo.remotes.origin.url) if self.has_remote else "origin"
        error = StorageUnavailableError if e.unreachable else RegistryError
        return error(f"registry {self.path} {what} its remote {url}: {redact_url(e.summary)}")

    def _remote_main(self) -> str | None:
        """The remote's ``main`` now (None when it has none, or cannot be asked)."""
        proc = self.git.run("ls-remote", "--heads", "origin", "refs/heads/main", check=False)
        text = proc.stdout.decode().split()
        return text[0] if proc.returncode == 0 and text else None

    def push(self) -> None:
        """Bring the remote up to date with local work (kept for callers; publishing pushes itself)."""
        self.sync()

    def commit_version(
        self,
        name: str,
        version: SemVer,
        files: Mapping[str, bytes],
        links: Mapping[str, str],
        *,
        message: str,
    ) -> str:
        """Commit a dataset folder and tag it; call inside :meth:`locked`. Returns the commit sha.

        With a remote, the remote accepts the commit and tag first (``git push --atomic``) or
        :class:`PushRejectedError` is raised and nothing changed locally.
        """
        if not self._lock.held:
            raise RegistryError("commit_version must be called inside Registry.locked()")
        folder = dataset_dir(name)
        tag = tag_name(name, version)
        try:
            if self.git.rev(f"refs/tags/{tag}") is not None:
                raise PushRejectedError(
                    f"cannot commit {tag} to registry {self.path}: the tag exists already"
                )
            parent = self.git.rev("refs/heads/main")
            keep = None if "/" in name else "subsets"  # a dataset's subsets are versioned on their own
            commit, staging = self.git.stage_commit(parent, folder, files, keep=keep, message=message)
            faults.reached("objects")
            tag_object = self.git.make_tag(commit, tag, message)
            faults.reached("tagged")
            updates = [
                ("refs/heads/main", commit, parent or ZERO),
                (f"refs/tags/{tag}", tag_object, ZERO),
                (staging, ZERO, None),
            ]
            if self.has_remote:
                outcome = self.git.push_atomic([f"{commit}:refs/heads/main", f"{tag_object}:refs/tags/{tag}"])
                if not outcome.ok:
                    self.git.update_refs([(staging, ZERO, None)])
                    url = redact_url(self.repo.remotes.origin.url)
                    if outcome.unreachable:
                        raise StorageUnavailableError(
                            f"cannot push {tag}: remote {url} unreachable ({redact_url(outcome.message)})"
                        )
                    message = f"remote {url} rejected {tag}: {redact_url(outcome.message)}"
                    if self._remote_main() == parent:
                        # Nobody published meanwhile: the remote refused this push itself (a hook, a
                        # permission). Deciding again would build the same commit; say so at once.
                        raise PushRefusedError(f"{message}; nothing was published")
                    raise PushRejectedError(message)
                if outcome.up_to_date:
                    self.git.update_refs([(staging, ZERO, None)])
                    raise PushRejectedError(f"{tag}: another writer published this very version first")
                faults.reached("pushed")
                updates += [
                    ("refs/remotes/origin/main", commit, None),
                    (f"{REMOTE_TAGS}/{tag}", tag_object, None),
                ]
            self.git.update_refs(updates)
            faults.reached("refs")
            self._refresh_worktree()
            self._place_links(folder, links)
            self.git.maintain()
        except GitFailure as e:
            raise RegistryError(f"cannot commit {tag} to registry {self.path}: {e.summary}") from None
        return commit

    def _place_links(self, folder: str, links: Mapping[str, str]) -> None:
        """Put the version's part links beside its Croissant in the working tree (never in Git: they
        name paths on this machine), replacing the previous version's, so that mlcroissant reads the
        registry's Croissant here. Anywhere else, ``coralord export`` lays the parts out the same way."""
        exclude = self.path / ".git" / "info" / "exclude"
        pattern = "/datasets/**/parts/"
        text = exclude.read_text() if exclude.exists() else ""
        if pattern not in text.splitlines():
            exclude.parent.mkdir(parents=True, exist_ok=True)
            _atomic_write(
                exclude, (text + ("" if text.endswith("\n") or not text else "\n") + pattern + "\n").encode()
            )
        base = self.path / folder
        fresh = base / f".parts-{uuid.uuid4().hex[:12]}"
        old = base / f".parts-old-{uuid.uuid4().hex[:12]}"
        try:
            for rel, target in links.items():
                link = fresh / Path(rel).relative_to("parts")
                link.parent.mkdir(parents=True, exist_ok=True)
                link.symlink_to(target)
            if (base / "parts").exists() or (base / "parts").is_symlink():
                os.rename(base / "parts", old)
            if links:
                os.rename(fresh, base / "parts")
        except OSError as e:
            log.warning(
                "registry %s: part links of %s not placed (%s); use coralord export", self.path, folder, e
            )
        finally:
            shutil.rmtree(fresh, ignore_errors=True)
            shutil.rmtree(old, ignore_errors=True)


def default_cache_dir() -> Path:
    return Path(os.environ.get("CORALORD_CACHE") or Path.home() / ".cache" / "coralord")


def _has_ref(repo: git.Repo, ref: str) -> bool:
    try:
        repo.git.rev_parse("--verify", "--quiet", ref)
        return True
    except git.GitCommandError:
        return False


def _git_cli(cwd: Path, *args: str) -> None:
    proc = subprocess.run(
        ["git", *args],
        cwd=cwd,
        capture_output=True,
        check=False,
        env={**os.environ, "GIT_TERMINAL_PROMPT": "0"},
    )
    if proc.returncode != 0:
        failure = GitFailure(args, proc.returncode, proc.stderr.decode(errors="replace"))
        error = StorageUnavailableError if failure.unreachable else RegistryError
        raise error(f"git {args[0]} failed: {redact_url(failure.summary)}")


def _remote_has_main(remote: str) -> bool:
    proc = subprocess.run(
        ["git", "ls-remote", "--heads", "--", remote, "refs/heads/main"],
        capture_output=True,
        check=False,
        env={**os.environ, "GIT_TERMINAL_PROMPT": "0"},
    )
    if proc.returncode != 0:
        failure = GitFailure(["ls-remote"], proc.returncode, proc.stderr.decode(errors="replace"))
        error = StorageUnavailableError if failure.unreachable else RegistryError
        raise error(f"cannot read remote {redact_url(remote)}: {redact_url(failure.summary)}")
    return bool(proc.stdout.strip())


def _new_repository(path: Path, storage_url: str, remote: str | None) -> None:
    """A registry's first commit (its settings) in a new repository at ``path``."""
    path.mkdir(parents=True)
    _git_cli(path, "init", "--quiet", "--initial-branch=main")
    (path / CONFIG_FILE).write_text(
        "# coralord registry settings. Never put credentials here: they come from the environment.\n"
        f"[storage]\nurl = {_toml_str(storage_url)}\n"
    )
    (path / ".gitignore").write_text("*.duckdb\n*.duckdb.wal\n")
    repo = Git(path)
    name, email = repo.identity()
    env = {
        "GIT_AUTHOR_NAME": name,
        "GIT_AUTHOR_EMAIL": email,
        "GIT_COMMITTER_NAME": name,
        "GIT_COMMITTER_EMAIL": email,
    }
    repo.run("add", "--", CONFIG_FILE, ".gitignore")
    repo.run("commit", "--quiet", "-m", "Create coralord registry", env=env)
    if remote:
        repo.run("remote", "add", "origin", remote)


def _toml_str(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _local_folder(location: str) -> Path | None:
    """The folder a Git location names on this machine (a path or a ``file://`` URL), else None."""
    if location.startswith("file://"):
        return Path(unquote(urlsplit(location).path))
    if "://" in location or re.match(r"^[\w.-]+@[\w.-]+:", location):  # a URL, or scp-like user@host:path
        return None
    return Path(location)
