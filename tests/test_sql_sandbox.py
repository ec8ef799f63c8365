"""A predicate from someone else (a --where, a subset file of a shared registry) sees only the version's
own columns: hostile ones are refused naming the construct, read no file and write nothing; ordinary
ones still work and still prune parts."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pytest
import yaml
from click.testing import CliRunner

from coralord_dagster.cli import cli
from coralord_dagster.client import open_dataset
from coralord_dagster.croissant import DatasetInfo
from coralord_dagster.descriptor import LoadedSubset, SubsetSpec, load_descriptor
from coralord_dagster.duck import sandboxed_query
from coralord_dagster.sql import QueryError
from coralord_dagster.subsets import publish_subset
from coralord_dagster.use_case import publish_descriptor
from coralord_dagster.workspace import Workspace

SECRET = "canary-secret-7f3a"

# (predicate, what the refusal must name); {canary} is a file only the attacker wants read.
HOSTILE = [
    ("EXISTS (SELECT 1 FROM read_text('{canary}') WHERE content LIKE 'canary%')", "subquery"),
    ("id IN (SELECT length(content) FROM read_text('{canary}'))", "subquery"),
    ("label = (SELECT content FROM read_text('{canary}'))", "subquery"),
    ("EXISTS (FROM read_csv('{canary}'))", "subquery"),
    ("EXISTS (SELECT * FROM read_parquet('{canary}'))", "subquery"),
    ("EXISTS (SELECT * FROM glob('{canary}'))", "subquery"),
    ("id = ANY(SELECT 1 FROM read_blob('{canary}'))", "subquery"),
    ("EXISTS (WITH c AS (SELECT * FROM read_json('{canary}')) SELECT * FROM c)", "subquery"),
    ("read_text('{canary}') IS NOT NULL", "read_text()"),
    ("length(read_blob('{canary}')) > 0", "read_blob()"),
    ("read_csv('{canary}') IS NULL", "read_csv()"),
    ("read_parquet('{canary}') IS NULL", "read_parquet()"),
    ("read_json_auto('{canary}') IS NULL", "read_json_auto()"),
    ("parquet_metadata('{canary}') IS NULL", "parquet_metadata()"),
    ("len(glob('{canary}')) > 0", "glob()"),
    ("getenv('CORALORD_TEST_CANARY') = 'x'", "getenv()"),
    ("label = getenv('HOME')", "getenv()"),
    ("current_setting('home_directory') = ''", "current_setting()"),
    ("getvariable('x') IS NULL", "getvariable()"),
    ("query('SELECT 1') IS NULL", "query()"),
    ("now() > day", "now()"),
    ("random() < 0.5", "random()"),
    ("hash(id) % 2 = 0", "hash()"),
    ("main.read_text('{canary}') IS NULL", "qualified function name"),
    ("sum(id) > 0", "sum()"),
    ("row_number() OVER () < 3", "window function"),
    ("list_transform([1], lambda q: q + 1) = [2]", "list_transform()"),
    ("length(repeat('a', 1000000000)) > 0", "repeat()"),
    ("1=1) UNION ALL (SELECT * FROM read_csv('{canary}')", "UNION"),
    ("1=1; COPY (SELECT 1) TO '{canary}.out'", "second statement"),
    ("COPY t TO '{canary}.out'", "COPY"),
    ("ATTACH '{canary}.db' AS x", "ATTACH"),
    ("1=1; ATTACH '{canary}.db'", "second statement"),
    ("INSTALL httpfs", "INSTALL"),
    ("LOAD httpfs", "LOAD"),
    ("SET enable_external_access = true", "SET"),
    ("PRAGMA version", "PRAGMA"),
    ("CALL duckdb_settings()", "CALL"),
    ("1=1 /* a comment */ ; DROP TABLE t", "second statement"),
    ("1=1 --\n) UNION (SELECT * FROM read_text('{canary}')", "UNION"),
    ("id = 1) OR EXISTS (SELECT 1 FROM read_text('{canary}')", "subquery"),
    ("label = 'x'';' OR EXISTS (SELECT * FROM read_text('{canary}'))", "subquery"),
    ("$$a$$ = label OR EXISTS (SELECT 1 FROM read_text('{canary}'))", "subquery"),
    ("#1 = 1", "positional reference"),
    ("? = 1", "parameter"),
    ("COLUMNS(*) IS NULL", "COLUMNS"),
    ("id = 1 LIMIT 1", "LIMIT"),
    ("1=1) GROUP BY (id", "GROUP"),
    ("nosuch = 1", "unknown column 'nosuch'"),
    ("(" * 2000 + "1" + ")" * 2000, "depth"),
    ("id = 1 " + "OR id = 1 " * 1500, "characters long"),
]

# (predicate, the same rows computed with pyarrow)
LEGIT = [
    ("id = 17", lambda t: pc.equal(t["id"], 17)),
    ("id IN (3, 5, 900)", lambda t: pc.is_in(t["id"], pa.array([3, 5, 900]))),
    (
        "id BETWEEN 100 AND 199",
        lambda t: pc.and_(pc.greater_equal(t["id"], 100), pc.less_equal(t["id"], 199)),
    ),
    ("label LIKE 'b%'", lambda t: pc.starts_with(t["label"], "b")),
    ("id * 2 + 1 > 1990", lambda t: pc.greater(t["id"], 994)),
    (
        "score >= 0.5 AND NOT (label = 'a')",
        lambda t: pc.and_(pc.greater_equal(t["score"], 0.5), pc.not_equal(t["label"], "a")),
    ),
    (
        "year(day) = 2021 AND month(day) = 1",
        lambda t: pc.and_(pc.equal(pc.year(t["day"]), 2021), pc.equal(pc.month(t["day"]), 1)),
    ),
    ("day >= DATE '2021-06-01'", lambda t: pc.greater_equal(t["day"], pa.scalar(dt.date(2021, 6, 1)))),
    ("date_trunc('month', day) = DATE '2021-02-01'", lambda t: pc.equal(pc.month(t["day"]), 2)),
    ("upper(label) = 'C' OR label IS NULL", lambda t: pc.equal(t["label"], "c")),
    ("label ILIKE 'A'", lambda t: pc.equal(t["label"], "a")),
]


def table(rows: int = 1000) -> pa.Table:
    start = dt.date(2021, 1, 1)
    return pa.table(
        {
            "id": pa.array(range(rows), pa.int64()),
            "label": pa.array(["abc"[i % 3] for i in range(rows)]),
            "day": pa.array([start + dt.timedelta(days=i * 365 // rows) for i in range(rows)], pa.date32()),
            "score": pa.array([(i * 37 % 100) / 100 for i in range(rows)]),
        }
    )


@pytest.fixture
def canary(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A secret file whose access time moves on any read (relatime updates it when older than mtime)."""
    monkeypatch.setenv("CORALORD_TEST_CANARY", SECRET)
    path = tmp_path / "secret.txt"
    path.write_text(SECRET + "\n")
    _age(path)
    return path


