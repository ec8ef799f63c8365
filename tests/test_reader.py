"""On-demand partial access: only what is asked for is read, from local or S3 storage."""

import subprocess
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from click.testing import CliRunner

from coralord_dagster.cli import cli
from coralord_dagster.client import open_dataset
from coralord_dagster.croissant import DatasetInfo
from coralord_dagster.registry import Registry
from coralord_dagster.sql import QueryError
from coralord_dagster.workspace import Workspace

from .conftest import BIN, free_port

ROWS = 200_000


def wide_table(rows: int = ROWS, seed: int = 0) -> pa.Table:
    rng = np.random.default_rng(seed)
    cols = {"id": np.arange(rows)}  # clustered: a range predicate on it prunes row groups and parts
    cols |= {f"c{i}": rng.integers(0, 1_000_000, rows) for i in range(8)}
    cols["label"] = rng.integers(0, 10, rows)
    return pa.table(cols)


def publish_wide(ws: Workspace, table: pa.Table):
    # Small parts: a 200k-row table then prunes like the 1M-row one of bench/subset_fetch.py.
    return ws.publisher().publish(
        table, DatasetInfo(name="wide", description="Wide.", license="CC0-1.0"), part_rows=8192
    )


def test_columns_and_predicates_on_local_storage(ws: Workspace):
    table = wide_table(20_000)
    publish_wide(ws, table)
    ds = open_dataset("wide", columns=["id", "c1"], where="label = 3 AND c0 < 500000", workspace=ws)
    got = ds.to_pandas()
    frame = table.to_pandas()
    expected = frame[(frame.label == 3) & (frame.c0 < 500_000)][["id", "c1"]].reset_index(drop=True)
    assert got.equals(expected)
    relation = open_dataset("wide", where="id < 10", workspace=ws).relation()
    assert relation.aggregate("count(*)").fetchall() == [(10,)]


