"""Reading a version, or only part of it — and never returning bytes that were not checked.

Every byte a read decodes is checked first against a digest in the manifest: the part's footer, then each
column chunk it needs (xxh3-64, see :func:`coralord_dagster.store.part_digests`). The checked footer says
which row groups can match the predicate (their statistics) and where the needed column chunks are; only
those ranges are fetched, checked and decoded with pyarrow; the predicate then runs in a sandboxed DuckDB
connection over the decoded columns. So a projected, pushed-down read transfers no more than before, and a
flipped byte anywhere it reads raises :class:`IntegrityError` naming the part instead of returning wrong
values. Parts of versions published before digests existed are checked whole, by their sha256.

For remote storage a local, content-addressed cache keeps whole parts (full reads) and byte ranges
(partial reads), keyed by the part's sha256 and the range. Entries are checked by the same digests each
time they are used; a damaged entry is deleted and fetched again.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import uuid
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from tqdm import tqdm

from coralord_dagster.duck import sandboxed_query
from coralord_dagster.errors import IntegrityError
from coralord_dagster.metered import MeteredFileSystem
from coralord_dagster.model import PartRef
from coralord_dagster.pruning import Condition, conditions, may_match, prune
from coralord_dagster.sql import quote_ident, referenced_columns, validate_query
from coralord_dagster.store import (
    PartStore,
    chunk_ranges,
    digest,
    inspect_part_bytes,
    row_group_statistics,
)


@dataclass
class ReadStats:
    bytes_from_storage: int = 0
    parts_read: int = 0
    parts_from_cache: int = 0
    parts_skipped: int = 0

    def add(self, other: ReadStats) -> None:
        """Count ``other``'s read in too (a read made of several)."""
        for f in dataclasses.fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))


