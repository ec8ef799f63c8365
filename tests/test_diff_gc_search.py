"""coralord diff (against an independent pandas computation), gc and search."""

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
from click.testing import CliRunner

from coralord_dagster.cli import cli
from coralord_dagster.client import open_dataset
from coralord_dagster.croissant import DatasetInfo
from coralord_dagster.diff import diff_versions
from coralord_dagster.garbage import collect
from coralord_dagster.use_case import publish_descriptor, run_pipeline
from coralord_dagster.workspace import Workspace

INFO = DatasetInfo(name="fmnist_edits", description="Fashion-MNIST with known edits.", license="MIT")


def edited(base: pa.Table) -> tuple[pa.Table, dict[str, list[int]]]:
    """Delete 5 rows, relabel 3, insert 4 new ones, spread over the table."""
    df = base.to_pandas()
    df.insert(0, "id", np.arange(len(df)))
    removed = [3, 150, 151, 400, 699]
    changed = [10, 333, 555]
    out = df.drop(index=removed).copy()
    out.loc[changed, "label"] = (out.loc[changed, "label"] + 1) % 10
    new = df.iloc[[20, 21, 22, 23]].copy()
    new["id"] = [1000, 1001, 1002, 1003]
    new["split"] = "test"
    out = pd.concat([out.iloc[:200], new, out.iloc[200:]])
    return pa.Table.from_pandas(out, preserve_index=False), {
        "removed": removed,
        "changed": changed,
        "added": [1000, 1001, 1002, 1003],
    }


def row_key(row: pd.Series) -> tuple:
    return tuple(v["bytes"] if isinstance(v, dict) else v for v in row)


def test_diff_reports_exactly_the_edited_rows(fmnist, ws: Workspace):
    base = run_pipeline(fmnist)
    df = base.to_pandas()
    df.insert(0, "id", np.arange(len(df)))
    a = pa.Table.from_pandas(df, preserve_index=False)
    b, edits = edited(base)
    ws.publisher().publish(a, INFO, part_rows=64)
    result = ws.publisher().publish(b, INFO, part_rows=64)
    assert str(result.version) == "2.0.0"
    va, vb = (
        open_dataset("fmnist_edits@v1.0.0", workspace=ws),
        open_dataset("fmnist_edits@v2.0.0", workspace=ws),
    )

    # Independent computation with pandas: rows as multisets, and by key.
    ra, rb = (
        Counter(row_key(r) for _, r in a.to_pandas().iterrows()),
        Counter(row_key(r) for _, r in b.to_pandas().iterrows()),
    )
    by_rows = diff_versions(va, vb)
    assert (by_rows.added, by_rows.removed, by_rows.changed) == (
        sum((rb - ra).values()),
        sum((ra - rb).values()),
        0,
    )
    assert (by_rows.added, by_rows.removed) == (7, 8)
    assert by_rows.parts_shared > 0, "parts both versions share are not even read"

    da, db = a.to_pandas().set_index("id"), b.to_pandas().set_index("id")
    common = da.index.intersection(db.index)
    differing = [i for i in common if row_key(da.loc[i]) != row_key(db.loc[i])]
    by_key = diff_versions(va, vb, key=["id"])
    assert by_key.keys_added == sorted(set(db.index) - set(da.index)) == edits["added"]
    assert by_key.keys_removed == sorted(set(da.index) - set(db.index)) == edits["removed"]
    assert by_key.keys_changed == sorted(differing) == edits["changed"]

    runner = CliRunner()
    out = runner.invoke(
        cli,
        [
            "--registry",
            str(ws.registry.path),
            "diff",
            "fmnist_edits@v1.0.0",
            "fmnist_edits@v2.0.0",
            "--key",
            "id",
            "--json",
        ],
    )
    assert out.exit_code == 1, out.output
    doc = json.loads(out.output)
    assert doc["rows"] == {"a": 700, "b": 699, "added": 4, "removed": 5, "changed": 3}
    assert doc["keys"]["changed"] == edits["changed"]
    text = runner.invoke(
        cli, ["--registry", str(ws.registry.path), "diff", "fmnist_edits@v1.0.0", "v2.0.0", "--key", "id"]
    )
    assert text.exit_code == 1 and "+4 -5 ~3 rows" in text.output and "changed: 10, 333, 555" in text.output
    same = runner.invoke(
        cli, ["--registry", str(ws.registry.path), "diff", "fmnist_edits@v2.0.0", "fmnist_edits@v2.0.0"]
    )
    assert same.exit_code == 0 and "+0 -0 ~0 rows" in same.output


