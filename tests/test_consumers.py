"""Data arrives typed in the consumers' own tools: Hugging Face datasets reads Image and ClassLabel from
what `coralord get` writes, to_huggingface() gives the splits, iter_batches() streams the rows."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest
from click.testing import CliRunner

from coralord_dagster.cli import cli
from coralord_dagster.client import open_dataset
from coralord_dagster.use_case import publish_descriptor, run_pipeline
from coralord_dagster.workspace import Workspace
from use_cases.huggingface_fmnist.pipeline import CLASS_NAMES

datasets = pytest.importorskip("datasets")


def test_datasets_reads_image_and_class_label_from_what_get_writes(
    fmnist, ws: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    publish_descriptor(fmnist, ws)
    out = tmp_path / "fmnist.parquet"
    result = CliRunner().invoke(
        cli, ["--registry", str(ws.registry.path), "get", "fashion_mnist", "-o", str(out)]
    )
    assert result.exit_code == 0, result.output
    loaded = datasets.load_dataset(
        "parquet", data_files=str(out), split="train", cache_dir=str(tmp_path / "hf")
    )
    assert isinstance(loaded.features["image"], datasets.Image)
    assert isinstance(loaded.features["label"], datasets.ClassLabel)
    assert loaded.features["label"].names == CLASS_NAMES
    assert loaded.num_rows == run_pipeline(fmnist).num_rows


def test_to_huggingface_gives_the_splits_with_their_features(fmnist, ws: Workspace):
    publish_descriptor(fmnist, ws)
    data = run_pipeline(fmnist)
    hf = open_dataset("fashion_mnist", workspace=ws).to_huggingface()
    assert set(hf) == {"train", "test"}
    for split, ds in hf.items():
        assert ds.num_rows == sum(1 for s in data.column("split").to_pylist() if s == split)
        assert isinstance(ds.features["image"], datasets.Image)
        assert ds.features["label"].names == CLASS_NAMES
    assert hf["train"][0]["image"].size == (28, 28)  # decoded to a PIL image


def test_iter_batches_streams_the_same_rows_in_order(ws: Workspace):
    from coralord_dagster.croissant import DatasetInfo

    table = pa.table({"id": list(range(3000)), "label": ["abc"[i % 3] for i in range(3000)]})
    ws.publisher().publish(table, DatasetInfo(name="stream", description="d", license="x"), part_rows=200)
    ds = open_dataset("stream", workspace=ws)
    batches = list(ds.iter_batches(parts_per_read=2))
    assert len(batches) > 1
    assert pa.Table.from_batches(batches).equals(ds.to_arrow())
    assert ds.last_read.parts_read == len(ds.manifest.parts)
    narrowed = open_dataset("stream", columns=["id"], where="id >= 2900", workspace=ws)
    got = pa.Table.from_batches(list(narrowed.iter_batches()))
    assert got.column("id").to_pylist() == list(range(2900, 3000))
    assert narrowed.last_read.parts_skipped > 0
