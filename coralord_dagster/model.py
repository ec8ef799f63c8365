"""The records every layer shares: parts, manifests, lineage, and what a publish is told about a dataset.

A manifest is the contract of one version (committed as ``manifest.json``); these pydantic models are its
only reader and writer, so no module reads lineage by probing dict keys.

Content ids (a contract):

- ``coralord.manifest/2``: sha256 of the canonical JSON of the schema (our own type names, see
  :func:`coralord_dagster.rowhash.canonical_type`), the row-hash rule's name and the digest of the rows'
  hashes. It names the *data*, so it is the same whatever Parquet writer serialized the parts and however
  they were cut: a pyarrow or DuckDB upgrade changes no content id.
- ``coralord.manifest/1`` (registries written before): sha256 of the part sha256s and the schema fields.
  Still read, never written.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from dataclasses import dataclass, field
from typing import Any, Literal

import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from coralord_dagster.checks import Checks
from coralord_dagster.errors import InvalidNameError
from coralord_dagster.naming import validate_name

FORMAT = "coralord.manifest/2"
LEGACY_FORMAT = "coralord.manifest/1"
DIGEST: Literal["xxh3-64"] = "xxh3-64"
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def canonical_json(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


# --------------------------------------------------------------------------------------------- parts
class PartDigests(_Model):
    """Digests of every byte range of a part a read uses, so a partial read can check what it reads.

    ``chunks`` lists one digest per column chunk, row group by row group in footer order; ``footer``
    covers ``[footer_offset, end of file)`` (the Parquet footer, its length and the magic bytes).
    """

    algo: Literal["xxh3-64"] = DIGEST
    footer_offset: int
    footer: str
    chunks: list[str]


#: Consecutive rows of a version cut into parts on their own: (offset, rows, split name or None).
Segment = tuple[int, int, str | None]


class PartRef(_Model):
    """One stored part, as listed in a manifest (``stats``: column → [min, max], for pruning)."""

    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    url: str
    rows: int = Field(ge=0)
    bytes: int = Field(gt=0)
    stats: dict[str, list[Any]] | None = None
    digests: PartDigests | None = None
    split: str | None = Field(None, description="The split all of the part's rows are in, if any.")

    @model_validator(mode="after")
    def _url_names_this_part(self) -> PartRef:
        """A part's URL is informational (parts are read by sha256 from the reader's own storage), but a
        manifest naming anything else (``file:///etc/…``, ``../``) was edited: refuse it before any read."""
        tail = f"/parts/{self.sha256[:2]}/{self.sha256}.parquet"
        if not self.url.endswith(tail) or "/../" in self.url or _CONTROL.search(self.url):
            raise ValueError(f"part {self.sha256}: url {self.url!r} does not name this part in a store")
        return self

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_none=True)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> PartRef:
        return cls.model_validate(d)


# --------------------------------------------------------------------------------------------- lineage
class VersionRef(_Model):
    """A published version of a coralord dataset, by name, version and content id."""

    name: str
    version: str
    content_id: str

    @property
    def label(self) -> str:
        return f"{self.name}@v{self.version}"


class ParentRef(VersionRef):
    """A dataset version this one was computed from."""

    relation: Literal["derivedFrom", "subsetOf", "parent"] = "parent"
    subset: dict[str, Any] | None = Field(default=None, description="The subset's definition, for subsets.")


class SourceRecord(BaseModel):
    """An upstream source as lineage records it: never credentials. Source kinds may add their own keys
    (``read_from``, ``revision``…), which are kept as they are."""

    model_config = ConfigDict(frozen=False, extra="allow")

    kind: str | None = None
    uri: str
    fingerprint: Any = None
    files: list[str] | None = None
    params: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_none=True)


# --------------------------------------------------------------------------------------------- schema
def schema_fields(schema: pa.Schema) -> list[dict[str, Any]]:
    """Human-readable, comparable description of the columns."""
    return [{"name": f.name, "type": str(f.type), "nullable": f.nullable} for f in schema]


def encode_schema(schema: pa.Schema) -> str:
    return base64.b64encode(schema.serialize().to_pybytes()).decode()


def decode_schema(text: str) -> pa.Schema:
    return pa.ipc.read_schema(pa.BufferReader(base64.b64decode(text)))


def legacy_content_id(parts: list[PartRef], fields: list[dict[str, Any]]) -> str:
    return hashlib.sha256(canonical_json({"parts": [p.sha256 for p in parts], "fields": fields})).hexdigest()


def data_content_id(schema: pa.Schema, row_hash: str, rows_digest: str) -> str:
    """The content id of ``coralord.manifest/2``: the data, independent of how it was serialized."""
    from coralord_dagster.rowhash import canonical_type

    columns = [[f.name, canonical_type(f.type), f.nullable] for f in schema]
    payload = {"format": FORMAT, "columns": columns, "row_hash": row_hash, "rows": rows_digest}
    return hashlib.sha256(canonical_json(payload)).hexdigest()