def _age(path: Path) -> None:
    st = path.stat()
    os.utime(path, ns=(st.st_mtime_ns - 3 * 86400 * 10**9, st.st_mtime_ns))


def _atime(path: Path) -> int:
    return path.stat().st_atime_ns


def _tree(root: Path) -> dict[str, int]:
    return {str(p): p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file()}


@pytest.fixture
def registry(tmp_path: Path) -> Workspace:
    ws = Workspace.open(tmp_path / "reg", create=True)
    info = DatasetInfo(name="sandboxed", description="Predicates under test.", license="CC0-1.0")
    ws.publisher().publish(table(), info, part_rows=100)
    return ws


def test_the_canary_detects_a_read(canary: Path):
    """The observation the refusals rely on: a read of the canary moves its access time."""
    before = _atime(canary)
    duckdb.connect().execute(f"SELECT content FROM read_text('{canary}')").fetchall()
    assert _atime(canary) != before


@pytest.mark.parametrize(("where", "named"), HOSTILE, ids=[f"hostile{i}" for i in range(len(HOSTILE))])
def test_hostile_where_is_refused_reads_and_writes_nothing(registry: Workspace, canary: Path, where, named):
    where = where.format(canary=canary)
    out = canary.parent / "out.parquet"
    root = canary.parent
    before, atime = _tree(root), _atime(canary)
    result = CliRunner().invoke(
        cli, ["--registry", str(registry.registry.path), "get", "sandboxed", "--where", where, "-o", str(out)]
    )
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and named in lines[0] and "Traceback" not in result.output, result.stderr
    assert SECRET not in result.output
    assert _atime(canary) == atime, "the canary was read"
    assert _tree(root) == before, "something was written"
    # the Python API refuses it the same way, before any read
    with pytest.raises(QueryError, match="predicate"):
        open_dataset("sandboxed", where=where, workspace=registry).to_arrow()
    assert _atime(canary) == atime and not list(root.glob("secret.txt.*"))


