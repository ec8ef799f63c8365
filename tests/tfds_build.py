"""Build a Croissant with TensorFlow Datasets' ``CroissantBuilder``, as the docs' recipe does, and print
what TFDS holds as JSON: the builder's name and version, and per split the row count, each feature's
dtype and the rows. Run by tests/test_tfds.py with the interpreter of a separate environment holding
TFDS (its apache-beam needs an older pyarrow than coralord):
``python tfds_build.py CROISSANT DATA_DIR OUT.json`` (TFDS prints to stdout itself).
"""

import json
import sys

import numpy as np
import tensorflow_datasets as tfds
from tensorflow_datasets.core.dataset_builders.croissant_builder import CroissantBuilder


def plain(value):
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, np.ndarray):
        return {"shape": list(value.shape), "dtype": str(value.dtype)}
    if isinstance(value, np.generic):
        return value.item()
    return value


def main(croissant: str, data_dir: str, out_path: str) -> None:
    builder = CroissantBuilder(
        jsonld=croissant,
        record_set_ids=["records"],
        file_format="array_record",
        disable_shuffling=True,
        float_dtype=np.float64,
        data_dir=data_dir,
    )
    builder.download_and_prepare()
    out = {"name": builder.name, "version": str(builder.version), "splits": {}}
    features = builder.info.features
    for split in builder.info.splits:
        source = builder.as_data_source(split=split)
        rows = [{k: plain(v) for k, v in source[i].items()} for i in range(len(source))]
        out["splits"][split] = {
            "rows": rows,
            "dtypes": {k: str(np.dtype(features[k].np_dtype)) for k in features},
        }
    with open(out_path, "w") as f:
        json.dump(out, f)


if __name__ == "__main__":
    tfds.core.utils.gcs_utils._is_gcs_disabled = True  # offline: never ask GCS for prepared data
    main(sys.argv[1], sys.argv[2], sys.argv[3])
