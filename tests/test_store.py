import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from coralord_dagster.chunking import Chunking, boundaries, row_hashes
from coralord_dagster.errors import IntegrityError
from coralord_dagster.reader import read_parts
from coralord_dagster.store import PartStore


def read_back(store: PartStore, parts, schema: pa.Schema, **kwargs) -> pa.Table:
    return read_parts(store, parts, schema, **kwargs)[0]


def table(n: int, start: int = 0) -> pa.Table:
    ids = np.arange(start, start + n)
    return pa.table({"id": ids, "value": ids * 0.5, "text": [f"row {i}" for i in ids]})


def test_parts_are_content_addressed_and_stored_once(tmp_path: Path):
    store = PartStore(str(tmp_path / "storage"))
    parts, stats = store.write_table(table(1000), Chunking(64))
    assert len(parts) > 3 and stats.parts_written == len(parts) and stats.bytes_written > 0
    for p in parts:
        path = Path(store.part_path(p.sha256))
        assert path == tmp_path / "storage" / "parts" / p.sha256[:2] / f"{p.sha256}.parquet"
        assert hashlib.sha256(path.read_bytes()).hexdigest() == p.sha256
        assert pq.read_metadata(path).num_rows == p.rows
    again, stats2 = store.write_table(table(1000), Chunking(64))
    assert again == parts and stats2.parts_written == 0 and stats2.bytes_written == 0
    assert not list((tmp_path / "storage").rglob("*.tmp")), "no temporary file may stay visible"
    assert read_back(store, parts, table(1).schema).equals(table(1000))


def test_content_defined_boundaries_survive_an_insert_at_the_front(tmp_path: Path):
    store = PartStore(str(tmp_path))
    before, _ = store.write_table(table(4000), Chunking(64))
    edited = pa.concat_tables([table(3, start=-3), table(4000)])
    after, stats = store.write_table(edited, Chunking(64))
    reused = {p.sha256 for p in before} & {p.sha256 for p in after}
    assert len(reused) >= len(before) - 2, "only the part around the insert may change"
    assert stats.parts_written <= 2


def test_boundaries_respect_min_and_max():
    hashes = row_hashes(table(10_000))
    spans = boundaries(hashes, Chunking(256))
    assert sum(n for _, n in spans) == 10_000
    assert all(n <= 1024 for _, n in spans) and all(n >= 64 for _, n in spans[:-1])
    assert [o for o, _ in spans] == sorted(o for o, _ in spans)


def test_empty_table_keeps_its_schema(tmp_path: Path):
    store = PartStore(str(tmp_path))
    empty = table(0)
    parts, _ = store.write_table(empty)
    assert len(parts) == 1 and parts[0].rows == 0
    assert read_back(store, parts, empty.schema).schema.names == empty.schema.names


def test_a_flipped_byte_is_detected(tmp_path: Path):
    store = PartStore(str(tmp_path))
    parts, _ = store.write_table(table(100))
    path = Path(store.part_path(parts[0].sha256))
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    assert "is corrupt" in store.check(parts[0], fast=True), "the per-chunk digests see a flipped byte"
    assert "is corrupt" in store.check(parts[0])
    with pytest.raises(IntegrityError, match="is corrupt"):
        read_back(store, parts, table(1).schema)
    path.unlink()
    assert "is missing" in store.check(parts[0], fast=True)


def test_a_one_percent_edit_reuses_most_parts(tmp_path: Path):
    """Inserts, deletes and updates (1% of rows) at several places: at least 90% of parts are reused."""
    store = PartStore(str(tmp_path))
    base = table(100_000)
    before, _ = store.write_table(base, Chunking(1024))
    df = base.to_pandas()
    df = df.drop(index=range(20_000, 20_200))  # 200 rows deleted
    df.loc[50_000:50_299, "value"] = -1.0  # 300 rows updated
    df.loc[80_000:80_199, "text"] = "changed"  # 200 rows updated
    inserted = table(300, start=10**7).to_pandas()
    df = pd.concat([df.iloc[:60_000], inserted, df.iloc[60_000:]])  # 300 rows inserted
    edited = pa.Table.from_pandas(df, preserve_index=False).cast(base.schema)  # pandas 3 retypes strings
    after, stats = store.write_table(edited, Chunking(1024))
    old = {p.sha256 for p in before}
    reused = sum(p.sha256 in old for p in after)
    assert reused / len(after) >= 0.9, (reused, len(after))
    # Four edit sites rewrite the few parts around them (a part is at most 4x the average).
    assert stats.bytes_written <= 0.15 * sum(p.bytes for p in after)


def test_a_part_cut_short_before_it_reached_the_disk_is_written_again(tmp_path: Path):
    """Parts are synced in one batch before a version commits; a crash before that can leave a
    truncated file under a part's name, which the next write must replace rather than reuse."""
    store = PartStore(str(tmp_path / "storage"))
    parts, _ = store.write_table(table(1000), Chunking(64))
    victim = Path(store.part_path(parts[3].sha256))
    victim.write_bytes(victim.read_bytes()[:100])
    again, stats = store.write_table(table(1000), Chunking(64))
    assert again == parts and stats.parts_written == 1 and stats.parts_reused == len(parts) - 1
    assert hashlib.sha256(victim.read_bytes()).hexdigest() == parts[3].sha256
    assert store.check(parts[3]) is None