class PartCache:
    """Content-addressed local cache of whole parts and of byte ranges of parts, checked on every use."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)

    def part_path(self, sha256: str) -> Path:
        return self.root / "parts" / sha256[:2] / f"{sha256}.parquet"

    def range_path(self, sha256: str, offset: int, length: int) -> Path:
        return self.root / "ranges" / sha256[:2] / sha256 / f"{offset}-{length}"

    def whole(self, part: PartRef, *, sha256: bool = False) -> _Checked | None:
        """The cached part if it is intact (its sha256 checked too when asked); a damaged entry is
        deleted."""
        path = self.part_path(part.sha256)
        data = _read_file(path)
        if data is None:
            return None
        problem, meta = inspect_part_bytes(part, data, sha256=sha256)
        if problem is not None:
            path.unlink(missing_ok=True)
            return None
        return data, meta

    def range(self, part: PartRef, offset: int, length: int, expected: str) -> bytes | None:
        """A cached byte range if it matches ``expected``, read from the whole part when cached."""
        whole = self.part_path(part.sha256)
        for path, start in ((whole, offset), (self.range_path(part.sha256, offset, length), 0)):
            try:
                with open(path, "rb") as f:
                    data = os.pread(f.fileno(), length, start)
            except OSError:
                continue
            if len(data) == length and digest(data) == expected:
                return data
            path.unlink(missing_ok=True)  # damaged: fetch it again
        return None

    def add_part(self, part: PartRef, data: bytes) -> None:
        _atomic_write(self.part_path(part.sha256), data)

    def add_range(self, part: PartRef, offset: int, length: int, data: bytes) -> None:
        _atomic_write(self.range_path(part.sha256, offset, length), data)


#: A part's bytes, checked, and its parsed footer (None when the part has no digests).
_Checked = tuple["bytes | pa.Buffer", "pq.FileMetaData | None"]


def _read_file(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except OSError:
        return None


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{uuid.uuid4().hex}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _progress(total: int, desc: str) -> tqdm:
    """A progress bar on a terminal; silent otherwise (logs, CI, Dagster)."""
    quiet = not sys.stderr.isatty() or total < 2
    return tqdm(total=total, desc=desc, unit="part", disable=quiet, leave=False)


class _Fetcher:
    """Checked bytes of parts: from local storage, or from the cache and then remote storage."""

    def __init__(self, store: PartStore, cache: PartCache | None, stats: ReadStats) -> None:
        self.store = store
        self.cache = cache if not store.is_local else None
        self.meter = MeteredFileSystem(store.fs) if not store.is_local else None
        self.stats = stats
        self.from_storage: set[str] = set()  # parts of which some bytes came from storage, not the cache

    def _corrupt(self, part: PartRef, problem: str) -> IntegrityError:
        return IntegrityError(
            f"{problem} ({self.store.part_url(part.sha256)}); no data was returned. Run 'coralord verify' "
            "and republish the dataset"
        )

    def whole(self, part: PartRef, *, sha256: bool = False) -> _Checked:
        """The whole part, every digest checked (and its sha256 when asked, or when it has no digests),
        with the footer the check parsed (None for a part without digests)."""
        hit = self.cache.whole(part, sha256=sha256) if self.cache is not None else None
        if hit is not None:
            return hit
        self.from_storage.add(part.sha256)
        data = self.store.read_bytes(part.sha256, fs=self.meter)
        problem, meta = inspect_part_bytes(part, data, sha256=sha256)
        if problem:
            raise self._corrupt(part, problem)
        if self.cache is not None:
            self.cache.add_part(part, data)
        return data, meta

    def ranges(self, part: PartRef, wanted: Sequence[tuple[int, int, str]]) -> list[bytes]:
        """Byte ranges (offset, length, expected digest), each checked."""
        out: list[bytes | None] = [None] * len(wanted)
        if self.cache is not None:
            for i, (a, n, expected) in enumerate(wanted):
                out[i] = self.cache.range(part, a, n, expected)
        missing = [i for i, d in enumerate(out) if d is None]
        if missing:
            self.from_storage.add(part.sha256)
            fetched = self.store.read_ranges(part.sha256, [wanted[i][:2] for i in missing], fs=self.meter)
            for i, data in zip(missing, fetched, strict=True):
                a, n, expected = wanted[i]
                if len(data) != n or digest(data) != expected:
                    raise self._corrupt(
                        part, f"part {part.sha256} is corrupt: bytes {a}..{a + n} do not match"
                    )
                if self.cache is not None:
                    self.cache.add_range(part, a, n, data)
                out[i] = data
        return [d for d in out if d is not None]


def _leaf_count(t: pa.DataType) -> int:
    """How many Parquet leaf columns an Arrow column is stored as."""
    if isinstance(t, pa.ExtensionType):
        return _leaf_count(t.storage_type)
    if pa.types.is_struct(t):
        return sum(_leaf_count(t.field(i).type) for i in range(t.num_fields))
    if pa.types.is_map(t):
        return _leaf_count(t.key_type) + _leaf_count(t.item_type)
    if pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t):
        return _leaf_count(t.value_type)
    return 1


def _read_part(
    fetch: _Fetcher,
    part: PartRef,
    schema: pa.Schema,
    columns: list[str],
    conds: list[Condition],
    verify: bool,
) -> pa.Table | None:
    """The needed columns of the row groups of ``part`` that may match; None when none can."""
    d = part.digests
    if d is None or verify or (not conds and set(columns) >= set(schema.names)):
        # the whole part is needed anyway: one read, and the footer its check parsed decodes it
        data, meta = fetch.whole(part, sha256=verify or d is None)
        if meta is not None and meta.num_rows != part.rows:
            raise fetch._corrupt(part, f"part {part.sha256} does not match its manifest entry")
        return _decode(fetch, part, pa.py_buffer(data), meta, None, columns)
    (tail,) = fetch.ranges(part, [(d.footer_offset, part.bytes - d.footer_offset, d.footer)])
    try:
        meta = pq.read_metadata(pa.BufferReader(tail))
    except (pa.ArrowException, OSError) as e:  # the digest matched: the manifest itself is wrong
        raise fetch._corrupt(part, f"part {part.sha256} has an unreadable footer: {e}") from None
    ranges = chunk_ranges(meta)
    if len(ranges) != len(d.chunks) or meta.num_rows != part.rows:
        raise fetch._corrupt(part, f"part {part.sha256} does not match its manifest entry")
    groups = [
        rg
        for rg in range(meta.num_row_groups)
        if not conds or may_match(row_group_statistics(meta, rg), conds)
    ]
    if not groups:
        return None
    leaves: list[int] = []
    first = 0
    for f in schema:
        n = _leaf_count(f.type)
        if f.name in columns:
            leaves += range(first, first + n)
        first += n
    per_group = len(ranges) // max(1, meta.num_row_groups)
    wanted = [(rg * per_group + leaf) for rg in groups for leaf in leaves]
    if len(wanted) == len(ranges):  # everything: one request for the whole part
        buffer = pa.py_buffer(fetch.whole(part)[0])
    else:
        picked = fetch.ranges(part, [(*ranges[i], d.chunks[i]) for i in wanted])
        whole = bytearray(part.bytes)
        for i, data in zip(wanted, picked, strict=True):
            a, n = ranges[i]
            whole[a : a + n] = data
        whole[d.footer_offset :] = tail
        buffer = pa.py_buffer(whole)
    return _decode(fetch, part, buffer, meta, groups, columns)


def _decode(
    fetch: _Fetcher,
    part: PartRef,
    buffer: pa.Buffer,
    meta: pq.FileMetaData | None,
    groups: list[int] | None,
    columns: list[str],
) -> pa.Table:
    """The ``columns`` of row ``groups`` (all when None) of a checked part's bytes."""
    try:
        file = pq.ParquetFile(buffer, metadata=meta, pre_buffer=False)  # in memory already
        if groups is None:
            return file.read(columns=columns, use_threads=False)
        return file.read_row_groups(groups, columns=columns, use_threads=False)
    except (pa.ArrowException, OSError) as e:
        raise fetch._corrupt(part, f"part {part.sha256} cannot be decoded: {e}") from None