def test_partial_reads_from_s3_read_little_and_cache_everything(s3, tmp_path: Path):
    ws = Workspace.open(tmp_path / "reg", storage="s3://datasets/wide", create=True)
    table = wide_table()
    publish_wide(ws, table)
    full = open_dataset("wide", workspace=ws)
    assert full.to_arrow().equals(table)
    full_bytes = full.last_read.bytes_from_storage
    assert full_bytes >= full.manifest.total_bytes

    ws2 = Workspace.open(ws.registry.path, storage="s3://datasets/wide")
    ws2.cache = type(ws.cache)(tmp_path / "other-cache")  # a consumer with an empty cache
    where = f"id >= {ROWS // 2} AND id < {ROWS // 2 + ROWS // 10}"
    part = open_dataset("wide", columns=["c1", "c2"], where=where, workspace=ws2)
    got = part.to_arrow()
    frame = table.to_pandas()
    expected = frame[(frame.id >= ROWS // 2) & (frame.id < ROWS // 2 + ROWS // 10)][["c1", "c2"]]
    assert got.to_pandas().equals(expected.reset_index(drop=True))
    ratio = part.last_read.bytes_from_storage / full_bytes
    assert 0 < ratio <= 0.15, ratio

    again = open_dataset("wide", columns=["c1", "c2"], where=where, workspace=ws2)
    assert again.to_arrow().equals(got) and again.last_read.bytes_from_storage == 0

    # The cache is keyed by part: a new version that changes a few rows re-reads only its new parts.
    edited = table.set_column(
        3, "c2", pa.array(np.where(np.arange(ROWS) == 5, -1, table.column("c2").to_numpy()))
    )
    result = publish_wide(ws, edited)
    assert str(result.version) == "2.0.0"
    v2 = open_dataset("wide", columns=["c1", "c2"], where=where, workspace=ws2)
    v2.to_arrow()
    # Only the edited part is new, and it lies outside the window: its statistics rule it out, so
    # nothing is read from storage at all; every part in the window comes from the cache.
    assert v2.last_read.parts_from_cache == v2.last_read.parts_read
    assert v2.last_read.bytes_from_storage == 0 and v2.last_read.parts_skipped > 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--where", "nonsense ((("], "invalid predicate"),
        (["--where", "1=1; DROP TABLE x"], "a second statement"),
        (["--columns", "id,nope"], "has no column(s) ['nope']"),
        (["--where", "nope > 1"], "nope"),
        (["--subset", "nosuch"], "dataset 'wide/nosuch' is not in the registry"),
    ],
)
def test_bad_queries_exit_2_and_cache_nothing(s3, tmp_path: Path, args, message):
    ws = Workspace.open(tmp_path / "reg", storage="s3://datasets/wide", create=True)
    publish_wide(ws, wide_table(5000))
    out = tmp_path / "out.parquet"
    result = CliRunner().invoke(
        cli, ["--registry", str(ws.registry.path), "get", "wide", *args, "-o", str(out)]
    )
    assert result.exit_code == 2, result.output
    assert len(result.stderr.strip().splitlines()) == 1 and message in result.stderr
    assert not out.exists()
    assert not (tmp_path / "cache" / "parts").exists() and not (tmp_path / "cache" / "results").exists()


def test_query_errors_are_checked_before_reading(ws: Workspace):
    publish_wide(ws, wide_table(100))
    with pytest.raises(QueryError, match="no column"):
        open_dataset("wide", columns=["zzz"], workspace=ws)


@pytest.fixture
def git_daemon(tmp_path: Path, bare_remote: Path):
    port = free_port()
    proc = subprocess.Popen(
        [
            "git",
            "daemon",
            "--listen=127.0.0.1",
            f"--port={port}",
            "--export-all",
            f"--base-path={tmp_path}",
            "--reuseaddr",
            str(tmp_path),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"git://127.0.0.1:{port}/{bare_remote.name}"
    deadline = time.time() + 15
    while subprocess.run(["git", "ls-remote", url], capture_output=True, check=False).returncode != 0:
        if time.time() > deadline:
            proc.kill()
            raise RuntimeError("git daemon did not start")
        time.sleep(0.1)
    yield url
    proc.terminate()
    proc.wait(timeout=10)


def test_get_from_a_registry_given_as_a_git_url(s3, tmp_path: Path, bare_remote: Path, git_daemon: str):
    ws = Workspace.open(
        tmp_path / "publisher", storage="s3://datasets/reg", create=True, remote=str(bare_remote)
    )
    table = wide_table(30_000)
    publish_wide(ws, table)
    for url in (str(bare_remote), f"file://{bare_remote}", git_daemon):
        cache = tmp_path / f"cache-{abs(hash(url))}"
        env_cmd = ["env", f"CORALORD_CACHE={cache}", str(BIN / "coralord"), "--registry", url]
        out = tmp_path / "fetched.parquet"
        first = subprocess.run(
            [*env_cmd, "get", "wide@v1.0.0", "--columns", "id,label", "-o", str(out)],
            capture_output=True,
            text=True,
            check=False,
        )
        assert first.returncode == 0, first.stderr
        assert pa.parquet.read_table(out).equals(table.select(["id", "label"]))
        assert "0 bytes read from storage" not in first.stderr
        second = subprocess.run(
            [*env_cmd, "get", "wide@v1.0.0", "--columns", "id,label", "-o", str(out)],
            capture_output=True,
            text=True,
            check=False,
        )
        assert second.returncode == 0 and "(0 bytes read from storage" in second.stderr, second.stderr
        assert Registry.open(url, cache_dir=cache).read_only


def test_parts_ruled_out_by_their_statistics_are_never_opened(ws: Workspace):
    from coralord_dagster.pruning import conditions, prune

    publish_wide(ws, wide_table(100_000))
    parts = open_dataset("wide", workspace=ws).manifest.parts
    assert len(parts) > 3 and all(p.stats and "id" in p.stats for p in parts)
    kept = prune(parts, conditions("id >= 10000 AND id < 12000 AND c1 > -5"))
    assert 0 < len(kept) < len(parts) / 2
    assert all(p.stats["id"][1] >= 10000 and p.stats["id"][0] < 12000 for p in kept)
    # What cannot be decided from bounds keeps every part.
    for undecidable in ("id % 7 = 0", "id = 5 OR c1 = 3", "NOT (id = 5)", "lower(CAST(id AS VARCHAR)) = '5'"):
        assert prune(parts, conditions(undecidable)) == parts, undecidable
    assert conditions("2 < id AND label IN (1, 2) AND id BETWEEN 3 AND 9") == [
        ("id", "COMPARE_GREATERTHAN", 2),
        ("label", "IN", [1, 2]),
        ("id", "BETWEEN", (3, 9)),
    ]
    ds = open_dataset("wide", columns=["id"], where="id >= 10000 AND id < 12000", workspace=ws)
    assert ds.to_arrow().column("id").to_pylist() == list(range(10000, 12000))
    assert ds.last_read.parts_skipped == len(parts) - len(kept)
    none = open_dataset("wide", columns=["id"], where="id > 10000000", workspace=ws)
    assert none.to_arrow().num_rows == 0 and none.last_read.parts_read == 0
