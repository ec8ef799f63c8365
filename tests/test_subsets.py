import math
import shutil
from pathlib import Path

import pandas as pd
import pytest

from coralord_dagster.client import open_dataset
from coralord_dagster.descriptor import load_descriptor, load_subsets
from coralord_dagster.errors import DescriptorError
from coralord_dagster.sources import override_variable
from coralord_dagster.sql import QueryError
from coralord_dagster.subsets import publish_subset
from coralord_dagster.use_case import publish_descriptor, run_pipeline
from coralord_dagster.workspace import Workspace
from use_cases.huggingface_fmnist.fixture import make_fixture

from .helpers import croissant_records, in_croissant_order


def expected_rows(parent: pd.DataFrame, name: str) -> pd.DataFrame:
    """The subset computed independently with pandas."""
    classes = [
        "t_shirt_top",
        "trouser",
        "pullover",
        "dress",
        "coat",
        "sandal",
        "shirt",
        "sneaker",
        "bag",
        "ankle_boot",
    ]
    if name in ("train", "test"):
        return parent[parent.split == name]
    if name in classes:
        return parent[parent.label == classes.index(name)]
    raise KeyError(name)


def test_every_fmnist_subset_is_published_with_exactly_its_rows(fmnist, ws: Workspace):
    publish_descriptor(fmnist, ws)
    parent = run_pipeline(fmnist).to_pandas()
    subsets = load_subsets(fmnist)
    assert {"train", "test", "pullover", "sneaker", "balanced_10pct"} <= {s.spec.name for s in subsets}
    for sub in subsets:
        result = publish_subset(fmnist, sub, ws)
        assert result.tag == f"fashion_mnist/{sub.spec.name}-v1.0.0"
        folder = ws.registry.path / "datasets" / "fashion_mnist" / "subsets" / sub.spec.name
        records = croissant_records(folder / "croissant.json")
        labels = [r["records/label"] for r in records]
        if sub.spec.name == "balanced_10pct":
            counts = parent.label.value_counts()
            got = pd.Series(labels).value_counts()
            assert all(got[c] == math.ceil(0.1 * counts[c]) for c in counts.index)
        else:
            expected = in_croissant_order(expected_rows(parent, sub.spec.name))
            assert labels == expected.label.tolist()
            assert [r["records/split"].decode() for r in records] == expected.split.tolist()
        doc = result.croissant
        [parent_ref] = [d for d in doc["prov:wasDerivedFrom"] if d.get("coralord:relation") == "subsetOf"]
        assert parent_ref["identifier"] == "fashion_mnist@v1.0.0"
        assert (
            parent_ref["coralord:contentId"]
            == ws.registry.manifest(ws.registry.latest("fashion_mnist")).content_id
        )
        assert parent_ref["coralord:subset"]["name"] == sub.spec.name
    lineage = ws.catalog.query(
        "SELECT target, target_version FROM lineage "
        "WHERE name = 'fashion_mnist/pullover' AND relation = 'subsetOf'"
    )
    assert lineage == [("fashion_mnist", "1.0.0")]
    assert ws.catalog.query("SELECT parent FROM subsets WHERE name = 'fashion_mnist/sneaker'") == [
        ("fashion_mnist",)
    ]


def test_samples_are_deterministic_and_keep_the_parent_order(fmnist, ws: Workspace):
    publish_descriptor(fmnist, ws)
    sub = next(s for s in load_subsets(fmnist) if s.spec.name == "balanced_10pct")
    first = publish_subset(fmnist, sub, ws)
    again = publish_subset(fmnist, sub, ws)
    assert not again.created and again.manifest.content_id == first.manifest.content_id
    rows = open_dataset("fashion_mnist", subset="balanced_10pct", workspace=ws).to_pandas()
    parent = run_pipeline(fmnist).to_pandas()
    positions = [parent.index[(parent.image == img)][0] for img in rows.image]
    assert positions == sorted(positions), "a sample keeps the parent's row order"


def test_parent_changes_flow_into_subsets_with_lineage(fmnist, ws: Workspace, monkeypatch, tmp_path: Path):
    publish_descriptor(fmnist, ws)
    subs = {s.spec.name: s for s in load_subsets(fmnist)}
    for name in ("pullover", "train"):
        publish_subset(fmnist, subs[name], ws)
    # An unchanged parent leaves the subsets alone.
    assert not publish_descriptor(fmnist, ws).created
    assert not publish_subset(fmnist, subs["pullover"], ws).created
    # New rows in the parent: new parent version, new subset versions pointing at it.
    monkeypatch.setenv(override_variable("fashion_mnist"), str(make_fixture(tmp_path / "v2", seed=3)))
    assert str(publish_descriptor(fmnist, ws).version) == "2.0.0"
    for name in ("pullover", "train"):
        result = publish_subset(fmnist, subs[name], ws)
        assert str(result.version) == "2.0.0"
        assert result.manifest.derived_from[0].version == "2.0.0"
        assert result.manifest.previous.version == "1.0.0"


def test_inline_subsets_columns_and_order(fmnist, ws: Workspace, use_case_copy: Path):
    path = use_case_copy / "descriptor.yaml"
    path.write_text(
        path.read_text()
        + "subsets:\n  - name: labels_sorted\n    columns: [label, split]\n"
        + "    order_by: [label]\n    where: split = 'test'\n"
    )
    desc = load_descriptor(use_case_copy)
    publish_descriptor(desc, ws)
    [sub] = [s for s in load_subsets(desc) if s.spec.name == "labels_sorted"]
    result = publish_subset(desc, sub, ws)
    table = open_dataset("fashion_mnist/labels_sorted", workspace=ws).to_arrow()
    assert table.column_names == ["label", "split"] and result.manifest.rows == 100
    labels = table.column("label").to_pylist()
    assert labels == sorted(labels) and set(table.column("split").to_pylist()) == {"test"}


@pytest.mark.parametrize(
    ("text", "pattern"),
    [
        ("where: label = 2\ncolour: red\n", "field 'colour'.*remove it"),
        ("name: Bad-Name\n", "field 'name'.*invalid subset name"),
        ("sample: {fraction: 0.1, n: 5}\n", "field 'sample'.*exactly one of"),
        ("sample: {fraction: 2}\n", "field 'sample.fraction'"),
        ("name: other\n", "differs from the file name"),
        ("where: [unclosed\n", "invalid YAML"),
    ],
)
def test_bad_subset_files_name_file_and_field(fmnist, use_case_copy: Path, text, pattern):
    path = use_case_copy / "subsets" / "extra.yaml"
    path.write_text(text)
    with pytest.raises(DescriptorError, match=pattern) as err:
        load_subsets(load_descriptor(use_case_copy))
    assert str(path) in str(err.value)


def test_a_bad_predicate_fails_before_anything_is_written(fmnist, ws: Workspace, use_case_copy: Path):
    desc = load_descriptor(use_case_copy)
    publish_descriptor(desc, ws)
    (use_case_copy / "subsets" / "broken.yaml").write_text("where: no_such_column > 3\n")
    [sub] = [s for s in load_subsets(desc) if s.spec.name == "broken"]
    tags_before = sorted(t.name for t in ws.registry.repo.tags)
    with pytest.raises(QueryError, match="no_such_column"):
        publish_subset(desc, sub, ws)
    assert sorted(t.name for t in ws.registry.repo.tags) == tags_before
    shutil.rmtree(use_case_copy / "subsets")
    assert load_subsets(load_descriptor(use_case_copy)) == []
