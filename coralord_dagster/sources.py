"""Upstream sources: where a dataset's raw files live, resolved to an fsspec location.

A deployment can point a source elsewhere without editing the descriptor (a mirror, or a local
fixture with the same layout when offline) by setting ``CORALORD_SOURCE__<NAME>`` to a base URL or
path, e.g. ``CORALORD_SOURCE__FASHION_MNIST=/data/fmnist-mirror``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any
from urllib.parse import quote

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq

from coralord_dagster.descriptor import HuggingFaceSource, LoadedDescriptor, UrlSource
from coralord_dagster.errors import StorageError

DEFAULT_HF_ENDPOINT = "https://huggingface.co"


def override_variable(name: str) -> str:
    """The environment variable that relocates the source of dataset ``name``."""
    return "CORALORD_SOURCE__" + name.replace("/", "__").upper()


@dataclass(frozen=True)
class Source:
    """A resolved source: a base URL plus the files a pipeline reads below it."""

    kind: str
    uri: str  # where the source officially lives (recorded in lineage)
    base: str  # where it is read from now (the official location or an override)
    files: tuple[str, ...] = ()
    storage_options: dict[str, Any] = field(default_factory=dict)

    @property
    def fs(self) -> fsspec.AbstractFileSystem:
        fs, _ = fsspec.core.url_to_fs(self.base, **self.storage_options)
        return fs

    def url(self, relpath: str) -> str:
        """The full URL of a file below the source."""
        return self.base.rstrip("/") + "/" + relpath.lstrip("/")

    def open(self, relpath: str, mode: str = "rb") -> IO[bytes]:
        try:
            return fsspec.open(self.url(relpath), mode, **self.storage_options).open()
        except (OSError, ValueError) as e:
            raise StorageError(
                f"source {self.uri}: cannot open {relpath!r} at {self.url(relpath)}: {e}"
            ) from e

    def read_parquet(self, relpath: str, columns: list[str] | None = None) -> pa.Table:
        """Read one Parquet file of the source."""
        with self.open(relpath) as f:
            try:
                return pq.read_table(f, columns=columns)
            except (pa.ArrowInvalid, OSError) as e:
                raise StorageError(f"source {self.uri}: {relpath!r} is not readable Parquet: {e}") from e

    def describe(self) -> dict[str, Any]:
        """What lineage records about the source (never credentials)."""
        return {"kind": self.kind, "uri": self.uri, "files": list(self.files)}


def resolve_source(descriptor: LoadedDescriptor) -> Source:
    """Resolve a descriptor's source, honouring ``CORALORD_SOURCE__<NAME>`` overrides."""
    spec = descriptor.spec.source
    if isinstance(spec, HuggingFaceSource):
        endpoint = (spec.endpoint or os.environ.get("HF_ENDPOINT") or DEFAULT_HF_ENDPOINT).rstrip("/")
        uri = f"{endpoint}/datasets/{spec.repo}/resolve/{quote(spec.revision, safe='')}"
        kind, files = "huggingface", tuple(spec.files)
    elif isinstance(spec, UrlSource):
        uri = spec.url
        if "://" not in uri and not Path(uri).is_absolute():
            uri = str((descriptor.folder / uri).resolve())
        kind, files = "url", tuple(spec.files)
    else:  # pragma: no cover - the descriptor model admits no other kind
        raise TypeError(spec)
    base = os.environ.get(override_variable(descriptor.name)) or uri
    if "://" not in base:
        base = str(Path(base).expanduser().resolve())
    return Source(kind=kind, uri=uri, base=base, files=files)
