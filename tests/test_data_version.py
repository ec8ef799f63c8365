"""A dataset's Dagster data version is its version's content id: the same content, the same data
version, so an unchanged rematerialization does not look like new data downstream."""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from coralord_dagster.orchestration import CoralordIOManager, CoralordResource, build_definitions
from coralord_dagster.workspace import Workspace

from .helpers import asset_of


def data_version(run: dg.ExecuteInProcessResult, name: str) -> str:
    [mat] = run.asset_materializations_for_node(name)
    return mat.tags["dagster/data_version"]


def test_identical_rematerializations_have_the_content_id_as_data_version(
    fmnist, use_case_copy: Path, tmp_path: Path
):
    resource = CoralordResource(registry=str(tmp_path / "reg"))
    defs = build_definitions(use_case_copy.parent, resource=resource)
    res = {"coralord": resource, "coralord_io_manager": CoralordIOManager(coralord=resource)}
    with dg.DagsterInstance.ephemeral() as instance:
        first = dg.materialize([asset_of(defs, "fashion_mnist")], resources=res, instance=instance)
        again = dg.materialize([asset_of(defs, "fashion_mnist")], resources=res, instance=instance)
    ws = Workspace.open(tmp_path / "reg")
    content_id = ws.registry.manifest(ws.registry.latest("fashion_mnist")).content_id
    assert data_version(first, "fashion_mnist") == data_version(again, "fashion_mnist") == content_id
    [mat] = again.asset_materializations_for_node("fashion_mnist")
    assert mat.metadata["coralord/status"].value == "unchanged, still v1.0.0"
    assert mat.metadata["coralord/bump"].value == "none (unchanged)"  # not the first version's "first"
