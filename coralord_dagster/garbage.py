"""Garbage collection: delete stored parts that no tagged version references.

A publish writes its parts before it commits its tag, so a part that is not referenced *yet* may be
about to be: only parts older than a grace period are candidates, and the references are read again
under the registry lock (which every commit takes) right before deleting.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from coralord_dagster.registry import Registry
from coralord_dagster.workspace import Workspace

DEFAULT_GRACE_S = 3600


@dataclass
class GcReport:
    unreferenced: list[tuple[str, int]] = field(
        default_factory=list
    )  # (sha256, bytes), deleted unless dry run
    too_young: int = 0
    referenced: int = 0
    dry_run: bool = True

    @property
    def bytes(self) -> int:
        return sum(n for _, n in self.unreferenced)

    def to_json(self) -> dict[str, Any]:
        return {
            "dry_run": self.dry_run,
            "referenced": self.referenced,
            "too_young": self.too_young,
            "unreferenced": [{"sha256": s, "bytes": n} for s, n in self.unreferenced],
            "bytes": self.bytes,
        }


def referenced_parts(registry: Registry) -> set[str]:
    """Every part any tagged version of any dataset or subset lists."""
    return {p.sha256 for v in registry.all_versions() for p in registry.manifest(v).parts}


def _mtime(info: dict[str, Any]) -> float:
    value = info.get("mtime") or info.get("LastModified") or info.get("created") or 0
    return value.timestamp() if isinstance(value, datetime) else float(value)


def stored_parts(ws: Workspace) -> dict[str, dict[str, Any]]:
    """sha256 → {path, size, mtime} of every part in the store."""
    root = ws.store.root.rstrip("/") + "/parts"
    if not ws.store.fs.exists(root):
        return {}
    found = {}
    for path, info in ws.store.fs.find(root, detail=True).items():
        name = path.rsplit("/", 1)[-1]
        if name.endswith(".parquet") and not name.startswith("."):
            found[name.removesuffix(".parquet")] = {
                "path": path,
                "size": int(info.get("size", 0)),
                "mtime": _mtime(info),
            }
    return found


def collect(ws: Workspace, *, dry_run: bool = True, grace_s: float = DEFAULT_GRACE_S) -> GcReport:
    report = GcReport(dry_run=dry_run)
    now = time.time()
    refs = referenced_parts(ws.registry)
    stored = stored_parts(ws)
    candidates = []
    for sha, info in sorted(stored.items()):
        if sha in refs:
            report.referenced += 1
        elif now - info["mtime"] < grace_s:
            report.too_young += 1
        else:
            candidates.append(sha)
    if dry_run:
        report.unreferenced = [(sha, stored[sha]["size"]) for sha in candidates]
        return report
    with ws.registry.locked():  # no version can be committed while references are re-read and parts deleted
        refs = referenced_parts(ws.registry)
        for sha in candidates:
            if sha not in refs:
                ws.store.fs.rm_file(stored[sha]["path"])
                report.unreferenced.append((sha, stored[sha]["size"]))
    return report
