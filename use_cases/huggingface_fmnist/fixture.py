"""An offline stand-in for the Hub's Fashion-MNIST Parquet files, in the identical layout.

``fashion_mnist/{train,test}/0000.parquet`` with ``image`` = struct{bytes: PNG, path} and ``label``
int64, and the ``huggingface`` schema metadata the Hub writes. Images are real 28x28 grayscale PNGs
drawn per class (deterministic), so every consumer that decodes them works unchanged.
"""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from use_cases.huggingface_fmnist.pipeline import CLASS_NAMES

SPLITS = {"train": 600, "test": 100}


def png_gray(pixels: np.ndarray) -> bytes:
    """Encode a 2-D uint8 array as a grayscale PNG (stdlib only)."""
    h, w = pixels.shape

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data))
            + kind
            + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
        )

    raw = b"".join(b"\x00" + pixels[y].astype(np.uint8).tobytes() for y in range(h))
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(raw, 9))
        + chunk(b"IEND", b"")
    )


def _image(label: int, rng: np.random.Generator) -> np.ndarray:
    yy, xx = np.mgrid[0:28, 0:28]
    # A class-specific shape (bars, rings, blocks) plus noise: distinct per class, varied per row.
    shape = ((xx * (label + 1) + yy * (9 - label)) % (label + 3) == 0) | (
        ((xx - 14) ** 2 + (yy - 14) ** 2) < label * 12
    )
    img = shape * 200 + rng.integers(0, 55, size=(28, 28))
    return img.clip(0, 255).astype(np.uint8)


def split_table(split: str, rows: int, seed: int = 0) -> pa.Table:
    rng = np.random.default_rng([seed, *split.encode()])
    labels = rng.integers(0, 10, size=rows)
    images = [{"bytes": png_gray(_image(int(lab), rng)), "path": None} for lab in labels]
    table = pa.table(
        {
            "image": pa.array(images, pa.struct([("bytes", pa.binary()), ("path", pa.string())])),
            "label": pa.array(labels, pa.int64()),
        }
    )
    hf = {
        "info": {
            "features": {"image": {"_type": "Image"}, "label": {"names": CLASS_NAMES, "_type": "ClassLabel"}}
        }
    }
    return table.replace_schema_metadata({"huggingface": json.dumps(hf)})


def make_fixture(dest: Path | str, splits: dict[str, int] | None = None, seed: int = 0) -> Path:
    """Write the fixture under ``dest`` (idempotent: same seed, same bytes) and return ``dest``."""
    dest = Path(dest)
    for split, rows in (splits or SPLITS).items():
        path = dest / "fashion_mnist" / split / "0000.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        pq.write_table(split_table(split, rows, seed), tmp)
        tmp.replace(path)
    return dest
