"""The Croissant follows the 1.1 text: the full context, creator, cr:sdVersion, an @id per version, typed
dates, numeric widths, and lineage as links between versions' IRIs."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import mlcroissant as mlc
import pyarrow as pa
import pytest
from pyld import jsonld

from coralord_dagster.croissant import CONTEXT, DatasetInfo, version_iri
from coralord_dagster.descriptor import load_subsets
from coralord_dagster.subsets import publish_subset
from coralord_dagster.use_case import publish_descriptor
from coralord_dagster.workspace import Workspace

from .conftest import BIN

SDO = "https://schema.org/"
PROV = "http://www.w3.org/ns/prov#"
XSD = "http://www.w3.org/2001/XMLSchema#"


def croissant_of(ws: Workspace, name: str) -> Path:
    return ws.registry.path / "datasets" / name.replace("/", "/subsets/") / "croissant.json"


def test_the_context_is_the_standard_one_and_validate_is_quiet(ws: Workspace):
    from mlcroissant._src.core.context import Context, CroissantVersion
    from mlcroissant._src.core.rdf import make_context

    standard = make_context(Context(conforms_to=CroissantVersion.V_1_1))
    assert {k: CONTEXT[k] for k in standard} == standard
    info = DatasetInfo(name="quiet", description="d", license="CC0-1.0", creator="Team A")
    ws.publisher().publish(pa.table({"x": [1, 2]}), info)
    out = subprocess.run(
        [str(BIN / "mlcroissant"), "validate", "--jsonld", str(croissant_of(ws, "quiet"))],
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "not standard" not in out.stdout + out.stderr and "WARNING" not in out.stdout + out.stderr


def test_identity_creator_version_types_and_typed_dates(ws: Workspace):
    table = pa.table(
        {
            "i8": pa.array([1], pa.int8()),
            "u32": pa.array([1], pa.uint32()),
            "i64": pa.array([1], pa.int64()),
            "f32": pa.array([1.5], pa.float32()),
            "f64": pa.array([1.5], pa.float64()),
            "b": [True],
            "s": ["a"],
        }
    )
    info = DatasetInfo(
        name="typed", description="d", license="CC0-1.0", url="https://upstream.example/t", creator="Team A"
    )
    ws.publisher().publish(table, info)
    path = croissant_of(ws, "typed")
    doc = json.loads(path.read_text())
    assert doc["@id"] == doc["url"] == version_iri("typed", "1.0.0")
    assert doc["isBasedOn"] == "https://upstream.example/t"  # the upstream, not this version's address
    assert doc["creator"]["name"] == "Team A" and doc["publisher"]["name"] == "Team A"
    md = mlc.Dataset(jsonld=str(path)).metadata
    assert md.sd_version == "1.0.0" and md.creators[0].name == "Team A"
    types = {f.name: str(f.data_types[0]).rsplit("/", 1)[1] for f in md.record_sets[-1].fields}
    assert types == {
        "i8": "Int8",
        "u32": "UInt32",
        "i64": "Int64",
        "f32": "Float32",
        "f64": "Float64",
        "b": "Boolean",
        "s": "Text",
    }
    (node,) = [n for n in jsonld.expand(doc) if n.get("@id") == doc["@id"]]
    assert node[SDO + "datePublished"][0]["@type"] == SDO + "Date"
    assert node[SDO + "dateModified"][0]["@type"] == SDO + "DateTime"
    generated = node[PROV + "wasGeneratedBy"][0]
    assert generated[PROV + "endedAtTime"][0]["@type"] == XSD + "dateTime"


def test_a_subset_links_to_its_parent_versions_iri(fmnist, ws: Workspace):
    parent = publish_descriptor(fmnist, ws)
    sub = next(s for s in load_subsets(fmnist) if s.spec.name == "pullover")
    result = publish_subset(fmnist, sub, ws)
    parent_doc = json.loads(croissant_of(ws, "fashion_mnist").read_text())
    sub_doc = json.loads(croissant_of(ws, result.name).read_text())
    assert parent_doc["@id"] == version_iri("fashion_mnist", parent.version)
    (node,) = [n for n in jsonld.expand(sub_doc) if n.get("@id") == sub_doc["@id"]]
    linked = [d["@id"] for d in node[PROV + "wasDerivedFrom"] if "@id" in d]
    assert parent_doc["@id"] in linked
    assert sub_doc["@id"] != parent_doc["@id"] and sub_doc["url"] != parent_doc["url"]


def test_mlcroissant_checks_every_parts_sha256(ws: Workspace):
    """Reading the part_files records hashes every part: a tampered part fails on its sha256."""
    import pyarrow.parquet as pq

    info = DatasetInfo(name="checked", description="d", license="CC0-1.0")
    result = ws.publisher().publish(pa.table({"id": list(range(3000))}), info, part_rows=500)
    path = croissant_of(ws, "checked")
    assert len(list(mlc.Dataset(jsonld=str(path)).records("part_files"))) == len(result.manifest.parts)
    assert [r["records/id"] for r in mlc.Dataset(jsonld=str(path)).records("records")] == list(range(3000))
    victim = Path(ws.store.part_path(result.manifest.parts[1].sha256))
    victim.chmod(0o644)
    pq.write_table(pa.table({"id": list(range(500))}), victim)  # valid Parquet, other content
    with pytest.raises(mlc.GenerationError, match=r"Download\(part-00001\)") as e:
        list(mlc.Dataset(jsonld=str(path)).records("part_files"))
    assert "Hash of downloaded file" in str(e.value.__cause__)


def test_statistics_are_croissant_annotations(ws: Workspace):
    """The spec's annotation mechanism ("Statistics"): the row count on the record set, each column's
    on its field, typed by the spec's vocabulary terms, readable as linked data."""
    # a column named like a statistic: annotations' @ids never collide with fields'
    table = pa.table({"x": [1.0, 2.0, 6.0, None], "s": ["a", "b", "b", "c"], "count": [1, 2, 3, 4]})
    ws.publisher().publish(table, DatasetInfo(name="annotated", description="d", license="CC0-1.0"))
    doc = json.loads(croissant_of(ws, "annotated").read_text())
    records = next(rs for rs in doc["recordSet"] if rs["@id"] == "records")
    assert records["annotation"] == [
        {
            "@type": "cr:Field",
            "@id": "records#count",
            "name": "count",
            "value": 4,
            "dataType": "http://www.wikidata.org/entity/Q4049983",
        }
    ]
    x = {a["name"]: a for a in records["field"][0]["annotation"]}
    assert x["mean"]["value"] == 3.0 and x["mean"]["dataType"] == "ddi-stats:7975ed0"
    assert x["max"]["value"] == 6.0 and x["max"]["equivalentProperty"] == "sc:maxValue"
    assert x["min"]["value"] == 1.0 and x["nulls"]["value"] == 1
    assert {a["name"] for a in records["field"][1]["annotation"]} == {"count", "distinct", "nulls"}
    ids = [a["@id"] for f in records["field"] for a in f["annotation"]] + [f["@id"] for f in records["field"]]
    assert len(ids) == len(set(ids)) and "records/count" in ids and "records#count" not in ids
    expanded = jsonld.flatten(doc)
    (mean,) = [n for n in expanded if n.get("@id", "").endswith("records/x#mean")]
    assert mean[SDO + "value"][0]["@value"] == 3.0
    assert mean["http://mlcommons.org/croissant/dataType"][0]["@id"] == (
        "http://rdf-vocabulary.ddialliance.org/cv/SummaryStatisticType/2.1.2/7975ed0"
    )
    ds = mlc.Dataset(jsonld=str(croissant_of(ws, "annotated")))
    assert not ds.metadata.ctx.issues.errors and not ds.metadata.ctx.issues.warnings
    assert [r["records/x"] for r in ds.records("records")][:3] == [1.0, 2.0, 6.0]
