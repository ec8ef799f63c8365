"""Build and validate the Croissant 1.1 JSON-LD of one version (no Dagster imports).

Layout of what we write:

- ``distribution``: one ``cr:FileObject`` per part (real ``sha256``; ``contentUrl`` the part's path
  beside the file for local storage, its ``https://`` address for object storage), a ``cr:FileSet``
  ``parts-checked`` contained in every FileObject, and a ``cr:FileSet`` ``parts`` listing the parts at
  ``parts/<split>/<ordinal>-<sha256>.parquet`` (:func:`part_link_name`) beside the file. mlcroissant
  reads columns only through a FileSet in the JSON-LD's own folder, so the registry keeps those paths
  as links next to the Croissant (local storage; never in Git) and ``coralord export`` lays any version
  out the same way anywhere. The ordinal keeps the version's row order; parts never mix splits.
- ``recordSet``: ``part_files`` (reading it downloads every FileObject, so mlcroissant checks every
  sha256), ``records`` with one field per column (``extract.column``; the split from the part's path by a
  regex, so split filters and TFDS select parts), ``splits`` (``cr:Split`` with the standard split
  URLs) and one ``sc:Enumeration`` per categorical column.
- ``prov:wasDerivedFrom`` / ``prov:wasGeneratedBy`` with the IRIs of the versions it comes from, and
  statistics, pipeline and environment in the ``coralord:`` namespace.

mlcroissant reads a whole version split by split in the order of the split folders' names; each split
in row order.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from coralord_dagster.errors import CroissantError
from coralord_dagster.model import DatasetInfo, Manifest, ParentRef, PartRef, SourceRecord, json_text

__all__ = ["DatasetInfo", "build_croissant", "dumps", "part_link_name", "trim_parts", "validate"]

CONFORMS_TO = "http://mlcommons.org/croissant/1.1"
CORALORD_NS = "https://coralord.dev/ns#"
RECORDS = "records"
PART_FILES = "part_files"  # the record set whose reading checks every part's sha256
CHECKED = "parts-checked"

#: DDI-CDI's SummaryStatisticType vocabulary, which the Croissant 1.1 spec uses for statistics.
DDI_STATS = "http://rdf-vocabulary.ddialliance.org/cv/SummaryStatisticType/2.1.2/"
#: How each column statistic is typed as a Croissant annotation (spec, "Statistics"): the spec's own
#: terms where it names one (arithmetic mean, maximum; Wikidata's cardinality for a count), else ours.
STAT_TERMS: dict[str, dict[str, Any]] = {
    "count": {"dataType": "http://www.wikidata.org/entity/Q4049983"},
    "mean": {"dataType": "ddi-stats:7975ed0"},
    "max": {"dataType": "ddi-stats:8321e79", "equivalentProperty": "sc:maxValue"},
    "min": {"dataType": f"{CORALORD_NS}Minimum", "equivalentProperty": "sc:minValue"},
    "nulls": {"dataType": f"{CORALORD_NS}NullCount"},
    "distinct": {"dataType": f"{CORALORD_NS}ApproxDistinctCount"},
}

CONTEXT: dict[str, Any] = {
    "@language": "en",
    "@vocab": "https://schema.org/",
    "citeAs": "cr:citeAs",
    "column": "cr:column",
    "conformsTo": "dct:conformsTo",
    "cr": "http://mlcommons.org/croissant/",
    "rai": "http://mlcommons.org/croissant/RAI/",
    "data": {"@id": "cr:data", "@type": "@json"},
    "dataType": {"@id": "cr:dataType", "@type": "@vocab"},
    "dct": "http://purl.org/dc/terms/",
    "examples": {"@id": "cr:examples", "@type": "@json"},
    "extract": "cr:extract",
    "field": "cr:field",
    "fileProperty": "cr:fileProperty",
    "fileObject": "cr:fileObject",
    "fileSet": "cr:fileSet",
    "format": "cr:format",
    "includes": "cr:includes",
    "isLiveDataset": "cr:isLiveDataset",
    "jsonPath": "cr:jsonPath",
    "key": "cr:key",
    "md5": "cr:md5",
    "parentField": "cr:parentField",
    "path": "cr:path",
    "recordSet": "cr:recordSet",
    "references": "cr:references",
    "regex": "cr:regex",
    "repeated": "cr:repeated",
    "replace": "cr:replace",
    "sc": "https://schema.org/",
    "separator": "cr:separator",
    "source": "cr:source",
    "subField": "cr:subField",
    "transform": "cr:transform",
    "prov": "http://www.w3.org/ns/prov#",
    "coralord": CORALORD_NS,
    # Croissant 1.1 terms (mlcroissant warns about a context without them)
    "arrayShape": "cr:arrayShape",
    "containedIn": "cr:containedIn",
    "description": {"@container": "@language"},
    "equivalentProperty": "cr:equivalentProperty",
    "isArray": "cr:isArray",
    "name": {"@container": "@language"},
    "samplingRate": "cr:samplingRate",
    "annotation": "cr:annotation",
    "ddi-stats": DDI_STATS,
    # typed dates, not language-tagged strings
    "xsd": "http://www.w3.org/2001/XMLSchema#",
    "prov:endedAtTime": {"@id": "prov:endedAtTime", "@type": "xsd:dateTime"},
    "datePublished": {"@id": "sc:datePublished", "@type": "sc:Date"},
    "dateModified": {"@id": "sc:dateModified", "@type": "sc:DateTime"},
}
# Our extension payloads are plain data, not graph nodes: as JSON literals they round-trip exactly
# (and an object of empty lists cannot turn into a self-referencing blank node in mlcroissant).
for _term in (
    "statistics",
    "changes",
    "environment",
    "files",
    "fingerprint",
    "subset",
    "metrics",
    "params",
    "checks",
):
    CONTEXT[f"coralord:{_term}"] = {"@id": f"coralord:{_term}", "@type": "@json"}


def part_link_name(ordinal: int, sha256: str, split: str | None = None) -> str:
    """Path of a part beside the Croissant: ``parts/<split>/00000-<sha256>.parquet`` (no ``<split>/``
    for a dataset without splits). A consumer finds a part's split in its path."""
    return f"parts/{split + '/' if split else ''}{ordinal:05d}-{sha256}.parquet"