@pytest.mark.parametrize(("where", "expected"), LEGIT, ids=[w for w, _ in LEGIT])
def test_ordinary_predicates_work_and_prune(registry: Workspace, where, expected):
    data = table()
    ds = open_dataset("sandboxed", where=where, workspace=registry)
    got = ds.to_arrow()
    want = data.filter(expected(data))
    assert got.column("id").to_pylist() == want.column("id").to_pylist()


def test_a_clustered_predicate_still_skips_parts(registry: Workspace):
    ds = open_dataset("sandboxed", where="id BETWEEN 100 AND 199", workspace=registry)
    assert ds.to_arrow().num_rows == 100
    assert ds.last_read.parts_skipped > 0 and ds.last_read.parts_read <= 2


def test_the_second_wall_reads_nothing_even_unchecked(canary: Path):
    """Should a predicate ever pass the parser's check, the connection it runs on reads no file."""
    t = table(10)
    for sql in (
        f"SELECT * FROM t WHERE EXISTS (SELECT 1 FROM read_text('{canary}'))",
        f"SELECT * FROM read_csv('{canary}')",
        "SELECT getenv('CORALORD_TEST_CANARY')",
        f"COPY t TO '{canary}.out'",
        "SET enable_external_access = true",
    ):
        with pytest.raises(duckdb.Error):
            sandboxed_query(t, sql)
    assert not canary.with_name("secret.txt.out").exists()


def _use_case_with_subset(use_case: Path, name: str, where: str) -> Path:
    (use_case / "subsets" / f"{name}.yaml").write_text(
        yaml.safe_dump({"description": "hostile", "where": where})
    )
    return use_case


# Which columns exist is known when the subset is built from its parent (refused then, below).
CONSTRUCTS = [(w, n) for w, n in HOSTILE if "unknown column" not in n]


@pytest.mark.parametrize(("where", "named"), CONSTRUCTS, ids=[f"hostile{i}" for i in range(len(CONSTRUCTS))])
def test_hostile_subset_file_is_refused_by_validate(use_case_copy: Path, canary: Path, where, named):
    where = where.format(canary=canary)
    _use_case_with_subset(use_case_copy, "evil", where)
    atime = _atime(canary)
    result = CliRunner().invoke(cli, ["validate", str(use_case_copy)])
    assert result.exit_code == 2, result.output
    assert "evil" in result.stderr and named in result.stderr and "Traceback" not in result.output
    assert _atime(canary) == atime


def test_hostile_subsets_are_refused_at_build_and_publish_nothing(fmnist, ws: Workspace, canary: Path):
    publish_descriptor(fmnist, ws)
    versions = ws.registry.all_versions()
    atime = _atime(canary)
    for i, (where, named) in enumerate(HOSTILE):
        where = where.format(canary=canary)
        spec = SubsetSpec(name=f"evil{i}", where=where)
        sub = LoadedSubset(fmnist.name, spec, fmnist.folder / "subsets" / f"evil{i}.yaml", where)
        with pytest.raises(QueryError) as e:
            publish_subset(fmnist, sub, ws)
        assert named in str(e.value)
    assert ws.registry.all_versions() == versions
    assert _atime(canary) == atime
    assert not list(canary.parent.glob("secret.txt.*"))


def test_descriptor_subsets_still_validate(use_case_copy: Path):
    result = CliRunner().invoke(cli, ["validate", str(use_case_copy)])
    assert result.exit_code == 0, result.output
    assert f"{len(list((use_case_copy / 'subsets').glob('*.yaml')))} subset(s)" in result.output
    assert load_descriptor(use_case_copy).name == "fashion_mnist"