def read_parts(
    store: PartStore,
    parts: Sequence[PartRef],
    schema: pa.Schema,
    *,
    columns: Sequence[str] | None = None,
    where: str | None = None,
    cache: PartCache | None = None,
    verify: bool = False,
    what: str = "the dataset",
) -> tuple[pa.Table, ReadStats]:
    """The rows of ``parts`` matching ``where``, with ``columns``, in the version's row order.

    ``verify`` also checks the sha256 of every part read (reading each whole).
    """
    validate_query(schema, columns, where, what)
    stats = ReadStats()
    conds = conditions(where) if where else []
    kept = prune(parts, conds)  # parts whose min/max rule the predicate out are never opened
    stats.parts_skipped = len(parts) - len(kept)
    selected = list(columns) if columns else list(schema.names)
    needed = selected
    if where:
        extra = set(referenced_columns(where, schema))
        needed = [n for n in schema.names if n in extra or n in selected]
    fetch = _Fetcher(store, cache, stats)
    # local parts: one decoder per core; remote: more requests in flight than cores, to hide latency
    cores = os.cpu_count() or 1
    workers = max(1, min(8, len(kept), cores if store.is_local else 2 * cores))
    with _progress(len(kept), "reading") as bar, ThreadPoolExecutor(max_workers=workers) as pool:

        def one(part: PartRef) -> pa.Table | None:
            table = _read_part(fetch, part, schema, needed, conds, verify)
            bar.update(1)
            return table

        tables = [t for t in pool.map(one, kept) if t is not None]
    stats.parts_read = len(kept)
    if fetch.cache is not None:
        stats.parts_from_cache = sum(p.sha256 not in fetch.from_storage for p in kept)
    stats.bytes_from_storage = fetch.meter.bytes_read if fetch.meter else 0
    target = pa.schema([schema.field(c) for c in selected])
    if not tables:
        return target.empty_table().replace_schema_metadata(schema.metadata), stats
    out = pa.concat_tables([t.replace_schema_metadata(None) for t in tables])
    if where:
        select = ", ".join(quote_ident(c) for c in selected)
        out = sandboxed_query(out, f"SELECT {select} FROM t WHERE (\n{where}\n)")
    else:
        out = out.select(selected)
    if not out.schema.equals(target, check_metadata=False):
        out = out.cast(target)
    return out.replace_schema_metadata(schema.metadata), stats


def whole_part(store: PartStore, part: PartRef, cache: PartCache | None = None) -> bytes:
    """One part's bytes, fully checked (its sha256 included): for copies of parts."""
    return _Fetcher(store, cache, ReadStats()).whole(part, sha256=True)[0]