# --------------------------------------------------------------------------------------------- manifest
class Manifest(_Model):
    """The manifest of one version: its parts, schema, identity and provenance."""

    format: str = FORMAT
    name: str
    version: str = Field(pattern=r"^\d{1,9}\.\d{1,9}\.\d{1,9}$")
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
    previous: VersionRef | None = None
    derived_from: list[ParentRef] = Field(default_factory=list)
    sources: list[SourceRecord] = Field(default_factory=list)
    code_version: str | None = None
    run_id: str | None = None
    changes: dict[str, Any] = Field(default_factory=dict)
    metrics: dict[str, float] = Field(default_factory=dict)
    checks: list[dict[str, Any]] = Field(default_factory=list)

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        """A manifest's name becomes paths and tags: it is checked like any name that enters."""
        try:
            return validate_name(v)
        except InvalidNameError as e:
            raise ValueError(str(e)) from None

    @property
    def content_id(self) -> str:
        if self.format == LEGACY_FORMAT:
            return legacy_content_id(self.parts, self.fields)
        return data_content_id(self.schema, str(self.chunking.get("row_hash")), self.rows_digest)

    @property
    def total_bytes(self) -> int:
        return sum(p.bytes for p in self.parts)

    @property
    def schema(self) -> pa.Schema:
        return decode_schema(self.arrow_schema)

    @property
    def parent(self) -> ParentRef | None:
        """The dataset version this one was derived from, if any (the first parent)."""
        return self.derived_from[0] if self.derived_from else None

    @property
    def ref(self) -> VersionRef:
        return VersionRef(name=self.name, version=self.version, content_id=self.content_id)

    def with_version(self, version: str, **changes: Any) -> Manifest:
        return self.model_copy(update={"version": version, **changes})

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "format": self.format,
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
            "previous": self.previous.model_dump() if self.previous else None,
            "derived_from": [d.model_dump(exclude_none=True) for d in self.derived_from],
            "sources": [s.to_json() for s in self.sources],
            "code_version": self.code_version,
            "run_id": self.run_id,
            "changes": self.changes,
        }
        if self.metrics:
            out["metrics"] = self.metrics
        if self.checks:
            out["checks"] = self.checks
        return out

    def dumps(self) -> str:
        return json_text(self.to_json())

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Manifest:
        if d.get("format") not in (FORMAT, LEGACY_FORMAT):
            raise ValueError(f"unsupported manifest format {d.get('format')!r}")
        fields = {k: v for k, v in d.items() if k not in ("content_id", "bytes", "schema")}
        try:
            m = cls.model_validate(
                {**fields, "fields": d["schema"]["fields"], "arrow_schema": d["schema"]["arrow"]}
            )
        except (ValidationError, KeyError, TypeError) as e:
            raise ValueError(f"manifest does not have the expected fields: {e}") from None
        if m.content_id != d.get("content_id"):
            raise ValueError(f"manifest of {m.name} v{m.version}: content id does not match its data")
        return m

    @classmethod
    def loads(cls, text: str | bytes) -> Manifest:
        return cls.from_json(json.loads(text))


def json_text(doc: Any, *, long_list: int = 8) -> str:
    """``doc`` as indented JSON text, except that the elements of a list longer than ``long_list`` take one
    line each (a version's parts, a Croissant's files): a Git diff shows one line per changed entry, and
    the bulk is encoded by the C encoder (``indent`` alone runs the pure-Python one: 0.1 s for 500 parts).
    """

    def text(value: Any, pad: str) -> str:
        inner = pad + "  "
        if isinstance(value, dict) and value:
            items = (
                f"{inner}{json.dumps(str(k), ensure_ascii=False)}: {text(v, inner)}" for k, v in value.items()
            )
            return "{\n" + ",\n".join(items) + f"\n{pad}}}"
        if isinstance(value, list) and value:
            if len(value) > long_list:
                lines = (inner + json.dumps(v, ensure_ascii=False) for v in value)
            else:
                lines = (inner + text(v, inner) for v in value)
            return "[\n" + ",\n".join(lines) + f"\n{pad}]"
        return json.dumps(value, ensure_ascii=False)

    return text(doc, "") + "\n"


# --------------------------------------------------------------------------------------------- publishing
@dataclass(frozen=True)
class DatasetInfo:
    """What the Croissant says about a dataset besides its data (mostly from the descriptor)."""

    name: str
    description: str
    license: str
    url: str | None = None
    citation: str | None = None
    keywords: tuple[str, ...] = ()
    creator: str | None = None
    publisher: str | None = None
    split_column: str | None = None
    split_names: tuple[str, ...] = ()
    #: column name → {description, categories, semantic}
    columns: dict[str, dict[str, Any]] = field(default_factory=dict)
    pipeline: str | None = None
    environment: dict[str, Any] = field(default_factory=dict)
    descriptor_text: str | None = None
    metadata_digest: str = ""
    #: the quality checks a version must pass before it is published
    checks: Checks | None = None
    #: columns identifying a row (diffs by key)
    key: tuple[str, ...] = ()


@dataclass(frozen=True)
class Provenance:
    """Where a version comes from: sources, parent datasets, code version and run."""

    sources: list[SourceRecord] = field(default_factory=list)
    derived_from: list[ParentRef] = field(default_factory=list)
    code_version: str | None = None
    run_id: str | None = None
    #: The environment the pipeline ran in (image, digest, runner), when known at run time; it
    #: replaces the descriptor's ``environment`` in the Croissant.
    environment: dict[str, Any] | None = None
