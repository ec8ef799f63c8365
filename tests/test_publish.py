import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from coralord_dagster.client import open_dataset
from coralord_dagster.croissant import DatasetInfo
from coralord_dagster.descriptor import load_descriptor
from coralord_dagster.errors import PipelineError
from coralord_dagster.sources import override_variable
from coralord_dagster.use_case import publish_descriptor, run_pipeline
from coralord_dagster.workspace import Workspace
from use_cases.huggingface_fmnist.fixture import make_fixture

from .helpers import croissant_records, edit_pipeline, field_values, in_croissant_order


def test_first_publish_is_v1_and_croissant_reads_the_rows(fmnist, ws: Workspace, tmp_path: Path):
    result = publish_descriptor(fmnist, ws, run_id="run-1")
    assert result.created and result.tag == "fashion_mnist-v1.0.0" and str(result.version) == "1.0.0"
    produced = run_pipeline(fmnist)
    folder = ws.registry.path / "datasets" / "fashion_mnist"
    assert sorted(p.name for p in folder.iterdir()) == [
        "croissant.json",
        "descriptor.yaml",
        "manifest.json",
        "parts",
    ]
    records = croissant_records(folder / "croissant.json")
    assert len(records) == produced.num_rows == 700
    expected = in_croissant_order(produced)
    assert field_values(records, "label") == expected.label.tolist()
    assert field_values(records, "split") == expected.split.tolist()
    assert records[0]["records/image"].size == (28, 28)

    doc = json.loads((folder / "croissant.json").read_text())
    assert doc["conformsTo"] == "http://mlcommons.org/croissant/1.1"
    assert doc["version"] == "1.0.0" and doc["license"] == "https://opensource.org/licenses/MIT"
    assert doc["prov:wasGeneratedBy"]["coralord:codeVersion"] == fmnist.code_version()
    assert doc["prov:wasGeneratedBy"]["coralord:runId"] == "run-1"
    assert doc["prov:wasDerivedFrom"][0]["url"].endswith("fashion_mnist/resolve/refs%2Fconvert%2Fparquet")
    assert "coralord:environment" not in doc  # no Docker image: the pipeline ran in-process
    stats = doc["coralord:statistics"]
    assert stats["rows"] == 700 and stats["rowsPerSplit"] == {"test": 100, "train": 600}
    classes = croissant_records(folder / "croissant.json", "label_classes")
    assert [c["label_classes/name"] for c in classes][:3] == ["T-shirt/top", "Trouser", "Pullover"]

    # The Croissant read at the tag (exported from Git history) yields the same rows.
    exported = open_dataset("fashion_mnist@v1.0.0", workspace=ws).local_copy(tmp_path / "at-tag")
    assert field_values(croissant_records(exported), "label") == field_values(records, "label")


def test_identical_content_publishes_nothing(fmnist, ws: Workspace):
    first = publish_descriptor(fmnist, ws)
    again = publish_descriptor(fmnist, ws)
    assert not again.created and again.summary == "unchanged, still v1.0.0"
    assert again.stats.bytes_written == 0 and again.manifest.content_id == first.manifest.content_id
    assert [t.name for t in ws.registry.repo.tags] == ["fashion_mnist-v1.0.0"]


def test_changed_source_data_is_a_major_version(fmnist, ws: Workspace, monkeypatch, tmp_path: Path):
    publish_descriptor(fmnist, ws)
    monkeypatch.setenv(override_variable("fashion_mnist"), str(make_fixture(tmp_path / "new", seed=7)))
    result = publish_descriptor(fmnist, ws)
    # every record changed: Croissant 1.1 asks for MAJOR when existing data is edited or removed
    assert str(result.version) == "2.0.0" and result.manifest.bump == "major"
    assert result.manifest.previous.version == "1.0.0"


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("    return pa.concat_tables(tables)", "    return pa.concat_tables(tables).slice(1)", "2.0.0"),
        (
            "    return pa.concat_tables(tables)",
            "    return pa.concat_tables(tables).drop_columns(['split'])",
            "2.0.0",
        ),
        (
            "    return pa.concat_tables(tables)",
            "    t = pa.concat_tables(tables)\n"
            "    return t.set_column(1, 'label', t.column('label').cast(pa.int32()))",
            "2.0.0",
        ),
        (
            "    return pa.concat_tables(tables)",
            "    t = pa.concat_tables(tables)\n"
            "    return t.append_column('weight', pa.array([1.0] * t.num_rows))",
            "1.1.0",
        ),
    ],
    ids=["row-removed", "column-dropped", "type-changed", "column-added"],
)
def test_pipeline_changes_bump_by_semver(fmnist, ws: Workspace, use_case_copy: Path, old, new, expected):
    publish_descriptor(load_descriptor(use_case_copy), ws)
    edit_pipeline(use_case_copy, old, new)
    changed = load_descriptor(use_case_copy)
    if "drop_columns" in new:  # the descriptor must stop declaring splits on a dropped split column
        text = (use_case_copy / "descriptor.yaml").read_text().split("splits:")[0]
        rest = (use_case_copy / "descriptor.yaml").read_text().split("columns:")[1]
        (use_case_copy / "descriptor.yaml").write_text(text + "columns:" + rest)
        changed = load_descriptor(use_case_copy)
    result = publish_descriptor(changed, ws)
    assert str(result.version) == expected
    doc = result.croissant
    assert doc["prov:wasGeneratedBy"]["coralord:codeVersion"] == changed.code_version()
    records = croissant_records(ws.registry.path / "datasets" / "fashion_mnist" / "croissant.json")
    assert len(records) == result.manifest.rows


