"""The DuckDB catalog: a derived, searchable index of the registry.

Never the source of truth: :meth:`Catalog.rebuild` recreates it from the registry's tags alone, and
indexing a version is idempotent. Every value from users goes in as a query parameter.
DuckDB lets one process write a file at a time, so writers take a file lock around short connections.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
from filelock import FileLock

from coralord_dagster import faults
from coralord_dagster.errors import CoralordError
from coralord_dagster.model import Manifest
from coralord_dagster.registry import Registry, VersionInfo, dataset_dir

SCHEMA = """
CREATE TABLE IF NOT EXISTS datasets (
    name TEXT PRIMARY KEY, parent TEXT, description TEXT, license TEXT,
    latest_version TEXT, latest_content_id TEXT, updated_at TEXT);
CREATE TABLE IF NOT EXISTS versions (
    name TEXT, version TEXT, major INTEGER, minor INTEGER, patch INTEGER, tag TEXT, commit_sha TEXT,
    content_id TEXT, created_at TEXT, rows BIGINT, bytes BIGINT, num_parts INTEGER, bump TEXT,
    code_version TEXT, run_id TEXT, schema_json TEXT, croissant_json TEXT, PRIMARY KEY (name, version));
CREATE TABLE IF NOT EXISTS parts (sha256 TEXT PRIMARY KEY, url TEXT, rows BIGINT, bytes BIGINT);
CREATE TABLE IF NOT EXISTS version_parts (
    name TEXT, version TEXT, ordinal INTEGER, sha256 TEXT, PRIMARY KEY (name, version, ordinal));
CREATE TABLE IF NOT EXISTS fields (
    name TEXT, version TEXT, ordinal INTEGER, field TEXT, type TEXT, PRIMARY KEY (name, version, ordinal));
CREATE TABLE IF NOT EXISTS subsets (name TEXT PRIMARY KEY, parent TEXT, definition_json TEXT);
CREATE TABLE IF NOT EXISTS lineage (
    name TEXT, version TEXT, relation TEXT, target TEXT, target_version TEXT, target_content_id TEXT);
