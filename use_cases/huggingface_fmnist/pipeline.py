"""Fashion-MNIST pipeline: the Hub's Parquet files → one table with a ``split`` column."""

from __future__ import annotations

import json

import pyarrow as pa

from coralord_dagster.errors import PipelineError
from coralord_dagster.sources import Source

CLASS_NAMES = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
]


def _class_names(table: pa.Table) -> list[str] | None:
    """Class names from the Hub's ``huggingface`` schema metadata (datasets' ClassLabel feature)."""
    raw = (table.schema.metadata or {}).get(b"huggingface")
    if not raw:
        return None
    features = json.loads(raw).get("info", {}).get("features", {})
    return features.get("label", {}).get("names")


#: The Hugging Face features of the published table (kept in its schema metadata, so that `datasets`
#: reads an Image and a ClassLabel from any file `coralord get` writes).
FEATURES = {
    "image": {"_type": "Image"},
    "label": {"names": CLASS_NAMES, "_type": "ClassLabel"},
    "split": {"dtype": "string", "_type": "Value"},
}


def build(source: Source) -> pa.Table:
    tables = []
    for relpath in source.files:
        split = relpath.split("/")[-2]  # fashion_mnist/<split>/0000.parquet
        table = source.read_parquet(relpath, columns=["image", "label"])
        names = _class_names(table)
        if names is not None and names != CLASS_NAMES:
            raise PipelineError(f"{relpath}: unexpected class names {names}; expected {CLASS_NAMES}")
        table = table.replace_schema_metadata(None)
        table = table.append_column("split", pa.array([split] * table.num_rows, pa.string()))
        tables.append(table)
    hf = json.dumps({"info": {"features": FEATURES}})
    return pa.concat_tables(tables).replace_schema_metadata({"huggingface": hf})