def test_diff_reports_schema_changes(ws: Workspace):
    info = DatasetInfo(name="cols", description="Columns.", license="CC0-1.0")
    ws.publisher().publish(pa.table({"id": [1, 2], "x": [1.0, 2.0], "y": ["a", "b"]}), info)
    ws.publisher().publish(pa.table({"id": [1, 2], "x": [1, 2], "z": [True, False]}), info)
    d = diff_versions(
        open_dataset("cols@v1.0.0", workspace=ws), open_dataset("cols@v2.0.0", workspace=ws), ["id"]
    )
    assert d.schema.to_json() == {"added": ["z"], "removed": ["y"], "retyped": ["x"]}
    assert (d.added, d.removed, d.changed) == (0, 0, 0), "rows compare on the columns both versions share"


def test_gc_deletes_exactly_the_unreferenced_parts(fmnist, ws: Workspace, tmp_path: Path):
    publish_descriptor(fmnist, ws)
    ws.publisher().publish(
        pa.table({"n": np.arange(1000)}), DatasetInfo(name="nums", description="N.", license="x")
    )
    ws.publisher().publish(
        pa.table({"n": np.arange(1001)}), DatasetInfo(name="nums", description="N.", license="x")
    )
    orphans, _ = ws.store.write_table(pa.table({"never": ["published", "anywhere"]}))
    runner = CliRunner()
    args = ["--registry", str(ws.registry.path), "gc"]
    young = json.loads(runner.invoke(cli, [*args, "--dry-run", "--json"]).output)
    assert young["unreferenced"] == [] and young["too_young"] == 1, (
        "a fresh part may belong to a running publish"
    )
    dry = json.loads(runner.invoke(cli, [*args, "--dry-run", "--grace", "0", "--json"]).output)
    assert [p["sha256"] for p in dry["unreferenced"]] == [orphans[0].sha256]
    assert Path(ws.store.part_path(orphans[0].sha256)).exists()
    done = runner.invoke(cli, [*args, "--grace", "0"])
    assert done.exit_code == 0 and f"deleted {orphans[0].sha256}" in done.output
    assert not Path(ws.store.part_path(orphans[0].sha256)).exists()
    for name in ws.registry.datasets():  # every tagged version still verifies
        for v in ws.registry.versions(name):
            assert (
                runner.invoke(
                    cli, ["--registry", str(ws.registry.path), "verify", f"{name}@{v.label}"]
                ).exit_code
                == 0
            )
    assert collect(ws, dry_run=True, grace_s=0).unreferenced == []


def test_search_over_names_descriptions_fields_and_tags(fmnist, ws: Workspace):
    publish_descriptor(fmnist, ws)
    ws.publisher().publish(
        pa.table({"temperature": [1.0]}), DatasetInfo(name="weather", description="It's 'hot'.", license="x")
    )
    runner = CliRunner()

    def search(text: str) -> list[dict]:
        out = runner.invoke(cli, ["--registry", str(ws.registry.path), "search", text, "--json"])
        assert out.exit_code == 0, out.output
        return json.loads(out.output)

    assert [h["name"] for h in search("FASHION")] == ["fashion_mnist"]
    assert search("temperat")[0]["matched"] == ["field temperature"]
    assert search("'hot'")[0]["name"] == "weather", "user text is a parameter, quotes and all"
    assert "tag weather-v1.0.0" in search("weather-v1")[0]["matched"]
    assert search("zzz-nothing") == []
