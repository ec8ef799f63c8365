"""The content address is ours: pinned part boundaries and content ids, and registries from before."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import numpy as np
import pyarrow as pa

from coralord_dagster import croissant as cr
from coralord_dagster.chunking import LEGACY_ROW_HASH, Chunking, hash_rows, rows_digest
from coralord_dagster.model import LEGACY_FORMAT, DatasetInfo, Manifest, encode_schema, schema_fields
from coralord_dagster.naming import SemVer, tag_name
from coralord_dagster.publish import dictionary_columns
from coralord_dagster.workspace import Workspace

INFO = DatasetInfo(name="golden", description="A fixed table.", license="CC0-1.0")


def golden_table() -> pa.Table:
    ids = np.arange(3000)
    return pa.table(
        {
            "id": ids,
            "x": ids * 0.25,
            "label": pa.array([f"class {i % 7}" for i in ids]),
            "maybe": pa.array([None if i % 11 == 0 else int(i) for i in ids], pa.int32()),
        }
    )


# Fixed by the pinned row hash (coralord-row-1) and content id formula: a pyarrow or DuckDB upgrade must
# not move them. Changing either on purpose needs a new rule name (rowhash.ROW_HASH) and a migration.
GOLDEN_ROWS_PER_PART = [148, 125, 473, 307, 788, 246, 809, 104]
GOLDEN_CONTENT_ID = "b0d14769ff71bc9478fea6f324f736a1b4272c248c058596e02d89ecc2f85a4f"


def test_golden_boundaries_and_content_id(ws: Workspace):
    result = ws.publisher().publish(golden_table(), INFO, part_rows=256)
    m = result.manifest
    assert [p.rows for p in m.parts] == GOLDEN_ROWS_PER_PART
    assert m.content_id == GOLDEN_CONTENT_ID
    # The content id names the data, not the bytes: the same rows cut by another part size keep it.
    again = ws.publisher().publish(golden_table(), INFO, part_rows=1024)
    assert again.created and again.manifest.bump == "patch" and again.manifest.content_id == m.content_id


def _legacy_version(ws: Workspace, table: pa.Table, row_hash: str) -> Manifest:
    """Publish ``table`` as a registry written before the pinned row hash did: format 1, DuckDB's hash."""
    chunking = Chunking(256, LEGACY_ROW_HASH)
    hashes = hash_rows(table, LEGACY_ROW_HASH)
    parts, _ = ws.store.write_table(table, chunking, hashes, dictionary_columns(table))
    manifest = Manifest(
        format=LEGACY_FORMAT,
        name=INFO.name,
        version="1.0.0",
        parts=[p.model_copy(update={"digests": None}) for p in parts],  # no digests back then
        fields=schema_fields(table.schema),
        arrow_schema=encode_schema(table.schema),
        rows=table.num_rows,
        rows_digest=rows_digest(hashes),
        chunking={**chunking.to_json(), "row_hash": row_hash},
        metadata_digest=INFO.metadata_digest,
        created=datetime.now(UTC).replace(microsecond=0).isoformat(),
        bump="first",
    )
    doc = cr.build_croissant(manifest, INFO, table, date_published=manifest.created[:10])
    links = {cr.part_link_name(i, p.sha256): ws.store.part_path(p.sha256) for i, p in enumerate(parts)}
    files = {"manifest.json": manifest.dumps().encode(), "croissant.json": cr.dumps(doc).encode()}
    with ws.registry.locked():
        ws.registry.commit_version(
            INFO.name, SemVer(1, 0, 0), files, links, message=tag_name(INFO.name, SemVer(1, 0, 0))
        )
    return manifest


def test_an_old_registry_republished_after_the_hash_change_gets_no_new_version(ws: Workspace):
    table = golden_table()
    legacy = _legacy_version(ws, table, LEGACY_ROW_HASH)
    assert ws.registry.manifest(ws.registry.latest("golden")).content_id == legacy.content_id
    result = ws.publisher().publish(table, INFO, part_rows=256)
    assert not result.created and str(result.version) == "1.0.0", "the recorded rule is read and kept"
    # An edit keeps the recorded rule, and most parts.
    edited = table.set_column(
        1, "x", pa.array(np.where(np.arange(3000) == 7, -1.0, table.column("x").to_numpy()))
    )
    major = ws.publisher().publish(edited, INFO, part_rows=256)
    assert major.manifest.bump == "major" and major.manifest.chunking["row_hash"] == LEGACY_ROW_HASH
    assert major.manifest.changes["parts_reused"] >= len(major.manifest.parts) - 2


def test_a_rule_this_machine_cannot_compute_is_replaced_by_a_patch_never_a_minor(ws: Workspace):
    table = golden_table()
    _legacy_version(ws, table, "duckdb-0.9.0")  # written by a DuckDB release not installed here
    result = ws.publisher().publish(table, INFO, part_rows=256)
    assert result.created and str(result.version) == "1.0.1" and result.manifest.bump == "patch"
    assert result.manifest.chunking["row_hash"] == "coralord-row-1"
    assert json.loads(ws.registry.read_file(result.tag, "datasets/golden/manifest.json"))["format"] == (
        "coralord.manifest/2"
    )
