"""Local files or globs: size and mtime as the fast path, sha256 to confirm a change.

Touching a file (new mtime, same bytes) re-hashes it and yields the same fingerprint, so it triggers
nothing; only different bytes change the fingerprint.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from coralord_dagster.sources.base import Source, SourceError
from coralord_dagster.sources.fingerprint import Fingerprint, checker, make


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def local_files(source: Source) -> dict[str, Path]:
    """The files a local source consists of (its ``files``, which may be globs; else everything)."""
    root = Path(source.base)
    if root.is_file():
        return {root.name: root}
    if not root.is_dir():
        raise SourceError(f"source {source.uri}: {root} does not exist")
    found: dict[str, Path] = {}
    for pattern in source.files or ["**/*"]:
        matches = [p for p in sorted(root.glob(pattern)) if p.is_file()]
        if not matches and source.files:
            raise SourceError(f"source {source.uri}: no file matches {pattern!r} in {root}")
        found.update({str(p.relative_to(root)): p for p in matches})
    if not found:
        raise SourceError(f"source {source.uri}: {root} holds no files")
    return found


@checker("local")
def check_local(source: Source, previous: Fingerprint | None, timeout: float) -> Fingerprint:
    known = previous.details.get("stat", {}) if previous else {}
    stat, items = {}, {}
    for rel, path in local_files(source).items():
        st = path.stat()
        old = known.get(rel)
        if old and old["size"] == st.st_size and old["mtime_ns"] == st.st_mtime_ns:
            sha = old["sha256"]  # fast path: unchanged size and mtime
        else:
            sha = _sha256(path)
        stat[rel] = {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": sha}
        items[rel] = sha
    return make(items, stat=stat)
