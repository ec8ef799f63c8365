from pathlib import Path

import pytest
from click.testing import CliRunner

from coralord_dagster.cli import cli
from coralord_dagster.descriptor import load_descriptor
from coralord_dagster.errors import DescriptorError

from .conftest import FMNIST


def test_shipped_descriptor_is_valid():
    desc = load_descriptor(FMNIST)
    assert desc.name == "fashion_mnist"
    assert desc.spec.splits.names == ["train", "test"]
    assert desc.spec.columns["label"].categories[2] == "Pullover"
    assert callable(desc.load_pipeline())
    assert len(desc.code_version()) == 16


def test_code_version_follows_descriptor_and_pipeline(use_case_copy: Path):
    before = load_descriptor(use_case_copy).code_version()
    pipeline = use_case_copy / "pipeline.py"
    pipeline.write_text(pipeline.read_text() + "\n# a change\n")
    after_code = load_descriptor(use_case_copy).code_version()
    desc_file = use_case_copy / "descriptor.yaml"
    desc_file.write_text(desc_file.read_text().replace("Fashion-MNIST:", "Fashion MNIST:"))
    after_desc = load_descriptor(use_case_copy).code_version()
    assert len({before, after_code, after_desc}) == 3


BASE = Path(FMNIST / "descriptor.yaml").read_text()

MALFORMED = {
    "unknown field": (BASE + "colour: blue\n", "field 'colour'.*remove it"),
    "path escape": (
        BASE.replace("name: fashion_mnist", "name: ../x"),
        "field 'name'.*invalid dataset name '../x'",
    ),
    "bad name": (BASE.replace("name: fashion_mnist", "name: Fashion-MNIST"), "field 'name'.*'Fashion-MNIST'"),
    "missing source": (BASE.split("source:")[0] + "pipeline: pipeline.py:build\n", "field 'source'.*add it"),
    "bad yaml": (BASE + "keywords: [unclosed\n", "invalid YAML"),
    "bad source kind": (BASE.replace("kind: huggingface", "kind: ftp"), "field 'source'"),
    "bad pipeline": (BASE.replace("pipeline: pipeline.py:build", "pipeline: nonsense"), "field 'pipeline'"),
    "cron out of range": (
        BASE.replace(
            "  revision: refs/convert/parquet\n",
            "  revision: refs/convert/parquet\n  check:\n    cron: '61 * * * *'\n",
        ),
        "field 'source.huggingface.check.cron'.*not a cron schedule",
    ),
    "split name not a folder": (
        BASE.replace("names: [train, test]", "names: [train, ../test]"),
        "field 'splits.names'",
    ),
    "bad check": (BASE + "checks:\n  range:\n    label: {min: 9, max: 0}\n", "field 'checks.range.label'"),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_descriptors_fail_with_file_and_field(case, use_case_copy: Path, tmp_path: Path):
    text, pattern = MALFORMED[case]
    path = use_case_copy / "descriptor.yaml"
    path.write_text(text)
    with pytest.raises(DescriptorError, match=pattern) as err:
        load_descriptor(path)
    assert str(path) in str(err.value)
    registry = tmp_path / "registry"
    for command in (["validate", str(path)], ["--registry", str(registry), "publish", str(path)]):
        result = CliRunner().invoke(cli, command)
        assert result.exit_code == 2, result.output
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and str(path) in lines[0] and "coralord: error:" in lines[0]
    # Nothing was written anywhere: no registry, no storage.
    assert not registry.exists() and not (tmp_path / "storage").exists()


def test_missing_descriptor_file(tmp_path: Path):
    with pytest.raises(DescriptorError, match="cannot read descriptor"):
        load_descriptor(tmp_path / "nope.yaml")


def test_pipeline_that_cannot_be_imported(use_case_copy: Path):
    (use_case_copy / "pipeline.py").write_text("def build(:\n")
    from coralord_dagster.errors import PipelineError

    with pytest.raises(PipelineError, match="field 'pipeline': cannot import"):
        load_descriptor(use_case_copy).load_pipeline()
