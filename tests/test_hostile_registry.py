"""A registry may come from someone else: an edited manifest or Croissant, planted symlinks and pipeline
code in it are refused or inert; nothing outside the storage is read, nothing outside the output written."""

from __future__ import annotations

import json
import os
from pathlib import Path

import git
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from coralord_dagster.cli import cli
from coralord_dagster.client import open_dataset
from coralord_dagster.croissant import DatasetInfo
from coralord_dagster.errors import CoralordError
from coralord_dagster.workspace import Workspace

NAME = "shared"
TAG = f"{NAME}-v1.0.0"


@pytest.fixture
def registry(tmp_path: Path) -> Workspace:
    ws = Workspace.open(tmp_path / "reg", create=True)
    table = pa.table({"id": list(range(500)), "label": ["ab"[i % 2] for i in range(500)]})
    ws.publisher().publish(
        table, DatasetInfo(name=NAME, description="Shared.", license="CC0-1.0"), part_rows=100
    )
    return ws


@pytest.fixture
def secret(tmp_path: Path) -> Path:
    """A Parquet file outside the storage that an edited manifest points at, aged so a read shows."""
    path = tmp_path / "private" / "secret.parquet"
    path.parent.mkdir()
    pq.write_table(pa.table({"id": [-1], "label": ["secret"]}), path)
    st = path.stat()
    os.utime(path, ns=(st.st_mtime_ns - 3 * 86400 * 10**9, st.st_mtime_ns))
    return path


def edit_version(ws: Workspace, rel: str, edit) -> None:  # type: ignore[no-untyped-def]
    """Rewrite one file of the published version and move its tag there, as a hostile writer could."""
    repo = git.Repo(ws.registry.path)
    path = ws.registry.path / "datasets" / NAME / rel
    doc = json.loads(path.read_text())
    edit(doc)
    path.write_text(json.dumps(doc, indent=2))
    repo.index.add([str(path)])
    repo.index.commit(f"edit {rel}")
    repo.git.tag("-f", TAG)


def cli_get(ws: Workspace, *args: str) -> tuple[int, str, str]:
    r = CliRunner().invoke(cli, ["--registry", str(ws.registry.path), "get", NAME, *args])
    return r.exit_code, r.stdout, r.stderr


def _part0(key: str, value_of):  # type: ignore[no-untyped-def]
    def edit(doc):  # type: ignore[no-untyped-def]
        doc["parts"][0][key] = value_of(doc["parts"][0])

    return edit


def _top(key: str, value: str):  # type: ignore[no-untyped-def]
    def edit(doc):  # type: ignore[no-untyped-def]
        doc[key] = value

    return edit


@pytest.mark.parametrize(
    "edit",
    [
        _top("name", "../../private"),
        _top("version", "1.0.0/../../x"),
        _part0("url", lambda p: "file:///etc/passwd"),
        _part0("url", lambda p: p["url"].replace("/parts/", "/parts/../../private/")),
        _part0("url", lambda p: "s3://another-bucket/x.parquet"),
        _part0("sha256", lambda p: "../../../private/secret"),
        _part0("sha256", lambda p: "../" * 8 + "tmp/x"),
    ],
    ids=[
        "dotdot-name",
        "dotdot-version",
        "file-url",
        "dotdot-url",
        "other-bucket",
        "dotdot-sha",
        "deep-dotdot-sha",
    ],
)
def test_a_manifest_pointing_outside_storage_is_refused_before_any_read(registry, secret, tmp_path, edit):
    atime = secret.stat().st_atime_ns
    edit_version(registry, "manifest.json", edit)
    out = tmp_path / "out.parquet"
    for args in ([], ["--columns", "id"], ["--where", "id > 3"]):
        code, stdout, stderr = cli_get(registry, *args, "-o", str(out))
        assert code == 1, stdout + stderr
        assert len(stderr.strip().splitlines()) == 1 and "Traceback" not in stdout + stderr
        assert "manifest" in stderr
        assert not out.exists()
    with pytest.raises(CoralordError):
        open_dataset(NAME, workspace=Workspace.open(registry.registry.path)).to_arrow()
    assert secret.stat().st_atime_ns == atime, "a file outside the storage was read"


