from pathlib import Path

import dagster as dg
import pandas as pd
import pyarrow as pa
import pytest

from coralord_dagster.errors import IntegrityError
from coralord_dagster.orchestration import CoralordIOManager, CoralordResource, build_definitions
from coralord_dagster.use_case import run_pipeline

from .helpers import asset_of


@pytest.fixture
def resource(tmp_path: Path) -> CoralordResource:
    return CoralordResource(registry=str(tmp_path / "reg"), storage=str(tmp_path / "storage"))


def resources(resource: CoralordResource) -> dict:
    return {"coralord": resource, "coralord_io_manager": CoralordIOManager(coralord=resource)}


def materialization(result: dg.ExecuteInProcessResult, key: str) -> dg.AssetMaterialization:
    [mat] = [m for m in result.asset_materializations_for_node(key)]
    return mat


def test_materialize_publishes_with_metadata_and_is_idempotent(fmnist, use_case_copy, resource):
    defs = build_definitions(use_case_copy.parent, resource=resource)
    assets = [asset_of(defs, "fashion_mnist")]
    checks = defs.asset_checks
    with dg.instance_for_test() as instance:
        result = dg.materialize([*assets, *checks], resources=resources(resource), instance=instance)
        assert result.success
        meta = materialization(result, "fashion_mnist").metadata
        assert meta["coralord/version"].value == "v1.0.0"
        assert meta["coralord/tag"].value == "fashion_mnist-v1.0.0"
        assert meta["dagster/row_count"].value == 700
        assert [c.name for c in meta["dagster/column_schema"].value.columns] == ["image", "label", "split"]
        assert meta["coralord/croissant"].value["version"] == "1.0.0"
        assert len(meta["coralord/content_id"].value) == 64 and len(meta["coralord/commit"].value) == 40
        assert meta["coralord/storage_url"].value == resource.storage
        assert isinstance(meta["coralord/storage_url"], dg.PathMetadataValue)  # a local folder
        assert isinstance(meta["coralord/license"], dg.UrlMetadataValue)
        assert meta["coralord/license"].value == "https://opensource.org/licenses/MIT"
        assert isinstance(meta["coralord/source_url"], dg.UrlMetadataValue)
        assert meta["coralord/size"].value.endswith(" KiB")
        summary = meta["coralord/summary"].value
        assert isinstance(meta["coralord/summary"], dg.MarkdownMetadataValue)
        assert summary.startswith("**fashion_mnist v1.0.0** — published") and "700 rows in" in summary
        [check] = result.get_asset_check_evaluations()
        assert check.passed

        again = dg.materialize(assets, resources=resources(resource), instance=instance)
        meta2 = materialization(again, "fashion_mnist").metadata
        assert meta2["coralord/status"].value == "unchanged, still v1.0.0"
        assert meta2["coralord/new_version"].value is False
    ws = resource.workspace()
    assert [t.name for t in ws.registry.repo.tags] == ["fashion_mnist-v1.0.0"]


def test_code_version_is_descriptor_plus_pipeline(fmnist, use_case_copy, resource):
    def code_version() -> str:
        defs = build_definitions(use_case_copy.parent, resource=resource)
        return asset_of(defs, "fashion_mnist").code_versions_by_key[dg.AssetKey("fashion_mnist")]

    before = code_version()
    (use_case_copy / "pipeline.py").write_text((use_case_copy / "pipeline.py").read_text() + "\n# changed\n")
    assert code_version() != before


def test_downstream_assets_load_latest_or_pinned_versions(
    fmnist, use_case_copy, resource, monkeypatch, tmp_path
):
    from use_cases.huggingface_fmnist.fixture import make_fixture

    defs = build_definitions(use_case_copy.parent, resource=resource)
    dg.materialize([asset_of(defs, "fashion_mnist")], resources=resources(resource))
    v1 = run_pipeline(fmnist)
    monkeypatch.setenv(
        "CORALORD_SOURCE__FASHION_MNIST", str(make_fixture(tmp_path / "v2", {"train": 50, "test": 10}))
    )
    second = dg.materialize([asset_of(defs, "fashion_mnist")], resources=resources(resource))
    meta = materialization(second, "fashion_mnist").metadata
    assert meta["coralord/version"].value == "v2.0.0"  # rows removed: MAJOR
    diff = meta["coralord/diff_json"].value  # the diff against the previous version, row level
    assert diff["rows"]["a"] == 700 and diff["rows"]["b"] == 60 and diff["rows"]["removed"] >= 640
    assert meta["coralord/diff"].value.startswith("+")

    seen: dict[str, object] = {}

    @dg.asset(deps=[], ins={"fashion_mnist": dg.AssetIn()}, io_manager_key="mem")
    def latest_frame(fashion_mnist: pd.DataFrame) -> None:
        seen["latest"] = fashion_mnist

    @dg.asset(
        ins={"fashion_mnist": dg.AssetIn(metadata={"coralord/version": "v1.0.0"})}, io_manager_key="mem"
    )
    def pinned_table(fashion_mnist: pa.Table) -> None:
        seen["pinned"] = fashion_mnist

    result = dg.materialize(
        [asset_of(defs, "fashion_mnist"), latest_frame, pinned_table],
        selection=["latest_frame", "pinned_table"],
        resources={**resources(resource), "mem": dg.InMemoryIOManager()},
    )
    assert result.success
    assert isinstance(seen["latest"], pd.DataFrame) and len(seen["latest"]) == 60
    assert isinstance(seen["pinned"], pa.Table) and seen["pinned"].num_rows == 700
    assert seen["pinned"].equals(v1)


def test_corrupt_parts_fail_the_load_instead_of_returning_bad_data(fmnist, use_case_copy, resource):
    defs = build_definitions(use_case_copy.parent, resource=resource)
    dg.materialize([asset_of(defs, "fashion_mnist")], resources=resources(resource))
    ws = resource.workspace()
    part = ws.registry.manifest(ws.registry.latest("fashion_mnist")).parts[0]
    path = Path(ws.store.part_path(part.sha256))
    data = bytearray(path.read_bytes())
    data[len(data) // 3] ^= 0x10
    path.write_bytes(bytes(data))

    @dg.asset(ins={"fashion_mnist": dg.AssetIn()})
    def consumer(fashion_mnist: pd.DataFrame) -> None:
        raise AssertionError("must not run on corrupt data")

    with pytest.raises(IntegrityError, match=f"part {part.sha256}.* is corrupt"):
        dg.materialize(
            [asset_of(defs, "fashion_mnist"), consumer],
            selection=["consumer"],
            resources=resources(resource),
        )


def test_plain_assets_can_use_the_io_manager(resource):
    @dg.asset(description="Squares of small numbers.", metadata={"coralord/license": "CC0-1.0"})
    def squares() -> pd.DataFrame:
        return pd.DataFrame({"n": range(10), "square": [i * i for i in range(10)]})

    result = dg.materialize([squares], resources={"io_manager": CoralordIOManager(coralord=resource)})
    assert materialization(result, "squares").metadata["coralord/tag"].value == "squares-v1.0.0"
    doc = resource.workspace().registry.read_file("squares-v1.0.0", "datasets/squares/croissant.json")
    assert b"Squares of small numbers." in doc and b"CC0-1.0" in doc
