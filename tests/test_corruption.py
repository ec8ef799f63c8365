"""No read path ever returns wrong data: damaged stored bytes are detected, damaged cache entries healed.

One realistic version (20k rows: int64, float64, a dictionary-encoded low-cardinality string, a nullable
int and ~200-byte binary values, in ~8 parts) is published; one of its parts is then damaged in many
ways, one damage at a time (restored after each trial), and every read path a user has is run on it:

- the Python API (``to_arrow`` with and without ``columns``/``where``, ``to_pandas``, ``verify=True``,
  ``relation``, ``local_copy``) on local storage: the wide sweep, every path against every damage;
- the CLI as a user runs it (``get`` in its variants, ``verify``, ``verify --fast``): a smaller sample;
- the same on S3 storage, where reads go through the local cache: a first read (cold cache) and a
  second read (warm: whatever the first read left in the cache);
- and every file of a warm S3 cache, damaged in turn (a flipped byte, then one of truncation, garbage,
  deletion): the next read must succeed with the right data, and a third one must need no storage.

Cost: the local API sweep (unmarked) takes ~25 s; with the ``slow`` parts the file takes ~2 minutes.

A trial's outcome is one of ``ok`` (exactly the expected data), ``detected`` (an ``IntegrityError``
naming the part; CLI: exit 1 with one ``coralord: error:`` line, or verify's FAIL line), ``unnamed``
(detected without naming the part), ``wrong`` (anything else returned, or verify saying OK) and
``crash`` (another exception, a traceback, another exit code). Counts per path and damage kind go into
every assertion message.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import count
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from coralord_dagster.client import open_dataset
from coralord_dagster.errors import IntegrityError
from coralord_dagster.workspace import Workspace

from .conftest import BIN

try:
    from coralord_dagster.croissant import DatasetInfo
except ImportError:  # pragma: no cover - where the model moved
    from coralord_dagster.model import DatasetInfo  # type: ignore[no-redef]

ROWS = 20_000
SEED = 0  # with part_rows=2048 the content-defined cut gives 9 parts (1983, 1928, 1288, ... rows)
NAME = "corrupt"
LO, HI = 100, 5000
WHERE = f"i BETWEEN {LO} AND {HI}"
COLUMNS = ["i", "x", "blob"]  # leaves the chunks of cat and n unread
BOTH_COLUMNS = ["x", "cat"]  # with WHERE: i is read to filter, n and blob are not
VICTIM_ROW = 3000  # the damaged part is the one holding this row: every path reads it
STORAGE = "s3://datasets/coralord"

FLIPS_PER_COLUMN = 9  # x 5 columns, + 6 in the footer + every byte of the head and of the last 8 bytes
FLIPS_IN_FOOTER = 6
# S3 reads cost ~5x more: each flip is read by one path (in turn), each cut-off/deletion by every path,
# so that the category still sees 63 offsets.
S3_FLIPS_PER_COLUMN = 9
S3_FLIPS_IN_FOOTER = 6

ALL = frozenset({"i", "x", "cat", "n", "blob"})


# -- the data ----------------------------------------------------------------------------------------


def make_table(rows: int = ROWS, seed: int = SEED) -> pa.Table:
    rng = np.random.default_rng(seed)
    nullable = rng.integers(-1000, 1000, rows)
    return pa.table(
        {
            "i": pa.array(np.arange(rows), pa.int64()),  # clustered: WHERE prunes parts
            "x": pa.array(rng.normal(size=rows)),
            "cat": pa.array(rng.choice(["red", "green", "blue", "cyan", "magenta"], rows)),
            "n": pa.array([None if k % 7 == 0 else int(v) for k, v in enumerate(nullable)], pa.int64()),
            "blob": pa.array([rng.bytes(200) for _ in range(rows)], pa.binary()),
        }
    )


def publish(ws: Workspace, table: pa.Table) -> None:
    info = DatasetInfo(name=NAME, description="d", license="CC0-1.0")
    ws.publisher().publish(table, info, part_rows=2048)


def victim_part(ws: Workspace) -> Any:
    """The published part holding ``VICTIM_ROW`` (its manifest entry)."""
    parts = open_dataset(NAME, workspace=ws).manifest.parts
    assert 5 <= len(parts) <= 14, [p.rows for p in parts]
    start = 0
    for part in parts:
        if start <= VICTIM_ROW < start + part.rows:
            assert start <= HI and start + part.rows > LO, "WHERE must read the damaged part"
            return part
        start += part.rows
    raise AssertionError("no part holds the victim row")


# -- damage ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Damage:
    """One damage: flip the byte at ``offset`` (XOR ``mask``), keep only ``keep`` bytes, or delete."""

    kind: str  # flip | truncate | empty | delete
    region: str  # head | col:<name> | footer | footer-length | magic | other | the kind itself
    offset: int = -1
    mask: int = 0
    keep: int = -1

    @property
    def label(self) -> str:
        if self.kind == "flip":
            return f"flip {self.region}@{self.offset}^{self.mask:#04x}"
        if self.kind == "truncate":
            return f"truncate to {self.keep} bytes"
        return self.kind

    @property
    def category(self) -> str:
        return f"flip {self.region}" if self.kind == "flip" else self.region

    def apply(self, data: bytes) -> bytes | None:
        """The damaged bytes (None: the file is deleted)."""
        if self.kind == "delete":
            return None
        if self.kind in ("truncate", "empty"):
            return data[: self.keep]
        out = bytearray(data)
        out[self.offset] ^= self.mask
        return bytes(out)


def regions(data: bytes) -> dict[str, list[tuple[int, int]]]:
    """Byte ranges of a Parquet file: magic, each column's chunks, footer, footer length, tail magic."""
    size = len(data)
    footer_len = int.from_bytes(data[-8:-4], "little")
    out: dict[str, list[tuple[int, int]]] = {"head": [(0, 4)]}
    meta = pq.ParquetFile(pa.BufferReader(data)).metadata
    for rg in range(meta.num_row_groups):
        group = meta.row_group(rg)
        for c in range(group.num_columns):
            chunk = group.column(c)
            start = chunk.data_page_offset
            if chunk.has_dictionary_page and chunk.dictionary_page_offset:
                start = min(start, chunk.dictionary_page_offset)
            out.setdefault(f"col:{chunk.path_in_schema}", []).append(
                (start, start + chunk.total_compressed_size)
            )
    out["footer"] = [(size - 8 - footer_len, size - 8)]
    out["footer-length"] = [(size - 8, size - 4)]
    out["magic"] = [(size - 4, size)]
    covered = np.zeros(size, dtype=bool)
    for ranges in out.values():
        for a, b in ranges:
            covered[a:b] = True
    gaps = np.flatnonzero(~covered)
    if len(gaps):
        out["other"] = [(int(g), int(g) + 1) for g in gaps]
    return out


