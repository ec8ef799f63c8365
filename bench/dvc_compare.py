"""P8: publishing and fetching 10 versions (1% edits each) with DVC vs coralord, on the same data.

DVC (installed in the bench environment only, e.g. ``python -m venv /tmp/dvc && /tmp/dvc/bin/pip
install dvc``; pass its executable with ``DVC=/tmp/dvc/bin/dvc``) versions one Parquet file:
``write_table`` + ``dvc add`` + ``git commit`` + ``dvc push`` to a local remote per version, and
``dvc get --rev`` to fetch. coralord publishes the same tables (default parts, and ``part_rows=8192``)
and fetches with ``open_dataset(...).write()``. Storage is what the remote / part store holds after 10
versions. Run: ``DVC=... python bench/dvc_compare.py [ROWS]``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).parent))
from edit_storage import one_percent_edit  # noqa: E402
from publish import make_table  # noqa: E402
from scratch import scratch_dir  # noqa: E402

VERSIONS = 10


def run(cmd: list[str], cwd: Path) -> None:
    subprocess.run(cmd, cwd=cwd, check=True, capture_output=True)


def size_of(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink())


def versions(rows: int) -> list[pa.Table]:
    tables = [make_table(rows)]
    for k in range(1, VERSIONS):
        tables.append(one_percent_edit(tables[-1], seed=k))
    return tables


def bench_dvc(dvc: str, tables: list[pa.Table], tmp: Path) -> tuple[float, float, int]:
    repo, remote = tmp / "dvc-repo", tmp / "dvc-remote"
    repo.mkdir()
    remote.mkdir()
    run(["git", "init", "-q", "-b", "main"], repo)
    run(["git", "config", "user.email", "bench@example.org"], repo)
    run(["git", "config", "user.name", "bench"], repo)
    run([dvc, "init", "-q"], repo)
    run([dvc, "remote", "add", "-d", "local", str(remote)], repo)
    run(["git", "commit", "-qam", "init"], repo)
    t0 = time.perf_counter()
    for k, table in enumerate(tables):
        pq.write_table(table, repo / "data.parquet")
        run([dvc, "add", "-q", "data.parquet"], repo)
        run(["git", "add", "data.parquet.dvc", ".gitignore"], repo)
        run(["git", "commit", "-qm", f"v{k}"], repo)
        run(["git", "tag", f"v{k}"], repo)
        run([dvc, "push", "-q"], repo)
    publish_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    run([dvc, "get", str(repo), "data.parquet", "--rev", "v5", "-o", str(tmp / "dvc-get.parquet")], tmp)
    fetch_s = time.perf_counter() - t0
    return publish_s, fetch_s, size_of(remote)


def bench_coralord(tables: list[pa.Table], tmp: Path, part_rows: int | None) -> tuple[float, float, int]:
    from coralord_dagster.client import open_dataset
    from coralord_dagster.croissant import DatasetInfo
    from coralord_dagster.workspace import Workspace

    ws = Workspace.open(tmp / f"coralord-{part_rows}" / "registry", create=True)
    ws.publisher().publish(pa.table({"warm": [1]}), DatasetInfo(name="warmup", description="w", license="x"))
    info = DatasetInfo(name="bench", description="DVC comparison.", license="CC0-1.0")
    t0 = time.perf_counter()
    for table in tables:
        ws.publisher().publish(table, info, part_rows=part_rows)
    publish_s = time.perf_counter() - t0
    label = ws.registry.versions("bench")[VERSIONS - 1 - 5].label  # the 6th version, like --rev v5
    t0 = time.perf_counter()
    open_dataset(f"bench@{label}", workspace=ws).write(tmp / f"coralord-get-{part_rows}.parquet")
    fetch_s = time.perf_counter() - t0
    return publish_s, fetch_s, size_of(Path(ws.store.url) / "parts")


def main() -> None:
    rows = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    dvc = os.environ.get("DVC") or shutil.which("dvc")
    if not dvc:
        sys.exit(
            "needs DVC: python -m venv /tmp/dvc && /tmp/dvc/bin/pip install dvc; then DVC=/tmp/dvc/bin/dvc"
        )
    tmp = scratch_dir("coralord-bench-dvc-")
    tables = versions(rows)
    print(f"{VERSIONS} versions of {rows:,} rows x 10 columns, 1% edits at 10 places between versions")
    d_pub, d_get, d_size = bench_dvc(dvc, tables, tmp)
    print(f"DVC              : publish {d_pub:6.2f} s, fetch {d_get:5.2f} s, remote {d_size:>13,} B")
    for part_rows in (None, 8192):
        c_pub, c_get, c_size = bench_coralord(tables, tmp, part_rows)
        label = "coralord default" if part_rows is None else f"coralord {part_rows}"
        print(
            f"{label:<17}: publish {c_pub:6.2f} s, fetch {c_get:5.2f} s, parts  {c_size:>13,} B  -> "
            f"time {c_pub / d_pub:.2f}x DVC (goal <= 0.5), fetch {c_get / d_get:.2f}x, "
            f"storage {c_size / d_size:.2f}x DVC (goal <= 1)"
        )


if __name__ == "__main__":
    main()
