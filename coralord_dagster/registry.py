"""The Git registry: descriptors, manifests and Croissant files, one commit and one tag per version.

Layout (a contract)::

    coralord.toml                        storage URL and defaults (never secrets)
    datasets/<name>/descriptor.yaml
    datasets/<name>/manifest.json
    datasets/<name>/croissant.json
    datasets/<name>/parts/…              links to the parts (local storage), for Croissant readers
    datasets/<name>/subsets/<subset>/…   the same per subset

Every write happens under one inter-process file lock: concurrent GitPython commits to one repository
silently lose commits without it.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tomllib
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import git
from filelock import FileLock

from coralord_dagster.errors import (
    ConfigError,
    DatasetNotFoundError,
    RegistryError,
    VersionNotFoundError,
)
from coralord_dagster.manifest import Manifest
from coralord_dagster.naming import Ref, SemVer, parse_tag, tag_name, validate_name

CONFIG_FILE = "coralord.toml"
DEFAULT_IDENTITY = ("coralord", "coralord@localhost")
LOCK_TIMEOUT_S = 600


def dataset_dir(name: str) -> str:
    """Registry folder of a dataset or ``dataset/subset``."""
    parent, _, subset = validate_name(name).partition("/")
    return f"datasets/{parent}/subsets/{subset}" if subset else f"datasets/{parent}"


def is_git_url(location: str) -> bool:
    return "://" in location or location.startswith("git@") or location.endswith(".git")


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
        self._lock = FileLock(str(self.path / ".git" / "coralord.lock"), timeout=LOCK_TIMEOUT_S)
        if remote:
            self.set_remote(remote)

    # ----------------------------------------------------------------- creation and configuration
    @classmethod
    def init(cls, path: Path | str, *, storage_url: str, remote: str | None = None) -> Registry:
        """Create a registry (or open the one already there)."""
        path = Path(path).resolve()
        path.mkdir(parents=True, exist_ok=True)
        with FileLock(str(path.parent / f".{path.name}.init.lock"), timeout=LOCK_TIMEOUT_S):
            if not (path / ".git").exists():
                repo = git.Repo.init(path, initial_branch="main")
                (path / CONFIG_FILE).write_text(
                    "# coralord registry settings. Never put credentials here: "
                    "they come from the environment.\n"
                    f"[storage]\nurl = {_toml_str(storage_url)}\n"
                )
                (path / ".gitignore").write_text("*.duckdb\n*.duckdb.wal\n")
                repo.index.add([CONFIG_FILE, ".gitignore"])
                with _identity(repo):
                    repo.git.commit("-m", "Create coralord registry")
        return cls(path, remote=remote)

    @classmethod
    def open(cls, location: str | Path, *, cache_dir: Path | None = None) -> Registry:
        """Open a local registry path, or clone/fetch a Git URL into the cache (read-only use)."""
        loc = str(location)
        if Path(loc).is_dir() and (Path(loc) / ".git").exists():
            return cls(loc)
        if not is_git_url(loc) and not Path(loc).is_dir():
            return cls(loc)  # raises the "no registry" error
        cache = (
            (cache_dir or default_cache_dir()) / "registries" / hashlib.sha256(loc.encode()).hexdigest()[:16]
        )
        try:
            with FileLock(str(cache) + ".lock", timeout=LOCK_TIMEOUT_S):
                if (cache / ".git").exists():
                    repo = git.Repo(cache)
                    repo.git.fetch("--prune", "--tags", "--force", "origin")
                    repo.git.reset(
                        "--hard", "origin/HEAD" if _has_ref(repo, "origin/HEAD") else "origin/main"
                    )
                else:
                    shutil.rmtree(cache, ignore_errors=True)
                    git.Repo.clone_from(loc, cache)
        except git.GitCommandError as e:
            raise RegistryError(f"cannot fetch registry {loc}: {e.stderr.strip() or e}") from None
        clone = cls(cache, read_only=True)
        clone.origin = loc
        return clone

    def set_remote(self, url: str) -> None:
        if "origin" in [r.name for r in self.repo.remotes]:
            if self.repo.remotes.origin.url != url:
                self.repo.remotes.origin.set_url(url)
        else:
            self.repo.create_remote("origin", url)

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
        if self.origin is not None:
            raise ConfigError(
                f"registry {self.origin} keeps its parts at the relative path {url!r}, which exists only "
                "beside the publisher's registry; set CORALORD_STORAGE to the storage URL"
            )
        return str((self.path / url).resolve())

    # ----------------------------------------------------------------- reading
    def _tags(self) -> Iterator[tuple[str, str, str]]:
        out = self.repo.git.for_each_ref(
            "refs/tags", format="%(refname:short)\t%(*objectname)%(objectname)\t%(creatordate:iso-strict)"
        )
        for line in out.splitlines():
            tag, obj, date = line.split("\t")
            yield tag, obj[:40], date

    def versions(self, name: str) -> list[VersionInfo]:
        """All published versions of ``name``, newest first."""
        validate_name(name)
        found = []
        for tag, commit, date in self._tags():
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
            raise RegistryError(f"{version.tag}: manifest.json is invalid: {e}") from None

    def export(self, version: VersionInfo, dest: Path | str) -> Path:
        """Write the dataset's folder at ``version`` (files and part links, no subsets) to ``dest``."""
        dest = Path(dest)
        prefix = dataset_dir(version.name)
        tree = self.repo.commit(version.tag).tree / prefix
        for item in tree.traverse():
            if not isinstance(item, git.Blob):
                continue
            rel = str(item.path)[len(prefix) + 1 :]
            if rel.startswith("subsets/"):
                continue
            target = dest / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            data = item.data_stream.read()
            if item.mode == 0o120000:
                if target.is_symlink() or target.exists():
                    target.unlink()
                target.symlink_to(data.decode())
            else:
                target.write_bytes(data)
        return dest

    # ----------------------------------------------------------------- writing
    @contextmanager
    def locked(self) -> Iterator[None]:
        if self.read_only:
            raise RegistryError(f"registry {self.path} is a read-only clone; publish to the original")
        with self._lock:
            yield

    def commit_version(
        self,
        name: str,
        version: SemVer,
        files: Mapping[str, bytes],
        links: Mapping[str, str],
        *,
        message: str,
    ) -> str:
        """Commit a dataset folder and tag it; call inside :meth:`locked`. Returns the commit sha."""
        folder = self.path / dataset_dir(name)
        tag = tag_name(name, version)
        head = self.repo.head.commit.hexsha
        try:
            shutil.rmtree(folder / "parts", ignore_errors=True)
            folder.mkdir(parents=True, exist_ok=True)
            for rel, data in files.items():
                _atomic_write(folder / rel, data)
            for rel, target in links.items():
                (folder / rel).parent.mkdir(parents=True, exist_ok=True)
                (folder / rel).symlink_to(target)
            self._pack_blobs(os.fsencode(t) for t in links.values())
            # The dataset's own folder, not its subsets: those are versioned on their own.
            rel_folder = str(folder.relative_to(self.path))
            pathspec = [rel_folder, f":(exclude){rel_folder}/subsets"]
            self.repo.git.add("--all", "--", *pathspec)
            with _identity(self.repo):
                self.repo.git.commit("--allow-empty", "-m", message, "--", *pathspec)
                self.repo.git.tag("-a", tag, "-m", message)
        except (git.GitCommandError, OSError) as e:
            self._restore(head, folder, tag)
            raise RegistryError(f"cannot commit {tag} to registry {self.path}: {e}") from None
        return self.repo.head.commit.hexsha

    def _pack_blobs(self, contents: Iterable[bytes]) -> None:
        """Store small blobs (the part links' targets) in one pack before ``git add`` sees them:
        ``git add`` would write each as a loose object file, hundreds of files per version."""
        stream = b"".join(b"blob\ndata %d\n%s\n" % (len(c), c) for c in contents)
        if not stream:
            return
        proc = subprocess.run(
            ["git", "fast-import", "--quiet", "--done"],
            cwd=self.path,
            input=stream + b"done\n",
            capture_output=True,
            check=False,
        )
        if proc.returncode != 0:
            raise git.GitCommandError(["git", "fast-import"], proc.returncode, proc.stderr)

    def _restore(self, head: str, folder: Path, tag: str) -> None:
        """Undo a half-done commit: nothing of it may stay visible."""
        if tag in [t.name for t in self.repo.tags]:
            self.repo.git.tag("-d", tag)
        self.repo.git.reset("--hard", head)
        self.repo.git.clean("-fdq", "--", str(folder.relative_to(self.path)))

    def push(self) -> None:
        """Push the branch and every tag to ``origin`` (no-op without a remote)."""
        if "origin" not in [r.name for r in self.repo.remotes]:
            return
        try:
            self.repo.git.push("origin", "HEAD:refs/heads/main", "--tags")
        except git.GitCommandError as e:
            raise RegistryError(
                f"published locally in {self.path} but pushing to origin failed: {e.stderr.strip()}; "
                "the next publish pushes again"
            ) from None


def default_cache_dir() -> Path:
    return Path(os.environ.get("CORALORD_CACHE") or Path.home() / ".cache" / "coralord")


def _has_ref(repo: git.Repo, ref: str) -> bool:
    try:
        repo.git.rev_parse("--verify", "--quiet", ref)
        return True
    except git.GitCommandError:
        return False


def _toml_str(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


@contextmanager
def _identity(repo: git.Repo) -> Iterator[None]:
    """Commit as the configured Git user, or as 'coralord' on machines without one."""
    env: dict[str, str] = {}
    try:
        repo.git.config("user.name")
        repo.git.config("user.email")
    except git.GitCommandError:
        name, email = DEFAULT_IDENTITY
        env = {
            "GIT_AUTHOR_NAME": name,
            "GIT_AUTHOR_EMAIL": email,
            "GIT_COMMITTER_NAME": name,
            "GIT_COMMITTER_EMAIL": email,
        }
    with repo.git.custom_environment(**env):
        yield
