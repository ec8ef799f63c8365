"""Garbage collection: delete stored parts that no tagged version references.

A publish writes its parts before it commits its tag, so a part that is not referenced *yet* may be
about to be: only parts older than a grace period are candidates, and the references are read again
under the registry lock (which every commit takes) right before deleting. A publish checks, under the
same lock, that every part it references is still stored before it commits. With a remote, references
are read after syncing with it, so versions other clones pushed protect their parts too.

Also removed: temporary part files (``.<sha>.<id>.tmp``) older than the grace period, left by writers that
were killed, and temporary folders of coralord processes that no longer run.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from coralord_dagster.registry import Registry
from coralord_dagster.tempdirs import remove_orphans
from coralord_dagster.workspace import Workspace

DEFAULT_GRACE_S = 3600


@dataclass
class GcReport:
    #: (sha256, bytes) of unreferenced parts, deleted unless dry run
    unreferenced: list[tuple[str, int]] = field(default_factory=list)
    too_young: int = 0
    referenced: int = 0
    dry_run: bool = True
    #: (path, bytes) of temporary part files left by killed writers, deleted unless dry run
    temporaries: list[tuple[str, int]] = field(default_factory=list)

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
            "temporaries": [{"path": p, "bytes": n} for p, n in self.temporaries],
        }


def referenced_parts(registry: Registry) -> set[str]:
    """Every part any tagged version of any dataset or subset lists."""
    return {p.sha256 for v in registry.all_versions() for p in registry.manifest(v).parts}


def _mtime(info: dict[str, Any]) -> float:
    value = info.get("mtime") or info.get("LastModified") or info.get("created") or 0
    return value.timestamp() if isinstance(value, datetime) else float(value)


def _listing(ws: Workspace) -> dict[str, dict[str, Any]]:
    root = ws.store.root.rstrip("/") + "/parts"
    if not ws.store.fs.exists(root):
        return {}
    return {
        path: {"path": path, "size": int(info.get("size", 0)), "mtime": _mtime(info)}
        for path, info in ws.store.fs.find(root, detail=True).items()
    }


def stored_parts(
    ws: Workspace, listing: dict[str, dict[str, Any]] | None = None
) -> dict[str, dict[str, Any]]:
    """sha256 → {path, size, mtime} of every part in the store."""
    found = {}
    for path, info in (listing if listing is not None else _listing(ws)).items():
        name = path.rsplit("/", 1)[-1]
        if name.endswith(".parquet") and not name.startswith("."):
            found[name.removesuffix(".parquet")] = info
    return found


def temporary_parts(listing: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Temporary files of part writes (complete parts are renamed from them; these never were)."""
    return [i for p, i in listing.items() if p.rsplit("/", 1)[-1].startswith(".") and p.endswith(".tmp")]


def collect(ws: Workspace, *, dry_run: bool = True, grace_s: float = DEFAULT_GRACE_S) -> GcReport:
    report = GcReport(dry_run=dry_run)
    if ws.registry.has_remote:
        with ws.registry.locked():
            ws.registry.sync()
    now = time.time()
    refs = referenced_parts(ws.registry)
    listing = _listing(ws)
    stored = stored_parts(ws, listing)
    old_temporaries = [t for t in temporary_parts(listing) if now - t["mtime"] >= grace_s]
    report.temporaries = [(t["path"], t["size"]) for t in old_temporaries]
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
    remove_orphans()
    for t in old_temporaries:
        ws.store.fs.rm_file(t["path"])
    with ws.registry.locked():  # no version can be committed while references are re-read and parts deleted
        ws.registry.sync()
        refs = referenced_parts(ws.registry)
        for sha in candidates:
            if sha not in refs:
                ws.store.fs.rm_file(stored[sha]["path"])
                report.unreferenced.append((sha, stored[sha]["size"]))
    return report
