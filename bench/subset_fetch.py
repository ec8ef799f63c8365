"""Bytes read for a subset fetch vs a full download, from an S3 server, counted at the fsspec layer.

Publishes a 10-column table (default 1,000,000 rows) to a moto S3 server process started here on
127.0.0.1, then reads it three ways with empty caches:

- full download of the version (every part, whole);
- a ~10% subset: 2 columns, a range predicate on a clustered column (``ts``, like a time window);
- the same 2 columns with a ~10% predicate on an unclustered column (``label``), for comparison.

Run: ``python bench/subset_fetch.py [ROWS]`` (needs the ``test`` extra for moto and s3fs).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pyarrow as pa
from scratch import scratch_dir  # bench/ is on sys.path when a script runs


def start_s3() -> tuple[subprocess.Popen[bytes], str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = Path(sys.executable).parent / "moto_server"
    proc = subprocess.Popen(
        [str(server), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            urllib.request.urlopen(endpoint + "/moto-api/", timeout=1)
            return proc, endpoint
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("moto_server did not start")


def make_table(rows: int) -> pa.Table:
    rng = np.random.default_rng(0)
    cols: dict[str, object] = {"ts": np.arange(rows, dtype=np.int64)}  # clustered, like a timestamp
    cols |= {f"x{i}": rng.normal(size=rows) for i in range(7)}
    cols["count"] = rng.integers(0, 1_000_000, rows)
    cols["label"] = rng.integers(0, 10, rows)
    return pa.table(cols)


def main() -> None:
    rows = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    proc, endpoint = start_s3()
    tmp = scratch_dir("coralord-bench-")
    os.environ.update(
        {
            "AWS_ACCESS_KEY_ID": "bench",
            "AWS_SECRET_ACCESS_KEY": "bench",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ENDPOINT_URL": endpoint,
            "CORALORD_CACHE": str(tmp / "cache"),
        }
    )
    try:
        import s3fs

        from coralord_dagster.client import open_dataset
        from coralord_dagster.croissant import DatasetInfo
        from coralord_dagster.reader import PartCache
        from coralord_dagster.workspace import Workspace

        s3fs.S3FileSystem().mkdir("bench")
        ws = Workspace.open(tmp / "registry", storage="s3://bench/coralord", create=True)
        table = make_table(rows)
        t0 = time.perf_counter()
        result = ws.publisher().publish(
            table, DatasetInfo(name="wide", description="Bench.", license="CC0-1.0")
        )
        publish_s = time.perf_counter() - t0

        def fetch(label: str, **query: object) -> tuple[int, int, float]:
            ws.cache = PartCache(tmp / f"cache-{label}")  # every fetch starts with an empty cache
            ds = open_dataset("wide", workspace=ws, **query)  # type: ignore[arg-type]
            t = time.perf_counter()
            out = ds.to_arrow()
            return ds.last_read.bytes_from_storage, out.num_rows, time.perf_counter() - t

        window = f"ts >= {rows // 2} AND ts < {rows // 2 + rows // 10}"
        full_b, full_n, full_s = fetch("full")
        sub_b, sub_n, sub_s = fetch("window", columns=["x0", "count"], where=window)
        lab_b, lab_n, lab_s = fetch("label", columns=["x0", "count"], where="label = 3")
        print(
            f"rows={rows} columns=10 parts={len(result.manifest.parts)} "
            f"stored={result.manifest.total_bytes} B "
            f"(publish {publish_s:.2f} s)"
        )
        print(f"full download         : {full_b:>12,} B  {full_n:>9,} rows  {full_s:.2f} s")
        print(
            f"subset, clustered 10% : {sub_b:>12,} B  {sub_n:>9,} rows  {sub_s:.2f} s  "
            f"ratio {sub_b / full_b:.3f} (goal <= 0.15)"
        )
        print(
            f"subset, scattered 10% : {lab_b:>12,} B  {lab_n:>9,} rows  {lab_s:.2f} s  "
            f"ratio {lab_b / full_b:.3f}"
        )
        ws.cache = PartCache(tmp / "cache-window")
        again = open_dataset("wide", workspace=ws, columns=["x0", "count"], where=window)
        again.to_arrow()
        print(f"same subset again     : {again.last_read.bytes_from_storage:>12,} B  (from the local cache)")
    finally:
        proc.terminate()
        proc.wait(timeout=10)


if __name__ == "__main__":
    main()
