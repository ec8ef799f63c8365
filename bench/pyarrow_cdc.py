"""Row-level parts vs pyarrow's Parquet content-defined chunking (CDC), on the P3 edit.

pyarrow (``use_content_defined_chunking=True``) cuts *data pages* by content, so that an edited file
shares most of its bytes with the previous one -- but only a store that deduplicates byte chunks
inside files (such as Hugging Face's Xet) can reuse them; a plain file or object store stores the
whole new file. coralord cuts *files* (parts) by row content, so reuse works on any fsspec store and
every reader sees ordinary Parquet files.

This script measures, for the same 1% edit as ``edit_storage.py`` (default 1,000,000 rows):

- coralord's parts: new bytes ÷ one version (what any store adds);
- one Parquet file per version, with and without pyarrow CDC, stored in a byte-chunk deduplicating
  store (gear-hash CDC over the file bytes, ~64 KiB chunks, as Xet does): new chunk bytes ÷ one
  version; and the same single file on a plain store (adds 100%);
- the write-time cost of pyarrow CDC ÷ a plain ``write_table``.

Run: ``python bench/pyarrow_cdc.py [ROWS]``.
"""

from __future__ import annotations

import hashlib
import io
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).parent))
from edit_storage import one_percent_edit  # noqa: E402
from publish import make_table  # noqa: E402
from scratch import scratch_dir  # noqa: E402

from coralord_dagster.chunking import Chunking  # noqa: E402
from coralord_dagster.publish import dictionary_columns  # noqa: E402
from coralord_dagster.store import PartStore  # noqa: E402

_GEAR = np.random.default_rng(7).integers(0, 2**32, 256, dtype=np.uint64).astype(np.uint32)


def byte_chunks(
    data: bytes, avg_bits: int = 16, min_size: int = 8 * 1024, max_size: int = 128 * 1024
) -> list[bytes]:
    """Gear-hash content-defined chunks of ``data`` (32-byte window, average 2**avg_bits bytes)."""
    b = np.frombuffer(data, dtype=np.uint8)
    g = _GEAR[b]
    h = np.zeros(len(b), dtype=np.uint32)
    for k in range(32):  # h_i = sum_k gear[b_{i-k}] << k (mod 2**32): the gear hash, vectorized
        h[k:] += g[: len(b) - k] << np.uint32(k)
    mask = np.uint32(((1 << avg_bits) - 1) << (32 - avg_bits))
    candidates = np.flatnonzero((h & mask) == 0) + 1
    cuts, start = [], 0
    for c in candidates.tolist():
        while c - start > max_size:
            start += max_size
            cuts.append(start)
        if c - start >= min_size:
            cuts.append(c)
            start = c
    cuts.append(len(b))
    edges = [0, *cuts]
    return [data[a:z] for a, z in zip(edges, edges[1:], strict=False) if z > a]


def dedup_added(first: bytes, second: bytes) -> float:
    """Bytes of ``second``'s chunks not among ``first``'s, ÷ len(first)."""
    seen = {hashlib.sha256(c).digest() for c in byte_chunks(first)}
    new = sum(len(c) for c in byte_chunks(second) if hashlib.sha256(c).digest() not in seen)
    return new / len(first)


def write(table: pa.Table, cdc: bool) -> tuple[bytes, float]:
    buf = io.BytesIO()
    t0 = time.perf_counter()
    pq.write_table(table, buf, use_content_defined_chunking=cdc)
    return buf.getvalue(), time.perf_counter() - t0


def main() -> None:
    rows = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    table = make_table(rows)
    edited = one_percent_edit(table)
    print(f"{rows:,} rows x 10 columns; 1% edit at 10 places: storage added ÷ one version (goal <= 5%)")

    store = PartStore(scratch_dir("coralord-bench-cdc-"))
    chunking = Chunking.for_table(table)
    first, _ = store.write_table(table, chunking, None, dictionary_columns(table))
    _, stats = store.write_table(edited, chunking, None, dictionary_columns(edited))
    size = sum(p.bytes for p in first)
    print(
        f"  coralord row-CDC parts, any store ({len(first)} parts):        {stats.bytes_written / size:6.1%}"
    )

    for cdc in (False, True):
        a, ta = write(table, cdc)
        b, _ = write(edited, cdc)
        label = "with pyarrow CDC   " if cdc else "without pyarrow CDC"
        print(f"  one file {label}, byte-dedup store (Xet-like): {dedup_added(a, b):6.1%}")
    print("  one file, plain file or object store:                100.0%")

    plain = min(write(table, False)[1] for _ in range(3))
    cdc_time = min(write(table, True)[1] for _ in range(3))
    print(
        f"write time with pyarrow CDC ÷ plain write_table: {cdc_time / plain:.2f} "
        f"({cdc_time:.2f} s vs {plain:.2f} s)"
    )


if __name__ == "__main__":
    main()