def test_metadata_only_change_is_a_patch(fmnist, ws: Workspace, use_case_copy: Path):
    publish_descriptor(load_descriptor(use_case_copy), ws)
    path = use_case_copy / "descriptor.yaml"
    path.write_text(path.read_text().replace("keywords: [", "keywords: [zalando, "))
    result = publish_descriptor(load_descriptor(use_case_copy), ws)
    assert str(result.version) == "1.0.1" and result.stats.parts_written == 0


def test_same_rows_cut_differently_is_a_patch(ws: Workspace):
    data = pa.table({"id": np.arange(5000), "x": np.arange(5000) * 2.0})
    info = DatasetInfo(name="numbers", description="Numbers.", license="CC0-1.0")
    first = ws.publisher().publish(data, info, part_rows=4096)
    second = ws.publisher().publish(data, info, part_rows=256)
    assert second.created and str(second.version) == "1.0.1" and second.manifest.bump == "patch"
    assert len(second.manifest.parts) > len(first.manifest.parts)
    records = croissant_records(ws.registry.path / "datasets" / "numbers" / "croissant.json")
    assert field_values(records, "id") == list(range(5000)), "multi-part versions keep their row order"


def test_pandas_round_trip_keeps_the_frame(ws: Workspace):
    import pandas as pd

    df = pd.DataFrame({"a": [3, 1, 2], "b": ["x", "y", None]}, index=pd.Index([10, 20, 30], name="key"))
    result = ws.publisher().publish(df, DatasetInfo(name="frame", description="A frame.", license="CC0-1.0"))
    from coralord_dagster.client import open_dataset

    back = open_dataset("frame", workspace=ws).to_pandas()
    pd.testing.assert_frame_equal(back, df)
    assert result.manifest.produced_as == "pandas"


def test_undeclared_split_values_are_rejected_before_anything_is_written(
    fmnist, ws: Workspace, use_case_copy
):
    edit_pipeline(use_case_copy, "[split] * table.num_rows", "['validation'] * table.num_rows")
    with pytest.raises(PipelineError, match="not declared in 'splits.names'"):
        publish_descriptor(load_descriptor(use_case_copy), ws)
    assert ws.registry.datasets() == [] and not Path(ws.store.url).exists()


def test_publish_pushes_version_and_tag_to_the_remote(fmnist, tmp_path: Path, bare_remote: Path):
    import git

    ws = Workspace.open(tmp_path / "reg", create=True, remote=str(bare_remote))
    publish_descriptor(fmnist, ws)
    remote = git.Repo(bare_remote)
    assert [t.name for t in remote.tags] == ["fashion_mnist-v1.0.0"]
    assert remote.git.show("fashion_mnist-v1.0.0:datasets/fashion_mnist/manifest.json").startswith("{")


def test_validation_copy_keeps_the_shape_with_fewer_parts(ws: Workspace):
    from coralord_dagster.croissant import trim_parts

    data = pa.table({"id": np.arange(5000)})
    result = ws.publisher().publish(
        data, DatasetInfo(name="many", description="Many parts.", license="x"), part_rows=128
    )
    assert len(result.manifest.parts) > 8
    trimmed = trim_parts(result.croissant, 8)
    files = [d for d in trimmed["distribution"] if d["@type"] == "cr:FileObject"]
    assert len(files) == 8 and trimmed["distribution"][-1]["includes"] == [f["contentUrl"] for f in files]
    assert len(result.croissant["distribution"]) == len(result.manifest.parts) + 2, (
        "the published one is whole"
    )
