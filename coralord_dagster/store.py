"""The content-addressed Parquet part store over fsspec (local paths, ``s3://``, ...).

Parts live at ``<storage>/parts/<sha256[:2]>/<sha256>.parquet``. A part is written once, never
modified, and is visible only when complete: locally it is written to a temporary name and renamed;
object stores make a PUT visible only when it has finished. A part that already exists is not written
again, so identical content costs no bytes. Credentials come from ``storage_options`` or the
environment, never from the registry.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import sys
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq
import xxhash

from coralord_dagster import faults
from coralord_dagster.chunking import Chunking, boundaries
from coralord_dagster.errors import ConfigError, IntegrityError, StorageError
from coralord_dagster.model import PartDigests, PartRef, Segment
from coralord_dagster.redact import redact_url as redact
from coralord_dagster.redact import refuse_url_credentials, url_credentials
from coralord_dagster.retry import (
    backend_options,
    describe,
    is_transient,
    limit_backend_retries,
    retrying,
    unavailable,
)

_REMOTE_READ_DEFAULTS = {"s3": {"default_cache_type": "none"}, "gcs": {"cache_type": "none"}}


def _http_base(protocol: str, url: str, options: dict[str, Any]) -> str | None:
    """The HTTP form of an object store URL: S3 path-style on its endpoint (``options``, then the
    environment's, else AWS), GCS's public endpoint, or the URL itself for http(s)."""
    if protocol in ("http", "https"):
        return url
    bucket_path = url.split("://", 1)[1] if "://" in url else None
    if bucket_path is None:
        return None
    if protocol in ("s3", "s3a"):
        endpoint = (
            options.get("endpoint_url")
            or (options.get("client_kwargs") or {}).get("endpoint_url")
            or os.environ.get("AWS_ENDPOINT_URL_S3")
            or os.environ.get("AWS_ENDPOINT_URL")
        )
        if endpoint and url_credentials(str(endpoint), user_too=True):
            return None  # never publish an address holding credentials
        if endpoint:
            return f"{str(endpoint).rstrip('/')}/{bucket_path}"
        bucket, _, key = bucket_path.partition("/")
        return f"https://{bucket}.s3.amazonaws.com{'/' + key if key else ''}"
    if protocol in ("gs", "gcs"):
        return f"https://storage.googleapis.com/{bucket_path}"
    return None


def row_group_statistics(meta: pq.FileMetaData, rg: int) -> dict[str, list[Any]]:
    """Min and max per top-level column of one row group, from a footer (no data scan)."""
    out: dict[str, list[Any]] = {}
    group = meta.row_group(rg)
    for c in range(group.num_columns):
        chunk = group.column(c)
        st = chunk.statistics
        if "." in chunk.path_in_schema or st is None or not st.has_min_max:
            continue
        lo, hi = st.min, st.max
        if all(isinstance(v, (int, float, str)) and v == v for v in (lo, hi)):  # v == v: not NaN
            out[chunk.path_in_schema] = [lo, hi]
    return out


def part_statistics(meta: pq.FileMetaData) -> dict[str, list[Any]]:
    """Min and max per top-level column over a whole part, from its footer."""
    out: dict[str, list[Any]] = {}
    for rg in range(meta.num_row_groups):
        for name, (lo, hi) in row_group_statistics(meta, rg).items():
            out[name] = [min(out[name][0], lo), max(out[name][1], hi)] if name in out else [lo, hi]
    return out


def chunk_ranges(meta: pq.FileMetaData) -> list[tuple[int, int]]:
    """(offset, length) of every column chunk, row group by row group, in footer order."""
    out = []
    for rg in range(meta.num_row_groups):
        group = meta.row_group(rg)
        for c in range(group.num_columns):
            chunk = group.column(c)
            start = chunk.dictionary_page_offset if chunk.has_dictionary_page else chunk.data_page_offset
            out.append((int(start), int(chunk.total_compressed_size)))
    return out


def digest(data: Any) -> str:
    """The digest of one byte range (xxh3-64: a read checks every range it uses at memory speed)."""
    return xxhash.xxh3_64_hexdigest(data)


def part_digests(data: pa.Buffer, meta: pq.FileMetaData) -> PartDigests:
    """Digests of a part's footer and column chunks, from the bytes just serialized."""
    view = memoryview(data)
    footer_len = int.from_bytes(view[-8:-4], "little")
    footer_offset = len(view) - 8 - footer_len
    chunks = [digest(view[a : a + n]) for a, n in chunk_ranges(meta)]
    return PartDigests(footer_offset=footer_offset, footer=digest(view[footer_offset:]), chunks=chunks)


def _syncfs(path: str) -> bool:
    """``syncfs(2)`` on the filesystem holding ``path``; False where it is not available."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False
    try:
        if libc.syncfs(fd) != 0:
            raise OSError(ctypes.get_errno(), "syncfs failed")
        return True
    finally:
        os.close(fd)


@dataclass
class WriteStats:
    parts_written: int = 0
    parts_reused: int = 0
    bytes_written: int = 0


def normalize_url(url: str) -> str:
    """Local paths become absolute; URLs stay as they are (without a trailing slash)."""
    if "://" in url and not url.startswith("file://"):
        return url.rstrip("/")
    return str(Path(url.removeprefix("file://")).expanduser().resolve())


#: Rows per Parquet row group inside a part: small enough that a predicate on a clustered column
#: (time, id) lets readers skip most of a part by its row-group statistics, large enough to cost
#: little in file size and write time (16 Ki rows cost 22% more bytes and 80% more time on 10 columns).
ROW_GROUP_ROWS = 64 * 1024


def _serialize(table: pa.Table, dictionary: list[str] | bool = True) -> tuple[pa.Buffer, pq.FileMetaData]:
    # Parts carry no schema-level metadata (pandas index ranges, versions): it would differ between
    # versions and defeat part reuse. The manifest keeps the full schema. The bytes stay in one Arrow
    # buffer (hashed and written without a copy) and the footer comes from the writer, not a re-parse.
    sink = pa.BufferOutputStream()
    footer: list[pq.FileMetaData] = []
    pq.write_table(
        table.replace_schema_metadata(None),
        sink,
        row_group_size=ROW_GROUP_ROWS,
        use_dictionary=dictionary,
        metadata_collector=footer,
    )
    return sink.getvalue(), footer[0]


class PartStore:
    """Content-addressed Parquet parts below ``url``.

    >>> import pyarrow as pa, tempfile
    >>> store = PartStore(tempfile.mkdtemp())
    >>> parts, stats = store.write_table(pa.table({"x": [1, 2, 3]}))
    >>> [p.rows for p in parts], stats.parts_written
    ([3], 1)
    >>> store.check(parts[0]) is None
    True
    """

    def __init__(
        self, url: str, storage_options: dict[str, Any] | None = None, *, public_url: str | None = None
    ) -> None:
        # Before anything can show or store it: the URL becomes every part's published URL, and s3fs would
        # take "KEY:SECRET@bucket" for a bucket name and repeat it in its errors.
        refuse_url_credentials(url, "storage URL", user_too=True)
        refuse_url_credentials(public_url, "storage public_url", user_too=True)
        if public_url is not None and not public_url.startswith(("https://", "http://")):
            raise StorageError(f"storage public_url {public_url!r} is not an http(s):// URL")
        self.url = normalize_url(url)
        protocol = fsspec.core.split_protocol(self.url)[0] or "file"
        options = {**_REMOTE_READ_DEFAULTS.get(protocol, {}), **backend_options(protocol)}
        options.update(storage_options or {})
        self.public_url = public_url.rstrip("/") if public_url else _http_base(protocol, self.url, options)
        try:
            self.fs, self.root = fsspec.core.url_to_fs(self.url, **options)
        except (ImportError, ValueError, TypeError) as e:
            raise StorageError(f"storage {redact(self.url)!r}: {e}") from e
        # Our retries (coralord_dagster.retry) are the one policy: the backend's own loop stays short.
        limit_backend_retries(self.fs)
        self.is_local = protocol in ("file", "local")

    def __repr__(self) -> str:
        return f"PartStore({self.url!r})"

    def part_path(self, sha256: str) -> str:
        """The filesystem path (within ``self.fs``) of a part."""
        return f"{self.root.rstrip('/')}/parts/{sha256[:2]}/{sha256}.parquet"

    def part_url(self, sha256: str) -> str:
        """The part's URL as published in manifests and Croissant files."""
        return f"{self.url}/parts/{sha256[:2]}/{sha256}.parquet"

    def http_url(self, sha256: str) -> str | None:
        """The part's ``http(s)://`` address, for consumers that fetch it over HTTP (a Croissant's
        ``contentUrl``); None when the storage has none (a local folder)."""
        if self.public_url is None:
            return None
        return f"{self.public_url}/parts/{sha256[:2]}/{sha256}.parquet"

    def exists(self, sha256: str, size: int | None = None) -> bool:
        """Whether the part is stored (with ``size`` bytes, when given: a part cut short by a crash
        before it was synced is written again rather than reused)."""
        path = self.part_path(sha256)

        def stored() -> bool:
            try:
                return self.fs.exists(path) if size is None else self.fs.size(path) == size
            except FileNotFoundError:
                return False

        return self._call(f"check part {sha256}", stored)

    def missing(self, parts: Sequence[PartRef]) -> list[str]:
        """The sha256 of the ``parts`` not stored (with their recorded size)."""
        sizes = {p.sha256: p.bytes for p in parts}
        workers = 1 if self.is_local else 16
        with ThreadPoolExecutor(max_workers=workers) as pool:
            present = list(pool.map(lambda item: self.exists(*item), sizes.items()))
        return [sha for sha, ok in zip(sizes, present, strict=True) if not ok]

    def _put(self, sha256: str, data: bytes | pa.Buffer, *, sync: bool = True) -> None:
        """Store one part. Locally: a temporary file renamed into place (readers see all of it or
        nothing), fsync'ed unless ``sync=False`` (the caller then syncs many at once, see
        :meth:`_sync_local`)."""
        path = self.part_path(sha256)
        if not self.is_local:
            payload = data if isinstance(data, bytes) else data.to_pybytes()
            self._call(f"write part {sha256}", self.fs.pipe_file, path, payload)
            return
        try:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            tmp = f"{os.path.dirname(path)}/.{sha256}.{uuid.uuid4().hex}.tmp"
            with open(tmp, "wb") as f:
                f.write(data)
                if sync:
                    f.flush()
                    os.fsync(f.fileno())
            os.replace(tmp, path)
        except OSError as e:
            raise StorageError(f"storage {redact(self.url)}: cannot write part {sha256}: {e}") from e

    def write_table(
        self,
        table: pa.Table,
        chunking: Chunking | None = None,
        hashes: Any = None,
        dictionary: list[str] | bool = True,
        segments: Sequence[Segment] | None = None,
    ) -> tuple[list[PartRef], WriteStats]:
        """Cut ``table`` into content-defined parts and store the ones not stored yet.

        ``dictionary``: the columns to dictionary-encode (pyarrow's default, all columns, makes files
        of high-cardinality columns bigger and slower to write). ``segments``: consecutive row ranges
        (offset, rows, split) cut on their own, so that no part mixes two splits.
        """
        chunking = chunking or Chunking.for_table(table)
        if hashes is None:
            hashes = chunking.hashes(table)
        spans: list[tuple[int, int, str | None]] = []
        for start, rows, split in segments or [(0, table.num_rows, None)]:
            cut = boundaries(hashes[start : start + rows], chunking)
            spans += [(start + offset, length, split) for offset, length in cut]
        spans = spans or [(0, 0, None)]
        stats = WriteStats()

        def write_one(span: tuple[int, int, str | None]) -> tuple[PartRef, bool]:
            data, footer = _serialize(table.slice(span[0], span[1]), dictionary)
            sha = hashlib.sha256(data).hexdigest()
            fresh = not self.exists(sha, data.size)
            if fresh:
                self._put(sha, data, sync=False)
                faults.reached("parts")
            ref = PartRef(
                sha256=sha,
                url=self.part_url(sha),
                rows=span[1],
                bytes=data.size,
                stats=part_statistics(footer) or None,
                digests=part_digests(data, footer),
                split=span[2],
            )
            return ref, fresh

        # Serialization and hashing release the GIL: parts are written in parallel, with twice as many
        # threads as cores so that serialization goes on while some threads wait on the disk or network.
        with ThreadPoolExecutor(max_workers=max(2, min(16, 2 * (os.cpu_count() or 1)))) as pool:
            results = list(pool.map(write_one, spans))
        if self.is_local and any(fresh for _, fresh in results):
            # Durable before anything can reference them: one filesystem sync for all new parts.
            self._sync_local([self.part_path(r.sha256) for r, fresh in results if fresh])
        for ref, fresh in results:
            if fresh:
                stats.parts_written += 1
                stats.bytes_written += ref.bytes
            else:
                stats.parts_reused += 1
        return [r for r, _ in results], stats

    def _sync_local(self, paths: list[str]) -> None:
        """Flush new local parts to disk: one ``syncfs`` of the store's filesystem on Linux (hundreds
        of fsyncs, one per part, cost more than writing them), else an fsync per file and folder."""
        try:
            if _syncfs(self.root):
                return
            for path in paths:
                fd = os.open(path, os.O_RDONLY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
            for folder in {os.path.dirname(p) for p in paths}:
                fd = os.open(folder, os.O_RDONLY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
        except OSError as e:
            raise StorageError(f"storage {redact(self.url)}: cannot sync new parts to disk: {e}") from e

    def _call(self, what: str, func: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """A storage call, with transient failures retried (then :class:`StorageUnavailableError`, exit 3);
        a missing part is an integrity problem (exit 1); anything else a :class:`StorageError`."""
        try:
            return retrying()(func, *args, **kwargs)
        except FileNotFoundError:
            if self.is_local and not os.path.isdir(self.root):
                raise ConfigError(
                    f"{what}: storage folder {self.root} does not exist; if the parts are elsewhere (a "
                    "clone, moved storage) set CORALORD_STORAGE to their folder"
                ) from None
            raise IntegrityError(
                f"{what}: missing from storage {redact(self.url)}; the version cannot be read"
            ) from None
        except (StorageError, IntegrityError):
            raise
        except Exception as e:
            if is_transient(e):
                raise unavailable(f"{what} in storage {redact(self.url)}", e) from e
            if "range is not satisfiable" in str(e) or "InvalidRange" in str(e):
                # Asked for bytes the manifest records but storage no longer has: the object was cut.
                raise IntegrityError(f"{what} is corrupt: shorter in storage than its manifest says") from e
            if isinstance(e, OSError):
                raise StorageError(f"storage {redact(self.url)}: {what}: {describe(e)}") from e
            raise

    def read_bytes(self, sha256: str, *, fs: Any = None) -> bytes | pa.Buffer:
        """A whole part, as stored (the caller checks it); ``fs``: a wrapper of :attr:`fs` to read through.

        A local part is read into Arrow's memory pool (reused from part to part: no fresh pages to fault
        in), which the decoder takes without a copy."""
        path = self.part_path(sha256)
        if self.is_local and fs is None:
            return self._call(f"part {sha256}", _read_local, path)
        return self._call(f"part {sha256}", (fs or self.fs).cat_file, path)

    def read_ranges(self, sha256: str, ranges: Sequence[tuple[int, int]], *, fs: Any = None) -> list[bytes]:
        """Byte ranges (offset, length) of a part, as stored (the caller checks them)."""
        path = self.part_path(sha256)
        if not ranges:
            return []
        if self.is_local and fs is None:
            return self._call(f"part {sha256}", _pread_all, path, ranges)
        starts = [a for a, _ in ranges]
        ends = [a + n for a, n in ranges]
        # on_error="raise": fsspec's default puts exception objects into the result list.
        return self._call(
            f"part {sha256}", (fs or self.fs).cat_ranges, [path] * len(ranges), starts, ends, on_error="raise"
        )

    def check(self, part: PartRef, *, fast: bool = False) -> str | None:
        """None if the part is intact, else a one-line description of what is wrong.

        ``fast`` checks the size and the per-chunk xxh3 digests (every byte a read uses, at memory speed)
        instead of the sha256; parts written before digests existed are checked by size only.
        """
        path = self.part_path(part.sha256)
        try:
            size = self._call(f"part {part.sha256}", self.fs.size, path)
        except IntegrityError:
            return f"part {part.sha256} is missing ({self.part_url(part.sha256)})"
        if size != part.bytes:
            return f"part {part.sha256} has {size} bytes, expected {part.bytes}"
        if fast and part.digests is None:
            return None
        data = self.read_bytes(part.sha256)
        return check_part_bytes(part, data, sha256=not fast)


T = TypeVar("T")


def _read_local(path: str) -> pa.Buffer:
    with pa.OSFile(path) as f:
        return f.read_buffer()


def _pread_all(path: str, ranges: Sequence[tuple[int, int]]) -> list[bytes]:
    with open(path, "rb") as f:
        fd = f.fileno()
        return [os.pread(fd, n, a) for a, n in ranges]


def check_part_bytes(part: PartRef, data: bytes | memoryview, *, sha256: bool = False) -> str | None:
    """The one check of a whole part's bytes: size, then every digest (and the sha256 when asked, or when
    the part has no digests). None when intact, else what is wrong, naming the part."""
    return inspect_part_bytes(part, data, sha256=sha256)[0]


def inspect_part_bytes(
    part: PartRef, data: bytes | memoryview, *, sha256: bool = False
) -> tuple[str | None, pq.FileMetaData | None]:
    """:func:`check_part_bytes`, also returning the footer it parsed to find the column chunks (None when
    the part has no digests or is damaged), so that a reader decodes with it instead of parsing again."""
    view = memoryview(data)
    where = f"part {part.sha256}"
    if len(view) != part.bytes:
        return f"{where} has {len(view)} bytes, expected {part.bytes}", None
    meta = None
    d = part.digests
    if d is not None:
        if digest(view[d.footer_offset :]) != d.footer:
            return f"{where} is corrupt: its footer does not match its digest", None
        try:
            meta = pq.read_metadata(pa.BufferReader(pa.py_buffer(view)))
            ranges = chunk_ranges(meta)
        except (pa.ArrowException, OSError, ValueError) as e:
            return f"{where} is corrupt: {e}", None
        if len(ranges) != len(d.chunks) or bytes(view[:4]) != b"PAR1":
            return f"{where} is corrupt: its layout does not match the manifest", None
        for i, ((a, n), expected) in enumerate(zip(ranges, d.chunks, strict=True)):
            if digest(view[a : a + n]) != expected:
                return f"{where} is corrupt: column chunk {i} does not match its digest", None
    if sha256 or d is None:
        actual = hashlib.sha256(view).hexdigest()
        if actual != part.sha256:
            return f"{where} is corrupt: its content hashes to {actual}", None
    return None, meta
