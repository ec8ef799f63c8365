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


def human_bytes(n: int) -> str:
    """``n`` bytes for people.

    >>> human_bytes(0), human_bytes(1536), human_bytes(5 * 1024**3)
    ('0 B', '1.5 KiB', '5.0 GiB')
    """
    size, unit = float(n), "B"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            break
        size /= 1024
    return f"{int(size)} B" if unit == "B" else f"{size:.1f} {unit}"


def _link(value: str) -> Any:
    """A URL as a clickable URL, a local path as a path, anything else as text."""
    if value.startswith(("https://", "http://")):
        return dg.MetadataValue.url(value)
    if value.startswith("/"):
        return dg.MetadataValue.path(value)
    return value


def summary_markdown(result: PublishResult) -> str:
    """A few lines a person reads first: version, size, what changed, where it comes from."""
    m = result.manifest
    lines = [
        f"**{result.name} v{result.version}** — {result.summary}",
        "",
        f"- {m.rows:,} rows in {len(m.parts)} part(s), {human_bytes(m.total_bytes)}; "
        f"written now: {result.stats.parts_written} part(s), {human_bytes(result.stats.bytes_written)}",
        f"- content id `{m.content_id[:16]}`, tag `{result.tag}`",
    ]
    if result.created and m.previous:
        c = m.changes
        rows = f"rows {c.get('rows_before')} → {c.get('rows_after')}"
        lines.append(
            f"- {m.bump} bump from v{m.previous.version}: {rows}, "
            f"parts reused {c.get('parts_reused')}, new {c.get('parts_new')}"
        )
    lines += [f"- derived from `{d.label}`" for d in m.derived_from]
    lines += [f"- source: {redact_url(s.uri)}" for s in m.sources]
    failed = [c for c in m.checks if not c.get("passed")]
    if m.checks:
        lines.append(f"- checks: {len(m.checks) - len(failed)}/{len(m.checks)} passed")
    return "\n".join(lines)


def publish_metadata(result: PublishResult, info: DatasetInfo | None = None) -> dict[str, Any]:
    m = result.manifest
    sources = [redact_url(s.uri) for s in m.sources]
    return {
        "coralord/summary": dg.MetadataValue.md(summary_markdown(result)),
        "coralord/size": human_bytes(m.total_bytes),
        **({"coralord/source_url": _link(sources[0])} if sources else {}),
        **({"coralord/license": _link(info.license)} if info else {}),
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
        "coralord/storage_url": _link(redact_url(result.storage_url)),
        "coralord/croissant": dg.MetadataValue.json(result.croissant),
        "dagster/row_count": m.rows,
        "dagster/column_schema": column_schema(m.fields, info.columns if info else None),
        **(
            {"coralord/environment": dg.MetadataValue.json(env)}
            if (env := result.croissant.get("coralord:environment"))
            else {}
        ),
        # Numbers as plain float entries: the UI plots each across materializations.
        **{f"metric/{k}": dg.MetadataValue.float(float(v)) for k, v in sorted(m.metrics.items())},
    }