CREATE TABLE IF NOT EXISTS sources (name TEXT, version TEXT, kind TEXT, uri TEXT, fingerprint TEXT);
"""
TABLES = ["datasets", "versions", "parts", "version_parts", "fields", "subsets", "lineage", "sources"]


class CatalogError(CoralordError, OSError):
    """The catalog file could not be opened or written."""


class Catalog:
    """The DuckDB catalog file at ``path``."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self._lock = FileLock(str(self.path) + ".lock", timeout=300)

    @contextmanager
    def connect(self, *, write: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
        """A short-lived connection; writers hold the file lock for its lifetime."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # Readers take the lock too: DuckDB refuses to open a file another process is writing.
        with self._lock:
            try:
                con = duckdb.connect(str(self.path), read_only=not write and self.path.exists())
            except duckdb.Error as e:
                raise CatalogError(f"catalog {self.path}: {e}; run 'coralord catalog rebuild'") from None
            try:
                if write or not self.path.exists():
                    con.execute(SCHEMA)
                yield con
            finally:
                con.close()

    def index(self, info: VersionInfo, manifest: Manifest, croissant: str) -> None:
        with self.connect(write=True) as con:
            _index(con, info, manifest, croissant)

    def sync(self, registry: Registry, known: dict[str, tuple[Manifest, str]] | None = None) -> int:
        """Index every tagged version the catalog lacks (after a crash, or versions others pushed), and
        drop versions no longer tagged; returns how many were indexed. ``known``: the manifest and
        Croissant of tags the caller has at hand (a version just committed), not read from Git again."""
        known = known or {}
        with self.connect(write=True) as con:
            # Read the tags under the lock too: a tag another writer indexed after we listed them
            # would otherwise look stale and be dropped.
            wanted = {(v.name, str(v.version)): v for v in registry.all_versions()}
            rows = con.execute("SELECT name, version, tag FROM versions").fetchall()
            indexed = {(n, ver): tag for n, ver, tag in rows}
            missing = [v for key, v in wanted.items() if indexed.get(key) != v.tag]
            stale = [key for key in indexed if key not in wanted]
            for name, version in stale:
                for table in ("versions", "version_parts", "fields", "lineage", "sources"):
                    con.execute(f"DELETE FROM {table} WHERE name = ? AND version = ?", [name, version])
            for info in missing:
                if info.tag in known:
                    manifest, croissant = known[info.tag]
                else:
                    folder = dataset_dir(info.name)
                    croissant = registry.read_file(info.tag, f"{folder}/croissant.json").decode()
                    manifest = registry.manifest(info)
                _index(con, info, manifest, croissant)
        return len(missing)

    def rebuild(self, registry: Registry) -> int:
        """Recreate the catalog from the registry; returns the number of versions indexed."""
        tmp = self.path.with_name(self.path.name + ".rebuild")
        tmp.unlink(missing_ok=True)
        count = 0
        con = duckdb.connect(str(tmp))
        try:
            con.execute(SCHEMA)
            for info in registry.all_versions():
                folder = dataset_dir(info.name)
                manifest = registry.manifest(info)
                croissant = registry.read_file(info.tag, f"{folder}/croissant.json").decode()
                _index(con, info, manifest, croissant)
                count += 1
        finally:
            con.close()
        with self._lock:
            tmp.replace(self.path)
        return count

    def query(self, sql: str, params: list[Any] | None = None) -> list[tuple[Any, ...]]:
        if not self.path.exists():
            return []
        with self.connect() as con:
            return con.execute(sql, params or []).fetchall()

    def search(self, text: str) -> list[dict[str, Any]]:
        """Datasets whose name, description, field names or tags contain ``text`` (case-insensitive)."""
        like = f"%{text}%"
        rows = self.query(
            """
            WITH hits AS (
                SELECT name, 'name' AS matched FROM datasets WHERE name ILIKE ?
                UNION SELECT name, 'description' FROM datasets WHERE description ILIKE ?
                UNION SELECT DISTINCT name, 'field ' || field FROM fields WHERE field ILIKE ?
                UNION SELECT DISTINCT name, 'tag ' || tag FROM versions WHERE tag ILIKE ?
            )
            SELECT d.name, d.latest_version, d.description, list(DISTINCT h.matched ORDER BY h.matched)
            FROM hits h JOIN datasets d USING (name)
            GROUP BY d.name, d.latest_version, d.description
            ORDER BY d.name
            """,
            [like, like, like, like],
        )
        return [{"name": n, "latest_version": v, "description": d, "matched": m} for n, v, d, m in rows]

    def dump(self) -> dict[str, list[tuple[Any, ...]]]:
        """Every table's rows in a stable order (used to compare catalogs)."""
        return {t: self.query(f"SELECT * FROM {t} ORDER BY ALL") for t in TABLES}


def _index(con: duckdb.DuckDBPyConnection, info: VersionInfo, m: Manifest, croissant: str) -> None:
    v = str(info.version)
    doc = json.loads(croissant)
    parent = info.name.split("/")[0] if "/" in info.name else None
    con.execute("BEGIN")
    try:
        for table in ("versions", "version_parts", "fields", "lineage", "sources"):
            con.execute(f"DELETE FROM {table} WHERE name = ? AND version = ?", [info.name, v])
        con.execute(
            "INSERT INTO versions VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            [
                info.name,
                v,
                info.version.major,
                info.version.minor,
                info.version.patch,
                info.tag,
                info.commit,
                m.content_id,
                info.date,
                m.rows,
                m.total_bytes,
                len(m.parts),
                m.bump,
                m.code_version,
                m.run_id,
                json.dumps(m.fields),
                croissant,
            ],
        )
        # Parts go in as one Arrow table, not row by row: a version can list hundreds of them.
        parts = pa.table(
            {
                "sha256": [p.sha256 for p in m.parts],
                "url": [p.url for p in m.parts],
                "rows": pa.array([p.rows for p in m.parts], pa.int64()),
                "bytes": pa.array([p.bytes for p in m.parts], pa.int64()),
                "ordinal": pa.array(range(len(m.parts)), pa.int32()),
            }
        )
        con.register("new_parts", parts)
        con.execute("INSERT INTO parts SELECT sha256, url, rows, bytes FROM new_parts ON CONFLICT DO NOTHING")
        con.execute("INSERT INTO version_parts SELECT ?, ?, ordinal, sha256 FROM new_parts", [info.name, v])
        con.unregister("new_parts")
        con.executemany(
            "INSERT INTO fields VALUES (?,?,?,?,?)",
            [[info.name, v, i, f["name"], f["type"]] for i, f in enumerate(m.fields)],
        )
        lineage = [[info.name, v, d.relation, d.name, d.version, d.content_id] for d in m.derived_from]
        if m.previous:
            p = m.previous
            lineage.append([info.name, v, "previousVersion", p.name, p.version, p.content_id])
        if lineage:
            con.executemany("INSERT INTO lineage VALUES (?,?,?,?,?,?)", lineage)
        if m.sources:
            con.executemany(
                "INSERT INTO sources VALUES (?,?,?,?,?)",
                [[info.name, v, s.kind, s.uri, json.dumps(s.fingerprint)] for s in m.sources],
            )
        if parent:
            con.execute(
                "INSERT INTO subsets VALUES (?,?,?) ON CONFLICT (name) DO UPDATE SET "
                "parent = excluded.parent, "
                "definition_json = excluded.definition_json",
                [info.name, parent, json.dumps([d.model_dump(exclude_none=True) for d in m.derived_from])],
            )
        # The newest version by semver is the dataset's latest, whatever order versions are indexed in.
        latest = con.execute(
            "SELECT version, content_id, created_at FROM versions WHERE name = ? "
            "ORDER BY major DESC, minor DESC, patch DESC LIMIT 1",
            [info.name],
        ).fetchone()
        assert latest is not None
        con.execute(
            "INSERT INTO datasets VALUES (?,?,?,?,?,?,?) ON CONFLICT (name) DO UPDATE SET "
            "parent = excluded.parent, description = excluded.description, license = excluded.license, "
            "latest_version = excluded.latest_version, latest_content_id = excluded.latest_content_id, "
            "updated_at = excluded.updated_at",
            [info.name, parent, doc.get("description"), doc.get("license"), *latest],
        )
        faults.reached("index")
        con.execute("COMMIT")
    except duckdb.Error:
        con.execute("ROLLBACK")
        raise
