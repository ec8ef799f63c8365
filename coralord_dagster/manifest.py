"""The manifest of one version: its parts, schema, identity and provenance.

The content id is the sha256 of the canonical JSON of the parts (in order) and the schema fields, so
identical content always has the same id wherever it is stored.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass, field, replace
from typing import Any

import pyarrow as pa

from coralord_dagster.store import PartRef

FORMAT = "coralord.manifest/1"


def canonical_json(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def schema_fields(schema: pa.Schema) -> list[dict[str, Any]]:
    """Human-readable, comparable description of the columns."""
    return [{"name": f.name, "type": str(f.type), "nullable": f.nullable} for f in schema]


def encode_schema(schema: pa.Schema) -> str:
    return base64.b64encode(schema.serialize().to_pybytes()).decode()


def decode_schema(text: str) -> pa.Schema:
    return pa.ipc.read_schema(pa.BufferReader(base64.b64decode(text)))


def content_id(parts: list[PartRef], fields: list[dict[str, Any]]) -> str:
    return hashlib.sha256(canonical_json({"parts": [p.sha256 for p in parts], "fields": fields})).hexdigest()


@dataclass(frozen=True)
class Manifest:
    name: str
    version: str
    parts: list[PartRef]
    fields: list[dict[str, Any]]
    arrow_schema: str
    rows: int
    rows_digest: str
    chunking: dict[str, Any]
    metadata_digest: str
    created: str
    bump: str | None = None
    produced_as: str = "arrow"  # "pandas" or "arrow": what the producer returned
    previous: dict[str, Any] | None = None  # {name, version, content_id} of the version before
    derived_from: list[dict[str, Any]] = field(default_factory=list)  # parent datasets / sources
    sources: list[dict[str, Any]] = field(default_factory=list)
    code_version: str | None = None
    run_id: str | None = None
    changes: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)  # the pipeline's headline numbers

    @property
    def content_id(self) -> str:
        return content_id(self.parts, self.fields)

    @property
    def total_bytes(self) -> int:
        return sum(p.bytes for p in self.parts)

    @property
    def schema(self) -> pa.Schema:
        return decode_schema(self.arrow_schema)

    def with_version(self, version: str, **changes: Any) -> Manifest:
        return replace(self, version=version, **changes)

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "name": self.name,
            "version": self.version,
            "content_id": self.content_id,
            "rows": self.rows,
            "bytes": self.total_bytes,
            "parts": [p.to_json() for p in self.parts],
            "schema": {"fields": self.fields, "arrow": self.arrow_schema},
            "rows_digest": self.rows_digest,
            "chunking": self.chunking,
            "metadata_digest": self.metadata_digest,
            "created": self.created,
            "bump": self.bump,
            "produced_as": self.produced_as,
            "previous": self.previous,
            "derived_from": self.derived_from,
            "sources": self.sources,
            "code_version": self.code_version,
            "run_id": self.run_id,
            "changes": self.changes,
            **({"metrics": self.metrics} if self.metrics else {}),
        }

    def dumps(self) -> str:
        return json.dumps(self.to_json(), indent=2, sort_keys=False) + "\n"

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Manifest:
        if d.get("format") != FORMAT:
            raise ValueError(f"unsupported manifest format {d.get('format')!r}")
        m = cls(
            name=d["name"],
            version=d["version"],
            parts=[PartRef.from_json(p) for p in d["parts"]],
            fields=d["schema"]["fields"],
            arrow_schema=d["schema"]["arrow"],
            rows=d["rows"],
            rows_digest=d["rows_digest"],
            chunking=d["chunking"],
            metadata_digest=d["metadata_digest"],
            created=d["created"],
            bump=d.get("bump"),
            produced_as=d.get("produced_as", "arrow"),
            previous=d.get("previous"),
            derived_from=d.get("derived_from", []),
            sources=d.get("sources", []),
            code_version=d.get("code_version"),
            run_id=d.get("run_id"),
            changes=d.get("changes", {}),
            metrics=d.get("metrics", {}),
        )
        if m.content_id != d["content_id"]:
            raise ValueError(f"manifest of {m.name} v{m.version}: content id does not match its parts")
        return m

    @classmethod
    def loads(cls, text: str | bytes) -> Manifest:
        return cls.from_json(json.loads(text))
