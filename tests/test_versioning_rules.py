"""Croissant 1.1's versioning rules (spec, section "Versioning", quoted in the README), one test each:
a republish gets PATCH, MINOR or MAJOR by what happened to the previous version's records."""

from __future__ import annotations

import pyarrow as pa
import pytest

from coralord_dagster.model import DatasetInfo
from coralord_dagster.workspace import Workspace

N = 2000


def info(**kw: object) -> DatasetInfo:
    base: dict[str, object] = {"name": "rules", "description": "Rows.", "license": "MIT"}
    base.update(kw)
    return DatasetInfo(**base)  # type: ignore[arg-type]


SPLITS = info(split_column="split", split_names=("train", "test"))


def table(n: int = N, *, split: bool = False, start: int = 0) -> pa.Table:
    cols: dict[str, list[object]] = {
        "id": list(range(start, start + n)),
        "x": [i * 0.5 for i in range(start, start + n)],
    }
    if split:
        cols["split"] = ["test" if i % 4 == 0 else "train" for i in range(start, start + n)]
    return pa.table(cols)


def bump(
    ws: Workspace,
    first: pa.Table,
    second: pa.Table,
    meta: DatasetInfo | None = None,
    *,
    meta2: DatasetInfo | None = None,
    part_rows2: int = 128,
) -> str | None:
    """The bump publishing ``second`` after ``first`` gets (None: no new version)."""
    meta = meta or info()
    pub = ws.publisher()
    pub.publish(first, meta, part_rows=128)
    again = pub.publish(second, meta2 or meta, part_rows=part_rows2)
    return again.manifest.bump if again.created else None


# ---------------------------------------------------------------- no version, PATCH
def test_identical_content_is_no_new_version(ws: Workspace):
    assert bump(ws, table(), table()) is None


def test_only_metadata_changed_is_patch(ws: Workspace):
    before, after = info(metadata_digest="m1"), info(description="Better words.", metadata_digest="m2")
    assert bump(ws, table(), table(), before, meta2=after) == "patch"


def test_the_same_rows_cut_anew_are_patch(ws: Workspace):
    assert bump(ws, table(), table(), part_rows2=512) == "patch"


# ---------------------------------------------------------------- MINOR: the old data retrievable as is
def test_rows_appended_are_minor(ws: Workspace):
    assert bump(ws, table(), table(N + 300)) == "minor"


def test_rows_appended_to_each_split_are_minor(ws: Workspace):
    # the new rows interleave with the old ones upstream; each split keeps its old rows first
    assert bump(ws, table(split=True), table(N + 300, split=True), SPLITS) == "minor"


def test_a_new_split_is_minor(ws: Workspace):
    old = table(split=True).filter(pa.compute.equal(table(split=True).column("split"), "train"))
    assert bump(ws, old, table(split=True), SPLITS) == "minor"


def test_a_column_added_is_minor(ws: Workspace):
    old = table()
    new = old.append_column("y", pa.array([i % 7 for i in range(N)]))
    assert bump(ws, old, new) == "minor"


def test_a_column_added_with_rows_appended_is_minor(ws: Workspace):
    new = table(N + 10)
    assert bump(ws, table(), new.append_column("y", pa.array([1] * (N + 10)))) == "minor"


# ---------------------------------------------------------------- MAJOR: the existing data changed
def test_an_edited_row_is_major(ws: Workspace):
    old = table()
    x = old.column("x").to_pylist()
    x[700] = -1.0
    assert bump(ws, old, old.set_column(1, "x", pa.array(x))) == "major"


def test_a_removed_row_is_major(ws: Workspace):
    old = table()
    assert bump(ws, old, pa.concat_tables([old.slice(0, 900), old.slice(901)])) == "major"


def test_a_row_inserted_before_existing_rows_is_major(ws: Workspace):
    old = table()
    assert (
        bump(ws, old, pa.concat_tables([old.slice(0, 900), table(1, start=10**6), old.slice(900)])) == "major"
    )


def test_shuffled_rows_are_major(ws: Workspace):
    old = table()
    assert bump(ws, old, old.take(pa.array(list(range(N - 1, -1, -1))))) == "major"


def test_a_row_moved_to_another_split_is_major(ws: Workspace):
    old = table(split=True)
    splits = old.column("split").to_pylist()
    splits[5] = "test" if splits[5] == "train" else "train"
    assert bump(ws, old, old.set_column(2, "split", pa.array(splits)), SPLITS) == "major"


def test_a_removed_split_is_major(ws: Workspace):
    old = table(split=True)
    new = old.filter(pa.compute.equal(old.column("split"), "train"))
    assert bump(ws, old, new, SPLITS) == "major"


@pytest.mark.parametrize("change", ["removed", "retyped"])
def test_a_column_removed_or_retyped_is_major(ws: Workspace, change: str):
    old = table()
    new = (
        old.drop_columns(["x"])
        if change == "removed"
        else old.set_column(1, "x", old.column("x").cast(pa.float32()))
    )
    assert bump(ws, old, new) == "major"