def part_link_names(parts: list[PartRef]) -> list[str]:
    return [part_link_name(i, p.sha256, p.split) for i, p in enumerate(parts)]


#: The standard Croissant split of a split name (others get a coralord IRI of their own).
STANDARD_SPLITS = {
    "train": "cr:TrainingSplit",
    "training": "cr:TrainingSplit",
    "validation": "cr:ValidationSplit",
    "valid": "cr:ValidationSplit",
    "val": "cr:ValidationSplit",
    "dev": "cr:ValidationSplit",
    "test": "cr:TestSplit",
    "testing": "cr:TestSplit",
}


def version_iri(name: str, version: str) -> str:
    """The IRI of one published version (its Croissant's ``@id``), by which lineage links versions."""
    return f"{CORALORD_NS}{name}@v{version}"


def _data_type(t: pa.DataType, semantic: str | None) -> str | list[str]:
    """The Croissant type of an Arrow type, with its width (``cr:Int64``, ``cr:Float32``…), so that a
    consumer (TFDS, mlcroissant) keeps the precision the data has."""
    if semantic == "image":
        return "sc:ImageObject"
    if pa.types.is_boolean(t):
        return "sc:Boolean"
    if pa.types.is_integer(t) and t.bit_width in (8, 16, 32, 64):
        return f"cr:{'U' if pa.types.is_unsigned_integer(t) else ''}Int{t.bit_width}"
    if pa.types.is_floating(t) and t.bit_width in (16, 32, 64):
        return f"cr:Float{t.bit_width}"
    if pa.types.is_floating(t) or pa.types.is_decimal(t):
        return "sc:Float"
    if pa.types.is_timestamp(t):
        return "sc:DateTime"
    if pa.types.is_date(t):
        return "sc:Date"
    return "sc:Text"


def field_ids(names: list[str]) -> dict[str, str]:
    """A Croissant ``@id`` segment per column: the name, with characters an ``@id`` cannot hold (spaces,
    ``/``, ``#``...) replaced by ``_``, made unique. The column's real name stays in ``name`` and in
    ``extract.column``.

    >>> field_ids(["label", "fixed acidity", "fixed_acidity"])
    {'label': 'label', 'fixed acidity': 'fixed_acidity_2', 'fixed_acidity': 'fixed_acidity'}
    """
    clean = {n: re.sub(r"[^A-Za-z0-9_.\-]", "_", n) or "_" for n in names}
    taken = {c for n, c in clean.items() if c == n}
    out: dict[str, str] = {}
    for n in names:
        c = clean[n]
        if c != n:
            base, k = c, 2
            while c in taken:
                c, k = f"{base}_{k}", k + 1
            taken.add(c)
        out[n] = c
    return out


