"""Upstream sources: where a dataset's raw files live, resolved to an fsspec location.

A deployment can point a source elsewhere without editing the descriptor (a mirror, or a local
fixture with the same layout when offline) by setting ``CORALORD_SOURCE__<NAME>`` to a base URL or
path, e.g. ``CORALORD_SOURCE__FASHION_MNIST=/data/fmnist-mirror``. A relocated source is checked for
changes where it is read from.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any
from urllib.parse import quote, urlsplit

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq

from coralord_dagster.descriptor import (
    CheckPolicy,
    CroissantSource,
    DatasetSource,
    GitSource,
    HuggingFaceSource,
    LoadedDescriptor,
    UrlSource,
)
from coralord_dagster.errors import CoralordError, StorageError
from coralord_dagster.redact import redact_url

DEFAULT_HF_ENDPOINT = "https://huggingface.co"


class SourceError(CoralordError, OSError):
    """An upstream source could not be checked or read (unreachable, error status, bad answer)."""


def override_variable(name: str) -> str:
    """The environment variable that relocates the source of dataset ``name``."""
    return "CORALORD_SOURCE__" + name.replace("/", "__").upper()


def scheme(url: str) -> str:
    return url.split("://", 1)[0].lower() if "://" in url else "file"


def origin(url: str) -> tuple[str, str, int | None]:
    """Scheme, host and port of a URL: what a credential is scoped to (ports defaulted; a malformed URL
    has no origin that anything is sent to)."""
    parts = urlsplit(url)
    kind = parts.scheme.lower()
    try:
        port = parts.port or {"http": 80, "https": 443}.get(kind)
    except ValueError:
        return ("", "", None)
    return kind, (parts.hostname or "").lower(), port


def environment_s3_endpoint() -> str | None:
    """The S3 endpoint the environment's AWS credentials belong to (None: AWS itself)."""
    return os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL") or None


def _credentials_scoped(url: str, options: dict[str, Any]) -> dict[str, Any]:
    """``options`` for reading ``url``, anonymous when they name an S3 endpoint that the environment's
    credentials do not belong to: a descriptor (someone else's) must not make this process sign its
    requests with the consumer's AWS keys for another host."""
    endpoint = options.get("endpoint_url")
    if scheme(url) not in ("s3", "s3a") or not isinstance(endpoint, str):
        return options
    own = environment_s3_endpoint()
    if own is not None and origin(endpoint) == origin(own):
        return options
    if own is None and (
        origin(endpoint)[1] == "amazonaws.com" or origin(endpoint)[1].endswith(".amazonaws.com")
    ):
        return options
    return {**options, "anon": True}


@dataclass(frozen=True)
class Source:
    """A resolved source: where it officially is, where it is read from, and how it is checked."""

    kind: str
    uri: str  # where the source officially lives (recorded in lineage)
    base: str  # where it is read from now (the official location or an override)
    files: tuple[str, ...] = ()
    check: CheckPolicy = field(default_factory=CheckPolicy)
    options: dict[str, Any] = field(default_factory=dict)  # kind-specific: repo, revision, ref, endpoint
    relocated: bool = False  # read from a CORALORD_SOURCE__<NAME> override instead of ``uri``

    @property
    def checker(self) -> str:
        """Which fingerprint kind applies: the source's own, or its location's when relocated."""
        if self.kind in ("huggingface", "git", "croissant") and not self.relocated:
            return self.kind
        return {"file": "local", "http": "http", "https": "http", "s3": "s3", "s3a": "s3"}.get(
            scheme(self.base), "fsspec"
        )

    @property
    def storage_options(self) -> dict[str, Any]:
        """fsspec options from the descriptor (``source.storage_options``; never credentials). They
        belong to the official location: a relocated source is read without them. An S3 endpoint other
        than the environment's is read anonymously (see :func:`_credentials_scoped`)."""
        if self.relocated:
            return {}
        return _credentials_scoped(self.base, dict(self.options.get("storage_options", {})))

    @property
    def fs(self) -> fsspec.AbstractFileSystem:
        fs, _ = fsspec.core.url_to_fs(self._readable_base(), **self.storage_options)
        return fs

    @property
    def location(self) -> str:
        """The URL or path the source is read from now (e.g. a Zarr store's root)."""
        return self._readable_base()

    def _readable_base(self) -> str:
        if self.kind == "git" and not self.relocated:
            return str(git_checkout(self.base, self.options.get("ref", "HEAD")))
        return self.base

    def url(self, relpath: str) -> str:
        """The full URL of a file below the source."""
        return self._readable_base().rstrip("/") + "/" + relpath.lstrip("/")

    def open(self, relpath: str, mode: str = "rb") -> IO[bytes]:
        try:
            url = self.url(relpath)
            # block_size=0: stream over HTTP without requiring Range support
            kwargs = {"block_size": 0} if scheme(url) in ("http", "https") else {}
            return fsspec.open(url, mode, **kwargs, **self.storage_options).open()
        except (OSError, ValueError) as e:
            raise StorageError(
                redact_url(f"source {self.uri}: cannot open {relpath!r} at {self.url(relpath)}: {e}")
            ) from e

    def read_parquet(self, relpath: str, columns: list[str] | None = None) -> pa.Table:
        """Read one Parquet file of the source.

        Over HTTP the file is fetched whole (one request, no Range support needed): a pipeline reads
        all of it anyway, and not every server or mirror answers range requests.
        """
        try:
            if scheme(self.url(relpath)) in ("http", "https"):
                with self.open(relpath) as f:
                    source: Any = pa.BufferReader(f.read())
                return pq.read_table(source, columns=columns)
            with self.open(relpath) as f:
                return pq.read_table(f, columns=columns)
        except (pa.ArrowInvalid, OSError) as e:
            raise StorageError(
                redact_url(f"source {self.uri}: {relpath!r} is not readable Parquet: {e}")
            ) from e

    def describe(self) -> dict[str, Any]:
        """What lineage records about the source (never credentials)."""
        out: dict[str, Any] = {"kind": self.kind, "uri": self.uri, "files": list(self.files)}
        if self.relocated:
            out["read_from"] = redact_url(self.base)  # an override may carry a mirror's password
        return out