def test_a_croissant_listing_a_foreign_file_is_refused_by_local_copy(registry, tmp_path):
    def edit(doc):  # type: ignore[no-untyped-def]
        doc["distribution"][1]["sha256"] = "0" * 64
        doc["distribution"][1]["contentUrl"] = "file:///etc/passwd"

    edit_version(registry, "croissant.json", edit)
    with pytest.raises(CoralordError, match="not a part of its manifest"):
        open_dataset(NAME, workspace=Workspace.open(registry.registry.path)).local_copy(tmp_path / "copy")
    assert not (tmp_path / "copy" / "croissant.json").exists()


def test_get_output_replaces_a_symlink_and_never_follows_one(registry, tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    out = tmp_path / "out.parquet"
    out.symlink_to(victim)
    # and the temporary names an older version used, planted in advance
    (tmp_path / ".out.parquet.tmp").symlink_to(victim)
    code, stdout, stderr = cli_get(registry, "-o", str(out))
    assert code == 0, stdout + stderr
    assert victim.read_text() == "precious\n"
    assert not out.is_symlink() and pq.read_table(out).num_rows == 500
    copy = tmp_path / "copy"
    (copy / "parts").mkdir(parents=True)
    (copy / "croissant.json").symlink_to(victim)
    first = open_dataset(NAME, workspace=registry).manifest.parts[0]
    from coralord_dagster.croissant import part_link_name

    (copy / part_link_name(0, first.sha256)).symlink_to(victim)
    open_dataset(NAME, workspace=registry).local_copy(copy)
    assert victim.read_text() == "precious\n"
    assert not (copy / "croissant.json").is_symlink()
    assert pq.read_table(copy / part_link_name(0, first.sha256)).num_rows == first.rows


def test_pipeline_code_in_a_registry_is_never_run_by_readers(registry, tmp_path):
    """Readers never import code from a registry: a planted pipeline and descriptor stay inert."""
    canary = tmp_path / "pwned"
    folder = registry.registry.path / "datasets" / NAME
    (folder / "pipeline.py").write_text(f"open({str(canary)!r}, 'w').write('ran')\ndef build():\n    pass\n")
    (folder / "descriptor.yaml").write_text(f"name: {NAME}\npipeline: pipeline.py:build\n")
    (folder / "conftest.py").write_text(f"open({str(canary)!r}, 'w').write('ran')\n")
    (folder / "__init__.py").write_text(f"open({str(canary)!r}, 'w').write('ran')\n")
    repo = git.Repo(registry.registry.path)
    repo.index.add([str(p) for p in folder.iterdir() if p.suffix in (".py", ".yaml")])
    repo.index.commit("plant code")
    repo.git.tag("-f", TAG)
    bare = tmp_path / "remote.git"
    git.Repo.clone_from(registry.registry.path, bare, bare=True)
    for where in (str(registry.registry.path), bare.as_uri()):
        for args in (
            ["list"],
            ["log", NAME],
            ["show", NAME],
            ["verify", NAME],
            ["search", NAME],
            ["get", NAME, "-o", str(tmp_path / "o.parquet")],
        ):
            r = CliRunner().invoke(cli, ["--registry", where, *args])
            assert "Traceback" not in r.output, r.output
            assert not canary.exists(), f"{args} ran code from the registry"


def test_a_clone_or_file_url_finds_local_storage_beside_its_origin(registry, tmp_path):
    """A registry travels: a `git clone` of a local-storage registry, or a file:// URL to it, finds the
    parts beside the origin without CORALORD_STORAGE; once they are gone, a clear error."""
    clone = tmp_path / "elsewhere" / "clone"
    git.Repo.clone_from(registry.registry.path, clone)
    rows = open_dataset(NAME, workspace=Workspace.open(clone)).to_arrow().num_rows
    assert rows == 500
    for where in (registry.registry.path.as_uri(), str(clone)):
        r = CliRunner().invoke(cli, ["--registry", where, "get", NAME, "-o", str(tmp_path / "o.parquet")])
        assert r.exit_code == 0, r.output
    storage = Path(registry.store.url)
    storage.rename(storage.with_name("moved"))
    r = CliRunner().invoke(cli, ["--registry", registry.registry.path.as_uri(), "get", NAME])
    assert r.exit_code == 2 and "set CORALORD_STORAGE" in r.stderr, r.output