def damages(data: bytes, *, per_column: int, in_footer: int, seed: int = 0) -> list[Damage]:
    """Flips at seeded offsets spread over the file (every byte of the head and the last 8 bytes, a
    sample inside each column's data and the footer), then truncations, an empty file, deletion."""
    rng = np.random.default_rng(seed)
    out: list[Damage] = []
    for region, ranges in regions(data).items():
        offsets = np.concatenate([np.arange(a, b) for a, b in ranges])
        if region.startswith("col:"):
            n = per_column
        elif region == "footer":
            n = in_footer
        elif region == "other":
            n = 3
        else:  # head, footer-length, magic: every byte
            n = len(offsets)
        picked = np.sort(rng.choice(offsets, size=min(n, len(offsets)), replace=False))
        out += [Damage("flip", region, int(o), int(rng.integers(1, 256))) for o in picked]
    size = len(data)
    out += [Damage("truncate", "truncate", keep=size - k) for k in (1, 8, 100)]
    out += [Damage("truncate", "truncate", keep=size // 2), Damage("empty", "empty", keep=0)]
    out.append(Damage("delete", "delete"))
    return out


class LocalPart:
    """The damaged part on local storage: write a damage, restore the original."""

    def __init__(self, url: str) -> None:
        self.path = Path(url.removeprefix("file://"))
        self.original = self.path.read_bytes()

    def damage(self, d: Damage) -> None:
        data = d.apply(self.original)
        if self.path.exists():
            self.path.chmod(0o644)
        if data is None:
            self.path.unlink()
        else:
            self.path.write_bytes(data)

    def restore(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.exists():
            self.path.chmod(0o644)
        self.path.write_bytes(self.original)


class S3Part:
    """The damaged part as an S3 object, overwritten with s3fs."""

    def __init__(self, url: str) -> None:
        import s3fs

        self.fs = s3fs.S3FileSystem()
        self.url = url
        self.original = self.fs.cat_file(url)

    def damage(self, d: Damage) -> None:
        data = d.apply(self.original)
        if data is None:
            self.fs.rm_file(self.url)
        else:
            self.fs.pipe_file(self.url, data)
        self.fs.invalidate_cache()

    def restore(self) -> None:
        self.fs.pipe_file(self.url, self.original)
        self.fs.invalidate_cache()


@contextmanager
def damaged(part: LocalPart | S3Part, d: Damage) -> Iterator[None]:
    part.damage(d)
    try:
        yield
    finally:
        part.restore()


# -- outcomes ----------------------------------------------------------------------------------------

OUTCOMES = ("ok", "detected", "unnamed", "wrong", "crash")


class Tally:
    """Outcome counts per read path and damage category, with one example of each failure."""

    def __init__(self, title: str, outcomes: tuple[str, ...] = OUTCOMES) -> None:
        self.title = title
        self.outcomes = outcomes
        self.by_path: dict[str, Counter[str]] = {}
        self.by_kind: dict[str, Counter[str]] = {}
        self.examples: dict[tuple[str, str], str] = {}
        self.trials: list[tuple[str, Damage, str]] = []

    def record(self, path: str, d: Damage, outcome: str, detail: str = "") -> None:
        self.by_path.setdefault(path, Counter())[outcome] += 1
        self.by_kind.setdefault(d.category, Counter())[outcome] += 1
        self.trials.append((path, d, outcome))
        if outcome not in ("ok", "detected"):
            self.examples.setdefault((path, outcome), f"{d.label}: {detail}"[:300])

    def total(self, outcome: str) -> int:
        return sum(c[outcome] for c in self.by_path.values())

    def summary(self) -> str:
        def table(rows: dict[str, Counter[str]], head: str) -> list[str]:
            width = max([len(head), *map(len, rows)])
            lines = [f"  {head:<{width}} " + " ".join(f"{o:>8}" for o in self.outcomes)]
            for name, c in rows.items():
                lines.append(f"  {name:<{width}} " + " ".join(f"{c[o]:>8}" for o in self.outcomes))
            return lines

        totals = ", ".join(f"{o}={self.total(o)}" for o in self.outcomes)
        lines = [f"{self.title}: {len(self.trials)} trials; {totals}"]
        lines += table(self.by_path, "read path")
        lines += table(self.by_kind, "damage")
        if self.examples:
            lines.append("  first failure of each kind:")
            lines += [f"    {p} [{o}] {ex}" for (p, o), ex in self.examples.items()]
        return "\n".join(lines)

    def assert_sound(self, must_detect: Callable[[str, Damage], bool]) -> None:
        """No wrong data and no crash; every damage in ``must_detect`` is detected (naming the part)."""
        summary = self.summary()
        print("\n" + summary)
        wrong, crashes = self.total("wrong"), self.total("crash")
        assert wrong == 0 and crashes == 0, summary
        assert self.total("unnamed") == 0, "an IntegrityError must name the part\n" + summary
        required = [(p, d) for p, d, _ in self.trials if must_detect(p, d)]
        missed = [
            f"{p}: {d.label} -> {o}" for p, d, o in self.trials if must_detect(p, d) and o != "detected"
        ]
        assert required and not missed, (
            f"{len(missed)} of {len(required)} missed:\n" + "\n".join(missed[:20]) + "\n" + summary
        )


def first_line(e: BaseException) -> str:
    return (str(e).splitlines() or [""])[0]


def same(got: Any, expected: Any) -> bool:
    if isinstance(expected, pd.DataFrame):
        return isinstance(got, pd.DataFrame) and got.equals(expected)
    if isinstance(expected, pa.Table):
        return isinstance(got, pa.Table) and got.equals(expected)
    return bool(got == expected)


def difference(got: Any, expected: Any) -> str:
    if isinstance(got, pa.Table) and isinstance(expected, pa.Table):
        if got.schema != expected.schema or got.num_rows != expected.num_rows:
            return f"{got.num_rows} rows {got.schema.names} instead of {expected.num_rows}"
        bad = [c for c in expected.column_names if not got.column(c).equals(expected.column(c))]
        return f"different values in column(s) {bad}"
    return f"{type(got).__name__} differs from the expected {type(expected).__name__}"


def outcome(read: Callable[[], Any], expected: Any, sha: str) -> tuple[str, str]:
    """Run one read and classify what it did."""
    try:
        got = read()
    except IntegrityError as e:
        return ("detected" if sha[:12] in str(e) else "unnamed"), first_line(e)
    except Exception as e:  # noqa: BLE001 - any other exception is what the test counts as a crash
        return "crash", f"{type(e).__name__}: {first_line(e)}"
    if same(got, expected):
        return "ok", ""
    return "wrong", difference(got, expected)


# -- read paths --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReadPath:
    """One way to read the version: ``fetch(open_(ws))`` is what the user gets."""

    name: str
    fetch: Callable[[Any], Any]  # DatasetVersion -> result
    expected: Any
    uses: frozenset[str]  # the columns whose chunks the read must decode (damage there is detected)
    columns: list[str] | None = None
    where: str | None = None

    def open_(self, ws: Workspace) -> Any:
        return open_dataset(NAME, columns=self.columns, where=self.where, workspace=ws)

    def read(self, ws: Workspace) -> Any:
        return self.fetch(self.open_(ws))


def local_copy_table(ds: Any, scratch: Path) -> pa.Table | str:
    """``local_copy`` into a new folder, then its parts read with pyarrow, in the Croissant's order."""
    dest = scratch / f"copy-{next(_copies)}"
    try:
        croissant = ds.local_copy(dest)
        doc = json.loads(Path(croissant).read_text())
        files = [dest / e["contentUrl"] for e in doc["distribution"] if e.get("@type") == "cr:FileObject"]
        try:
            return pa.concat_tables([pq.read_table(f) for f in files])
        except (OSError, pa.ArrowException) as e:
            return f"local_copy delivered unreadable parts: {first_line(e)}"
    finally:
        shutil.rmtree(dest, ignore_errors=True)


_copies = count()


def where_rows(table: pa.Table) -> pa.Table:
    return table.filter(pc.and_(pc.greater_equal(table["i"], LO), pc.less_equal(table["i"], HI)))


def api_paths(table: pa.Table, scratch: Path, *, wrappers: bool = True) -> list[ReadPath]:
    """The Python API's read paths (``wrappers``: also to_pandas and relation, thin layers on to_arrow)."""
    rows = where_rows(table)

    def arrow(ds: Any) -> pa.Table:
        return ds.to_arrow()

    paths = [
        ReadPath("to_arrow()", arrow, table, ALL),
        ReadPath("to_arrow(columns)", arrow, table.select(COLUMNS), frozenset(COLUMNS), COLUMNS),
        ReadPath("to_arrow(where)", arrow, rows, ALL, where=WHERE),
        ReadPath(
            "to_arrow(columns, where)",
            arrow,
            rows.select(BOTH_COLUMNS),
            frozenset({*BOTH_COLUMNS, "i"}),
            BOTH_COLUMNS,
            WHERE,
        ),
        ReadPath("to_arrow(verify=True)", lambda ds: ds.to_arrow(verify=True), table, ALL),
    ]
    if wrappers:
        paths += [
            ReadPath("to_pandas()", lambda ds: ds.to_pandas(), table.to_pandas(), ALL),
            ReadPath(
                "relation()",
                lambda ds: ds.relation().to_arrow_table(),
                duckdb.connect().from_arrow(table).to_arrow_table(),
                ALL,
            ),
        ]
    paths.append(ReadPath("local_copy()", lambda ds: local_copy_table(ds, scratch), table, ALL))
    return paths


def damaged_data(p: str, d: Damage, uses: dict[str, frozenset[str]]) -> bool:
    """Damage every correct reader of path ``p`` must see: a flip in the data of a column it decodes, a
    cut-off, emptied or deleted part."""
    if d.kind != "flip":
        return True
    return d.region.startswith("col:") and d.region[4:] in uses[p.removesuffix(" cold").removesuffix(" warm")]


def check_pristine(ws: Workspace, paths: list[ReadPath]) -> None:
    for p in paths:
        got = p.read(ws)
        assert same(got, p.expected), f"{p.name} on intact data: {difference(got, p.expected)}"


# -- the local sweep (fast) --------------------------------------------------------------------------


def test_every_damage_to_a_local_part_is_detected_or_harmless(ws: Workspace, tmp_path: Path):
    table = make_table()
    publish(ws, table)
    victim = victim_part(ws)
    part = LocalPart(victim.url)
    paths = api_paths(table, tmp_path)
    check_pristine(ws, paths)
    tally = Tally("local storage, Python API")
    for d in damages(part.original, per_column=FLIPS_PER_COLUMN, in_footer=FLIPS_IN_FOOTER):
        with damaged(part, d):
            for p in paths:
                tally.record(p.name, d, *outcome(lambda p=p: p.read(ws), p.expected, victim.sha256))
    assert sum(1 for _, d, _ in tally.trials if d.kind == "flip") >= 60 * len(paths)
    uses = {p.name: p.uses for p in paths}
    tally.assert_sound(lambda p, d: damaged_data(p, d, uses))


# -- S3 storage, through the cache (cold, then warm) -------------------------------------------------


def s3_workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cache: Path) -> Workspace:
    """The registry opened as a consumer whose cache is ``cache`` (``$CORALORD_CACHE``)."""
    monkeypatch.setenv("CORALORD_CACHE", str(cache))
    return Workspace.open(tmp_path / "reg", storage=STORAGE)


def published_on_s3(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[pa.Table, Any]:
    table = make_table()
    monkeypatch.setenv("CORALORD_CACHE", str(tmp_path / "publisher-cache"))
    ws = Workspace.open(tmp_path / "reg", create=True, storage=STORAGE)
    publish(ws, table)
    victim = victim_part(ws)
    assert victim.url.startswith(STORAGE + "/parts/"), victim.url
    return table, victim


@pytest.mark.slow
def test_every_damage_to_an_s3_part_is_detected_or_harmless(s3, tmp_path: Path, monkeypatch):
    table, victim = published_on_s3(tmp_path, monkeypatch)
    part = S3Part(victim.url)
    paths = api_paths(table, tmp_path, wrappers=False)
    check_pristine(s3_workspace(tmp_path, monkeypatch, tmp_path / "pristine-cache"), paths)
    tally = Tally("S3 storage, Python API (cold then warm cache)")
    caches = count()
    all_damages = damages(part.original, per_column=S3_FLIPS_PER_COLUMN, in_footer=S3_FLIPS_IN_FOOTER, seed=1)
    flips = [d for d in all_damages if d.kind == "flip"]
    size = len(part.original)
    cuts = [d for d in all_damages if d.kind == "delete" or d.keep in (size - 1, size // 2)]
    assert len(flips) >= 60
    trials = [(d, [paths[k % len(paths)]]) for k, d in enumerate(flips)] + [(d, paths) for d in cuts]
    for d, readers in trials:
        with damaged(part, d):
            for p in readers:
                ws = s3_workspace(tmp_path, monkeypatch, tmp_path / f"cache-{next(caches)}")
                # local_copy reads storage, not the cache: once is enough
                for temperature in ("cold",) if p.name == "local_copy()" else ("cold", "warm"):
                    result = outcome(lambda p=p, ws=ws: p.read(ws), p.expected, victim.sha256)
                    tally.record(f"{p.name} {temperature}", d, *result)
    uses = {p.name: p.uses for p in paths}
    # A warm read may answer from what a successful cold read cached; a cold read must see the damage.
    tally.assert_sound(lambda p, d: p.endswith("cold") and damaged_data(p, d, uses))


# -- damaged cache entries are fetched again ---------------------------------------------------------

CACHE_OUTCOMES = ("ok", "refused", "unhealed", "wrong", "crash")


def cache_damages(data: bytes, rng: np.random.Generator) -> dict[str, bytes | None]:
    """Two ways to damage one cache file, neither leaving it unchanged (None: delete it): a flipped
    byte (the silent one), then a seeded choice of truncation, garbage of the same size or deletion."""
    if not data:
        return {"garbage": rng.bytes(64), "delete": None}
    flipped = bytearray(data)
    flipped[int(rng.integers(len(data)))] ^= int(rng.integers(1, 256))
    garbage = rng.bytes(len(data))
    others: dict[str, bytes | None] = {
        "truncate": data[: len(data) // 2],
        "garbage": garbage if garbage != data else bytes(b ^ 0xFF for b in data),
        "delete": None,
    }
    other = str(rng.choice(sorted(others)))
    return {"flip": bytes(flipped), other: others[other]}


def cache_outcome(p: ReadPath, ws: Workspace, sha: str, *, from_cache_only: bool) -> tuple[str, str, bool]:
    """A read over a damaged (or just healed) cache: it must succeed with the right data; with
    ``from_cache_only`` it must also read nothing from storage. Also returns whether it read from
    storage (True where the reader does not say)."""
    ds = p.open_(ws)
    result, detail = outcome(lambda: p.fetch(ds), p.expected, sha)
    if result in ("detected", "unnamed"):
        result, detail = "refused", f"a damaged cache entry failed the read: {detail}"
    read = getattr(getattr(ds, "last_read", None), "bytes_from_storage", None)
    if result == "ok" and from_cache_only and read:
        return "unhealed", f"{read} bytes read from storage again", True
    return result, detail, read is None or read > 0


@pytest.mark.slow
def test_a_damaged_cache_entry_is_fetched_again(s3, tmp_path: Path, monkeypatch):
    table, victim = published_on_s3(tmp_path, monkeypatch)
    cache = tmp_path / "consumer-cache"
    ws = s3_workspace(tmp_path, monkeypatch, cache)
    by_name = {p.name: p for p in api_paths(table, tmp_path, wrappers=False)}
    # Partial reads first, so that the cache holds their results as well as whole parts (the columns
    # path is left out: it adds one result per part of the same kind as those of the where paths).
    names = ["to_arrow(where)", "to_arrow(columns, where)", "to_arrow()", "to_arrow(verify=True)"]
    paths = [by_name[n] for n in names]
    check_pristine(ws, paths)  # cold: fills the cache
    tally = Tally("S3 storage, damaged cache entries (next read, then third read)", CACHE_OUTCOMES)
    intact = Damage("none", "intact cache")
    for p in paths:  # warm: all from the cache
        tally.record(f"{p.name} warm", intact, *cache_outcome(p, ws, "", from_cache_only=True)[:2])
    files = sorted(f for f in cache.rglob("*") if f.is_file())
    assert files, "a read of S3 data leaves something in $CORALORD_CACHE"
    rng = np.random.default_rng(2)
    for f in files:
        original = f.read_bytes()
        for kind, data in cache_damages(original, rng).items():
            d = Damage("cache", f"cache {kind}")
            for p in paths:
                if data is None:
                    f.unlink(missing_ok=True)
                else:
                    f.write_bytes(data)
                result, detail, fetched = cache_outcome(p, ws, victim.sha256, from_cache_only=False)
                tally.record(f"{p.name} next", d, result, f"{f.relative_to(cache)}: {detail}")
                if fetched:  # it went back to storage: the entry it fetched must now serve alone
                    result, detail, _ = cache_outcome(p, ws, victim.sha256, from_cache_only=True)
                    tally.record(f"{p.name} third", d, result, f"{f.relative_to(cache)}: {detail}")
                if not f.exists() or f.read_bytes() != original:
                    f.parent.mkdir(parents=True, exist_ok=True)
                    f.write_bytes(original)  # trials stay independent whatever the read left there
    summary = tally.summary()
    print("\n" + summary)
    assert sum(n for k, c in tally.by_path.items() if k.endswith("third") for n in c.values()), summary
    wrong, crashes = tally.total("wrong"), tally.total("crash")
    refused, unhealed = tally.total("refused"), tally.total("unhealed")
    assert wrong == 0 and crashes == 0 and refused == 0 and unhealed == 0, summary


# -- the CLI -----------------------------------------------------------------------------------------

CLI_LOCAL_SAMPLE = [
    "flip col:i",
    "flip col:x",
    "flip col:cat",
    "flip col:blob",
    "flip footer",
    "truncate to",  # the middle one of the truncations: 100 bytes cut off
    "delete",
]
CLI_S3_SAMPLE = ["flip col:blob", "delete"]


@dataclass(frozen=True)
class Command:
    name: str
    args: list[str]
    output: str | None  # "parquet" | "csv" | None (verify)
    uses: frozenset[str]


def cli_commands() -> list[Command]:
    return [
        Command("get", ["get", NAME], "parquet", ALL),
        Command(
            "get --columns", ["get", NAME, "--columns", ",".join(COLUMNS)], "parquet", frozenset(COLUMNS)
        ),
        Command("get --where", ["get", NAME, "--where", WHERE], "parquet", ALL),
        Command("get --format csv", ["get", NAME, "--format", "csv"], "csv", ALL),
        Command("verify", ["verify", NAME], None, ALL),
        Command("verify --fast", ["verify", NAME, "--fast"], None, ALL),
    ]


def run_cli(cmd: Command, registry: Path, cache: Path, out: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CORALORD_REGISTRY": str(registry), "CORALORD_CACHE": str(cache)}
    args = [str(BIN / "coralord"), *cmd.args]
    if cmd.output:
        args += ["-o", str(out)]
    return subprocess.run(
        args, env=env, cwd=out.parent, capture_output=True, text=True, timeout=120, check=False
    )


def cli_outcome(cmd: Command, proc: subprocess.CompletedProcess[str], out: Path, expected: Any, sha: str):
    """Classify one CLI run: exit 0 must mean the right data (verify: intact data, so never here)."""
    err = proc.stderr.strip()
    if "Traceback" in proc.stderr or proc.returncode not in (0, 1):
        last = (err.splitlines() or [""])[-1]
        return "crash", f"exit {proc.returncode}{' with a traceback' if 'Traceback' in err else ''}: {last}"
    if proc.returncode == 1:
        if cmd.output is None:  # verify: FAIL lines on stdout
            return ("detected" if sha[:12] in proc.stdout + proc.stderr else "unnamed"), proc.stdout.strip()[
                :200
            ]
        lines = err.splitlines()
        if len(lines) != 1 or not lines[0].startswith("coralord: error: "):
            return "crash", f"exit 1 without one 'coralord: error:' line: {err[-300:]}"
        if out.exists():
            return "wrong", "a failed get left its output file behind"
        return ("detected" if sha[:12] in lines[0] else "unnamed"), lines[0]
    if cmd.output is None:
        return "wrong", f"verify found nothing wrong: {proc.stdout.strip()[:200]}"
    if not out.exists():
        return "wrong", "exit 0 but no output file"
    got: Any = out.read_bytes() if cmd.output == "csv" else pq.read_table(out)
    return ("ok", "") if same(got, expected) else ("wrong", difference(got, expected))


def cli_expectations(
    table: pa.Table, commands: list[Command], registry: Path, scratch: Path
) -> dict[str, Any]:
    """What each command gives on intact data, checked against the published table."""
    rows = where_rows(table)

    def pristine(job: tuple[int, Command]) -> tuple[Command, Path, subprocess.CompletedProcess[str]]:
        n, cmd = job
        out = scratch / f"pristine-{n}.{cmd.output or 'txt'}"
        return cmd, out, run_cli(cmd, registry, scratch / f"pristine-cache-{n}", out)

    expected: dict[str, Any] = {}
    with ThreadPoolExecutor(max_workers=CLI_WORKERS) as pool:
        for cmd, out, proc in pool.map(pristine, enumerate(commands)):
            assert proc.returncode == 0 and "Traceback" not in proc.stderr, (cmd.name, proc.stderr)
            if cmd.output == "parquet":
                want = table.select(COLUMNS) if "--columns" in cmd.args else table
                want = rows if "--where" in cmd.args else want
                got = pq.read_table(out)
                assert got.equals(want), (cmd.name, difference(got, want))
                expected[cmd.name] = want
            elif cmd.output == "csv":
                frame = pd.read_csv(out)
                assert frame["i"].tolist() == table["i"].to_pylist(), cmd.name
                assert frame["cat"].tolist() == table["cat"].to_pylist(), cmd.name
                assert np.array_equal(frame["x"].to_numpy(), table["x"].to_numpy()), cmd.name
                expected[cmd.name] = out.read_bytes()  # the rest as the CLI renders it on intact data
    return expected


CLI_WORKERS = 3  # commands of one damage run side by side: most of a run is Python starting up


def cli_sweep(
    tally: Tally,
    part: LocalPart | S3Part,
    sample: list[Damage],
    commands: list[Command],
    expected: dict[str, Any],
    registry: Path,
    scratch: Path,
    sha: str,
    temperatures: tuple[str, ...] = ("",),
) -> None:
    """Every command against every damage in ``sample``. ``get`` runs once per temperature on one
    cache (first run: cold cache; second: warm), ``verify`` (which checks storage itself) once."""
    runs = count()

    def trial(cmd: Command) -> list[tuple[str, str, str]]:
        n = next(runs)
        cache, results = scratch / f"cache-{n}", []
        for temperature in temperatures if cmd.output else ("",):
            out = scratch / f"out-{n}-{temperature}.{cmd.output or 'txt'}"
            proc = run_cli(cmd, registry, cache, out)
            name = f"{cmd.name} {temperature}".strip()
            results.append((name, *cli_outcome(cmd, proc, out, expected.get(cmd.name), sha)))
            out.unlink(missing_ok=True)
        shutil.rmtree(cache, ignore_errors=True)
        return results

    with ThreadPoolExecutor(max_workers=CLI_WORKERS) as pool:
        for d in sample:
            with damaged(part, d):
                for results in pool.map(trial, commands):
                    for name, result, detail in results:
                        tally.record(name, d, result, detail)


def sample_of(all_damages: list[Damage], wanted: list[str]) -> list[Damage]:
    out = []
    for want in wanted:
        matches = [d for d in all_damages if d.category == want or d.label.startswith(want)]
        assert matches, want
        out.append(matches[0] if want != "truncate to" else matches[len(matches) // 2])
    return out


def damaged_data_cli(p: str, d: Damage, uses: dict[str, frozenset[str]]) -> bool:
    """Damage a command must report: verify vouches for every byte; get as the API paths."""
    name = p.removesuffix(" cold").removesuffix(" warm")
    if name.startswith("verify") or d.kind != "flip":
        return True
    return d.region.startswith("col:") and d.region[4:] in uses[name]


@pytest.mark.slow
def test_the_cli_never_returns_wrong_data(ws: Workspace, tmp_path: Path):
    table = make_table()
    publish(ws, table)
    victim = victim_part(ws)
    part = LocalPart(victim.url)
    commands = cli_commands()
    expected = cli_expectations(table, commands, ws.registry.path, tmp_path)
    sample = sample_of(damages(part.original, per_column=3, in_footer=3, seed=3), CLI_LOCAL_SAMPLE)
    tally = Tally("local storage, CLI")
    cli_sweep(tally, part, sample, commands, expected, ws.registry.path, tmp_path, victim.sha256)
    uses = {c.name: c.uses for c in commands}
    tally.assert_sound(lambda p, d: damaged_data_cli(p, d, uses))


@pytest.mark.slow
def test_the_cli_on_s3_never_returns_wrong_data(s3, tmp_path: Path, monkeypatch):
    table, victim = published_on_s3(tmp_path, monkeypatch)
    part = S3Part(victim.url)
    commands = [c for c in cli_commands() if c.name in ("get", "get --columns", "verify", "verify --fast")]
    registry = tmp_path / "reg"
    expected = cli_expectations(table, commands, registry, tmp_path)
    sample = sample_of(damages(part.original, per_column=3, in_footer=3, seed=4), CLI_S3_SAMPLE)
    tally = Tally("S3 storage, CLI (cold then warm cache)")
    cli_sweep(tally, part, sample, commands, expected, registry, tmp_path, victim.sha256, ("cold", "warm"))
    uses = {c.name: c.uses for c in commands}
    tally.assert_sound(lambda p, d: not p.endswith("warm") and damaged_data_cli(p, d, uses))