def _local(path: str, folder: Path) -> str:
    if "://" in path or Path(path).is_absolute():
        return path
    return str((folder / path).resolve())


def resolve_source(descriptor: LoadedDescriptor) -> Source:
    """Resolve a descriptor's source, honouring ``CORALORD_SOURCE__<NAME>`` overrides."""
    spec = descriptor.spec.source
    options: dict[str, Any] = {}
    files: tuple[str, ...] = ()
    if isinstance(spec, HuggingFaceSource):
        endpoint = (spec.endpoint or os.environ.get("HF_ENDPOINT") or DEFAULT_HF_ENDPOINT).rstrip("/")
        uri = f"{endpoint}/datasets/{spec.repo}/resolve/{quote(spec.revision, safe='')}"
        options = {"endpoint": endpoint, "repo": spec.repo, "revision": spec.revision}
        files = tuple(spec.files)
    elif isinstance(spec, UrlSource):
        uri, files = _local(spec.url, descriptor.folder), tuple(spec.files)
        if spec.storage_options:
            options = {"storage_options": dict(spec.storage_options)}
    elif isinstance(spec, GitSource):
        uri, files, options = _local(spec.repo, descriptor.folder), tuple(spec.files), {"ref": spec.ref}
    elif isinstance(spec, CroissantSource):
        uri = _local(spec.url, descriptor.folder)
        options = {"croissant": uri}
    elif isinstance(spec, DatasetSource):
        uri = f"coralord:{spec.name}@{spec.version}"
        options = {"dataset": spec.name, "version": spec.version}
    else:  # pragma: no cover - the descriptor model admits no other kind
        raise TypeError(spec)
    override = None if isinstance(spec, DatasetSource) else os.environ.get(override_variable(descriptor.name))
    base = override or uri
    if "://" not in base and not isinstance(spec, DatasetSource):
        base = str(Path(base).expanduser().resolve())
    if isinstance(spec, CroissantSource) and not override:
        base = uri.rsplit("/", 1)[0]  # files named in a Croissant are relative to its folder
    return Source(
        kind=spec.kind,
        uri=uri,
        base=base,
        files=files,
        check=spec.check,
        options=options,
        relocated=bool(override),
    )


def git_environment() -> dict[str, str]:
    """The environment for a git command a source check runs: never wait for a password on a terminal."""
    return {**os.environ, "GIT_TERMINAL_PROMPT": "0"}


def git_checkout(repo: str, ref: str, cache: Path | None = None) -> Path:
    """A local checkout of ``repo`` at ``ref`` (cloned once into the cache, then fetched)."""
    from filelock import FileLock

    from coralord_dagster.registry import default_cache_dir

    for what, value in (("repository", repo), ("ref", ref)):
        if value.startswith("-"):  # an option in disguise (--upload-pack=...): never passed to git
            raise SourceError(f"git source {redact_url(repo)}: {what} {value!r} may not start with '-'")
    root = (cache or default_cache_dir()) / "sources" / hashlib.sha256(repo.encode()).hexdigest()[:16]
    try:
        with FileLock(str(root) + ".lock", timeout=300):
            if not (root / ".git").exists():
                subprocess.run(
                    ["git", "clone", "--quiet", "--", repo, str(root)],
                    check=True,
                    capture_output=True,
                    timeout=600,
                    env=git_environment(),
                    stdin=subprocess.DEVNULL,
                )
            subprocess.run(
                ["git", "-C", str(root), "fetch", "--quiet", "--force", "--", "origin", ref],
                check=True,
                capture_output=True,
                timeout=600,
                env=git_environment(),
                stdin=subprocess.DEVNULL,
            )
            subprocess.run(
                ["git", "-C", str(root), "checkout", "--quiet", "--force", "FETCH_HEAD"],
                check=True,
                capture_output=True,
                timeout=120,
            )
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as e:
        stderr = getattr(e, "stderr", b"") or b""
        raise SourceError(
            redact_url(f"git source {repo}@{ref}: {stderr.decode(errors='replace').strip() or e}")
        ) from None
    return root