def column_statistics(table: pa.Table) -> dict[str, dict[str, Any]]:
    """Per-column statistics recorded in the Croissant: one parallel DuckDB pass over the table.

    ``distinct`` is HyperLogLog's estimate (``approx_count_distinct``), exact for small cardinalities.
    """
    import duckdb

    aggregates: list[str] = []
    wanted: list[tuple[str, str]] = []
    for f in table.schema:
        q = '"' + f.name.replace('"', '""') + '"'
        stats = ["count"]
        if pa.types.is_integer(f.type) or pa.types.is_floating(f.type):
            stats += ["min", "max", "avg"]
        if pa.types.is_primitive(f.type) or pa.types.is_string(f.type) or pa.types.is_large_string(f.type):
            stats.append("approx_count_distinct")
        for stat in stats:
            aggregates.append(f"{stat}({q})")
            wanted.append((f.name, stat))
    if not aggregates:
        return {}
    con = duckdb.connect()
    try:
        con.register("t", table)
        row = con.sql(f"SELECT {', '.join(aggregates)} FROM t").fetchall()[0]
    finally:
        con.close()
    names = {"count": "count", "min": "min", "max": "max", "avg": "mean", "approx_count_distinct": "distinct"}
    out: dict[str, dict[str, Any]] = {f.name: {} for f in table.schema}
    for (col, stat), value in zip(wanted, row, strict=True):
        out[col][names[stat]] = value.item() if hasattr(value, "item") else value
    for col in out:
        out[col]["nulls"] = table.num_rows - out[col]["count"]
    return out


def statistics_annotations(owner: str, stats: dict[str, Any]) -> list[dict[str, Any]]:
    """``stats`` as Croissant 1.1 annotations of the field or record set ``owner`` (its ``@id``); their
    ``@id`` is ``<owner>#<stat>``: no field's ``@id`` holds a ``#`` (:func:`field_ids`).

    >>> statistics_annotations("records/x", {"max": 3})[0]["@id"]
    'records/x#max'
    """
    return [
        {"@type": "cr:Field", "@id": f"{owner}#{stat}", "name": stat, "value": value, **STAT_TERMS[stat]}
        for stat, value in stats.items()
        if stat in STAT_TERMS and value is not None
    ]


def _value_counts(table: pa.Table, column: str) -> dict[str, int]:
    counts = pc.value_counts(table.column(column)).to_pylist()
    return {str(c["values"]): int(c["counts"]) for c in sorted(counts, key=lambda c: str(c["values"]))}


