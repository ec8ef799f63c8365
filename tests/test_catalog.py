from pathlib import Path

import numpy as np
import pyarrow as pa

from coralord_dagster.catalog import Catalog
from coralord_dagster.croissant import DatasetInfo
from coralord_dagster.use_case import publish_descriptor
from coralord_dagster.workspace import Workspace


def test_every_publish_is_indexed_and_rebuild_recreates_the_catalog(fmnist, ws: Workspace, tmp_path: Path):
    publish_descriptor(fmnist, ws)
    info = DatasetInfo(name="numbers", description="Counting; it's 'quoted'.", license="CC0-1.0")
    ws.publisher().publish(pa.table({"n": np.arange(100)}), info)
    ws.publisher().publish(pa.table({"n": np.arange(150)}), info)
    rows = ws.catalog.query("SELECT name, latest_version FROM datasets ORDER BY name")
    assert rows == [("fashion_mnist", "1.0.0"), ("numbers", "1.1.0")]
    # User text is a parameter, never spliced into SQL.
    assert ws.catalog.query(
        "SELECT name FROM datasets WHERE description = ?", ["Counting; it's 'quoted'."]
    ) == [("numbers",)]
    lineage = ws.catalog.query("SELECT relation, target, target_version FROM lineage WHERE name = 'numbers'")
    assert lineage == [("previousVersion", "numbers", "1.0.0")]
    assert ws.catalog.query("SELECT count(*) FROM fields WHERE name = 'fashion_mnist'") == [(3,)]
    assert ws.catalog.query("SELECT kind FROM sources WHERE name = 'fashion_mnist'") == [("huggingface",)]
    incremental = ws.catalog.dump()

    rebuilt = Catalog(tmp_path / "rebuilt.duckdb")
    assert rebuilt.rebuild(ws.registry) == 3
    assert rebuilt.dump() == incremental

    # Deleting the catalog loses nothing: it is derived from the registry.
    ws.catalog.path.unlink()
    ws.catalog.rebuild(ws.registry)
    assert ws.catalog.dump() == incremental
