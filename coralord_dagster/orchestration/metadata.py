"""Materialization metadata for a publish: the facts a Dagster user looks for in the UI."""

from __future__ import annotations

from typing import Any

import dagster as dg

from coralord_dagster.model import DatasetInfo
from coralord_dagster.publish import PublishResult
from coralord_dagster.redact import redact_url


def column_schema(
    fields: list[dict[str, Any]], docs: dict[str, dict[str, Any]] | None = None
) -> dg.TableSchema:
    docs = docs or {}
    return dg.TableSchema(
        columns=[
            dg.TableColumn(f["name"], f["type"], description=docs.get(f["name"], {}).get("description"))
            for f in fields
        ]
    )


def publish_metadata(result: PublishResult, info: DatasetInfo | None = None) -> dict[str, Any]:
    m = result.manifest
    return {
        "coralord/status": result.summary,
        "coralord/dataset": result.name,
        "coralord/version": f"v{result.version}",
        "coralord/tag": result.tag,
        "coralord/content_id": m.content_id,
        "coralord/commit": result.commit,
        "coralord/new_version": result.created,
        "coralord/bump": (m.bump or "") if result.created else "none (unchanged)",
        "coralord/changes": dg.MetadataValue.json(m.changes),
        "coralord/parts": len(m.parts),
        "coralord/parts_written": result.stats.parts_written,
        "coralord/bytes_written": result.stats.bytes_written,
        "coralord/storage_url": redact_url(result.storage_url),
        "coralord/croissant": dg.MetadataValue.json(result.croissant),
        "dagster/row_count": m.rows,
        "dagster/column_schema": column_schema(m.fields, info.columns if info else None),
        "coralord/environment": dg.MetadataValue.json(result.croissant.get("coralord:environment") or {}),
        # Numbers as plain float entries: the UI plots each across materializations.
        **{f"metric/{k}": dg.MetadataValue.float(float(v)) for k, v in sorted(m.metrics.items())},
    }