def build_croissant(
    manifest: Manifest,
    info: DatasetInfo,
    table: pa.Table,
    *,
    part_urls: list[str] | None = None,
    date_published: str,
    stats: dict[str, dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """The Croissant 1.1 JSON-LD of ``manifest`` (``table`` is the version's data, for statistics).

    ``part_urls``: each part's ``contentUrl`` (an ``https://`` address of object storage); None: the
    parts are read beside the file, at :func:`part_link_name` (local storage, and every export).
    """
    links = part_link_names(manifest.parts)
    urls = part_urls or links
    remote = part_urls is not None
    files: list[dict[str, Any]] = []
    for i, part in enumerate(manifest.parts):
        files.append(
            {
                "@type": "cr:FileObject",
                "@id": f"part-{i:05d}",
                "name": f"part-{i:05d}",
                "contentUrl": urls[i],
                "contentSize": f"{part.bytes} B",
                "encodingFormat": "application/x-parquet",
                "sha256": part.sha256,
                "coralord:rows": part.rows,
                **({"coralord:split": part.split} if part.split else {}),
            }
        )
    files += [
        {
            "@type": "cr:FileSet",
            "@id": CHECKED,
            "name": CHECKED,
            "description": "Every part read through its FileObject, so that its sha256 is checked.",
            "encodingFormat": "application/x-parquet",
            "containedIn": [{"@id": f"part-{i:05d}"} for i in range(len(manifest.parts))],
            # mlcroissant caches a downloaded file under a name without its suffix
            "includes": "*" if remote else "*.parquet",
        },
        {
            "@type": "cr:FileSet",
            "@id": "parts",
            "name": "parts",
            "description": "All parts of this version, in row order, beside this file (coralord export "
            "puts them there).",
            "encodingFormat": "application/x-parquet",
            "includes": links,
        },
    ]
    # mlcroissant checks a FileObject's sha256 only when a record set it reads needs that file: reading
    # these records checks every part (the rows themselves are read through `parts`, which mlcroissant
    # reads only beside the file: a FileSet inside FileObjects gets no column reader).
    record_sets: list[dict[str, Any]] = [
        {
            "@type": "cr:RecordSet",
            "@id": PART_FILES,
            "name": PART_FILES,
            "description": "One record per part; reading them checks every part's sha256.",
            "field": [
                {
                    "@type": "cr:Field",
                    "@id": f"{PART_FILES}/filename",
                    "name": "filename",
                    "dataType": "sc:Text",
                    "source": {"fileSet": {"@id": CHECKED}, "extract": {"fileProperty": "filename"}},
                }
            ],
        }
    ]
    split_in_path = bool(
        info.split_column and info.split_names and manifest.parts and all(p.split for p in manifest.parts)
    )

    stats = stats if stats is not None else column_statistics(table)
    fields: list[dict[str, Any]] = []
    ids = field_ids(manifest.schema.names)
    for f in manifest.schema:
        col = info.columns.get(f.name, {})
        fid = f"{RECORDS}/{ids[f.name]}"
        source: dict[str, Any] = {"fileSet": {"@id": "parts"}, "extract": {"column": f.name}}
        if col.get("semantic") == "image":
            source["transform"] = {"jsonPath": "bytes"}
        entry: dict[str, Any] = {
            "@type": "cr:Field",
            "@id": fid,
            "name": f.name,
            "description": col.get("description") or f"Column {f.name} ({f.type}).",
            "dataType": _data_type(f.type, col.get("semantic")),
            "source": source,
            "coralord:arrowType": str(f.type),
            "coralord:statistics": stats.get(f.name, {}),
        }
        if stats.get(f.name):
            entry["annotation"] = statistics_annotations(fid, stats[f.name])
        if f.name == info.split_column and info.split_names:
            entry["references"] = {"field": {"@id": "splits/name"}}
            if split_in_path:  # the split of a part is in its path: consumers filter parts by it
                names = "|".join(re.escape(n) for n in info.split_names)
                entry["source"] = {
                    "fileSet": {"@id": "parts"},
                    "extract": {"fileProperty": "fullpath"},
                    "transform": {"regex": f"^parts/({names})/.*\\.parquet$"},
                }
        elif col.get("categories"):
            enum = f"{f.name}_classes"
            entry["references"] = {"field": {"@id": f"{enum}/index"}}
            record_sets.append(
                {
                    "@type": "cr:RecordSet",
                    "@id": enum,
                    "name": enum,
                    "description": f"Class names of {f.name}.",
                    "dataType": "sc:Enumeration",
                    "key": {"@id": f"{enum}/index"},
                    "field": [
                        {
                            "@type": "cr:Field",
                            "@id": f"{enum}/index",
                            "name": "index",
                            "dataType": "sc:Integer",
                        },
                        {"@type": "cr:Field", "@id": f"{enum}/name", "name": "name", "dataType": "sc:Text"},
                    ],
                    "data": [
                        {f"{enum}/index": i, f"{enum}/name": n} for i, n in enumerate(col["categories"])
                    ],
                }
            )
        fields.append(entry)
    if info.split_column and info.split_names:
        record_sets.insert(
            0,
            {
                "@type": "cr:RecordSet",
                "@id": "splits",
                "name": "splits",
                "description": "The dataset's splits.",
                "dataType": "cr:Split",
                "key": {"@id": "splits/name"},
                "field": [
                    {"@type": "cr:Field", "@id": "splits/name", "name": "name", "dataType": "sc:Text"},
                    {
                        "@type": "cr:Field",
                        "@id": "splits/url",
                        "name": "url",
                        "dataType": ["sc:URL", "cr:Split"],
                    },
                ],
                "data": [
                    {
                        "splits/name": n,
                        "splits/url": STANDARD_SPLITS.get(n.lower(), f"{CORALORD_NS}split/{n}"),
                    }
                    for n in info.split_names
                ],
            },
        )
    record_sets.append(
        {
            "@type": "cr:RecordSet",
            "@id": RECORDS,
            "name": RECORDS,
            "description": f"The rows of {info.name} v{manifest.version}.",
            "annotation": statistics_annotations(RECORDS, {"count": manifest.rows}),
            "field": fields,
        }
    )

    dataset_stats: dict[str, Any] = {
        "rows": manifest.rows,
        "bytes": manifest.total_bytes,
        "parts": len(manifest.parts),
    }
    if info.split_column and info.split_column in table.column_names:
        dataset_stats["rowsPerSplit"] = _value_counts(table, info.split_column)
    derived = [_parent(d) for d in manifest.derived_from] + [_source(s) for s in manifest.sources]
    if manifest.previous:
        p = manifest.previous
        derived.append(
            {
                "@id": version_iri(p.name, p.version),
                "identifier": p.label,
                "name": f"{p.name} v{p.version}",
                "coralord:contentId": p.content_id,
                "coralord:relation": "previousVersion",
            }
        )
    creator = {
        "@type": "sc:Organization",
        "name": info.creator or "unspecified (set 'creator' in the descriptor)",
    }
    doc: dict[str, Any] = {
        "@context": CONTEXT,
        "@type": "sc:Dataset",
        "@id": version_iri(info.name, manifest.version),
        "conformsTo": CONFORMS_TO,
        "name": info.name,
        "description": info.description,
        "version": manifest.version,
        "cr:sdVersion": manifest.version,
        "datePublished": date_published,
        "dateModified": manifest.created,
        "license": info.license,
        # this version's own address (tools name their builders and caches after it); the upstream
        # home page is what it is based on
        "url": version_iri(info.name, manifest.version),
        **({"isBasedOn": info.url} if info.url else {}),
        "creator": creator,
        "publisher": {"@type": "sc:Organization", "name": info.publisher} if info.publisher else creator,
        "citeAs": info.citation
        or f"{info.name} v{manifest.version} (coralord content id {manifest.content_id})",
        "keywords": list(info.keywords),
        "identifier": f"sha256:{manifest.content_id}",
        "distribution": files,
        "recordSet": record_sets,
        "prov:wasDerivedFrom": derived,
        "prov:wasGeneratedBy": {
            "@type": "prov:Activity",
            "name": f"coralord pipeline of {info.name}",
            "coralord:pipeline": info.pipeline,
            "coralord:codeVersion": manifest.code_version,
            "coralord:runId": manifest.run_id,
            "prov:endedAtTime": manifest.created,
        },
        "coralord:contentId": manifest.content_id,
        "coralord:statistics": dataset_stats,
        "coralord:changes": manifest.changes,
    }
    if info.environment:  # the Docker image it ran in (none: the pipeline ran in-process)
        doc["coralord:environment"] = info.environment
    if manifest.metrics:
        doc["coralord:metrics"] = manifest.metrics
    if manifest.checks:  # the quality checks this version passed before it was published
        doc["coralord:checks"] = manifest.checks
    return doc


def _parent(d: ParentRef) -> dict[str, Any]:
    return {
        "@id": version_iri(d.name, d.version),
        "identifier": d.label,
        "name": f"{d.name} v{d.version}",
        "coralord:contentId": d.content_id,
        "coralord:relation": d.relation,
        **({"coralord:subset": d.subset} if d.subset else {}),
    }


def _source(s: SourceRecord) -> dict[str, Any]:
    out: dict[str, Any] = {"url": s.uri, "name": s.uri, "coralord:sourceKind": s.kind}
    if s.params:
        out["coralord:params"] = s.params
    if s.files:
        out["coralord:files"] = s.files
    if s.fingerprint:
        out["coralord:fingerprint"] = s.fingerprint
    return out


def trim_parts(doc: dict[str, Any], keep: int) -> dict[str, Any]:
    """A copy of ``doc`` with only its first ``keep`` parts (for validating its shape cheaply)."""
    out = json.loads(json.dumps(doc))
    files = [d for d in out["distribution"] if d.get("@type") == "cr:FileObject"][:keep]
    kept = {f["@id"] for f in files}
    sets = [d for d in out["distribution"] if d.get("@type") == "cr:FileSet"]
    for fs in sets:
        if isinstance(fs.get("includes"), list):
            fs["includes"] = fs["includes"][:keep]
        if "containedIn" in fs:
            fs["containedIn"] = [c for c in fs["containedIn"] if c["@id"] in kept]
    out["distribution"] = files + sets
    return out


def dumps(doc: dict[str, Any]) -> str:
    return json_text(doc)


def validate(path: Path | str, mapping: dict[str, str] | None = None) -> None:
    """Load the Croissant with mlcroissant; raise :class:`CroissantError` listing every issue."""
    import mlcroissant as mlc

    # mlcroissant logs per-record warnings at INFO/WARNING; keep our logs readable.
    logging.getLogger("absl").setLevel(logging.ERROR)
    try:
        ds = mlc.Dataset(jsonld=str(path), mapping=mapping)
    except mlc.ValidationError as e:
        raise CroissantError(f"{path}: Croissant does not validate: {e}") from e
    errors = list(ds.metadata.ctx.issues.errors)
    if errors:
        raise CroissantError(f"{path}: Croissant does not validate: " + "; ".join(sorted(errors)))
