"""Credentials are never written to Git, Croissant, the catalog, Dagster's storage, metadata, logs or
exception messages.

One end-to-end run with distinctive fake credentials ("canaries") in every place a user puts them: the
AWS variables, ``CORALORD_STORAGE_OPTIONS`` (s3fs key and secret), ``HF_TOKEN`` (sent to a local Hub-like
server) and credential-bearing URLs (``s3://KEY:SECRET@bucket``, a Git remote with a password). It
publishes fashion_mnist to a real S3 server (moto) through a persistent Dagster instance and through the
``coralord`` CLI, succeeding and failing (storage unreachable, a part deleted, a remote unreachable,
credentials in URLs refused), then searches every byte the run left behind for every canary, raw and
base64-encoded: the registries' Git objects and files, the catalog (its file and every cell), everything
under ``DAGSTER_HOME`` (every cell of its SQLite files too, snapshots decompressed), the coralord cache,
the S3 objects, the CLI's output, the Python log records and the test's own stdout/stderr.

A positive control first proves the search finds a canary planted in each kind of place (a zlib-compressed
SQLite cell, a Dagster snapshot, event log and compute log, a compressed Git object, a DuckDB cell, a
base64 string, a log record), so a leak could not go unseen.
"""

import base64
import contextlib
import json
import logging
import math
import os
import shutil
import sqlite3
import subprocess
import traceback
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg
import duckdb
import pytest
import s3fs

from coralord_dagster.client import open_dataset
from coralord_dagster.errors import ConfigError
from coralord_dagster.orchestration import CoralordIOManager, CoralordResource, build_definitions
from coralord_dagster.workspace import Workspace

from .conftest import BIN, free_port
from .helpers import asset_of
from .servers import Behaviour, http_server

STORAGE = "s3://datasets/coralord"

# Distinctive fake credentials: each would be found anywhere it was written.
ENV_KEY = "AKIACANARYENVKEY7Q3X"
ENV_SECRET = "canary-secret-env-9c41d7e2b8a6"
OPT_KEY = "AKIACANARYOPTKEY2M8W"
OPT_SECRET = "canary-secret-opts-3f7a1c9e5d0b"
HF_TOKEN = "hf_canaryTOKEN5e2a9b7c3d1f80"
URL_KEY = "AKIACANARYURLKEY4R6T"
URL_SECRET = "canary-url-9d3f/secret+6b2d8e"  # AWS secrets contain '/' and '+', which end no URL part
REMOTE_USER = "canaryuser"
REMOTE_PASSWORD = "canarypw-remote-7e3f1a"
PLANTED = "canary-planted-0c4e2a91d7"  # the positive control's own: it stays out of the real search
CANARIES = {
    "AWS_ACCESS_KEY_ID": ENV_KEY,
    "AWS_SECRET_ACCESS_KEY": ENV_SECRET,
    "storage options key": OPT_KEY,
    "storage options secret": OPT_SECRET,
    "HF_TOKEN": HF_TOKEN,
    "storage URL key": URL_KEY,
    "storage URL secret": URL_SECRET,
    "storage URL secret (before its slash)": URL_SECRET.split("/")[0],
    "storage URL secret (after its slash)": URL_SECRET.split("/")[1],
    "remote user": REMOTE_USER,
    "remote password": REMOTE_PASSWORD,
}


# ----------------------------------------------------------------------------------------- the search
def encoded_forms(secret: str) -> list[bytes]:
    """``secret`` raw, and the part of its base64 encoding (standard and URL-safe) that is the same
    whatever bytes surround it, at each of the three alignments (as in an HTTP Basic header)."""
    raw = secret.encode()
    forms = [raw]
    for pad in range(3):
        enc = base64.b64encode(b"\0" * pad + raw + b"\0\0")
        middle = enc[math.ceil(8 * pad / 6) : (8 * (pad + len(raw))) // 6]
        forms += [middle, middle.replace(b"+", b"-").replace(b"/", b"_")]
    return forms


def git_dirs(root: Path) -> Iterator[Path]:
    """Every Git directory below ``root`` (a work tree's ``.git`` or a bare repository)."""
    for head in root.rglob("HEAD"):
        folder = head.parent
        if (folder / "objects").is_dir() and (folder / "refs").is_dir():
            yield folder


@dataclass
class Search:
    """Looks for every canary in bytes, files, folders, Git repositories and databases."""

    needles: dict[str, list[bytes]] = field(
        default_factory=lambda: {label: encoded_forms(value) for label, value in CANARIES.items()}
    )
    hits: list[str] = field(default_factory=list)
    places: int = 0

    def data(self, where: str, blob: bytes) -> None:
        self.places += 1
        for label, forms in self.needles.items():
            for form in forms:
                at = blob.find(form)
                if at >= 0:
                    how = "raw" if form == forms[0] else "base64"
                    context = blob[max(0, at - 80) : at + len(form) + 40].decode(errors="replace")
                    self.hits.append(f"{label} ({how}) in {where}: ...{context!r}...")
                    break

    def text(self, where: str, text: str) -> None:
        self.data(where, text.encode(errors="surrogateescape"))

    def file(self, path: Path) -> None:
        blob = path.read_bytes()
        self.data(str(path), blob)
        if blob.startswith(b"SQLite format 3\0"):
            self.sqlite(path)
        elif blob[8:12] == b"DUCK":
            self.duckdb(path)

    def tree(self, root: Path) -> None:
        for path in sorted(root.rglob("*")):
            if path.is_file() and not path.is_symlink():
                self.file(path)
        for git_dir in git_dirs(root):
            self.git(git_dir)

    def sqlite(self, path: Path) -> None:
        """Every cell (a value may span overflow pages, split in the raw file), blobs also inflated:
        Dagster stores its snapshots zlib-compressed."""
        con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            tables = [row[0] for row in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
            for table in tables:
                for row in con.execute(f'SELECT * FROM "{table}"'):
                    for cell in row:
                        if isinstance(cell, bytes):
                            self.data(f"{path} table {table}", cell)
                            with contextlib.suppress(zlib.error):
                                self.data(f"{path} table {table} (inflated)", zlib.decompress(cell))
                        elif isinstance(cell, str):
                            self.text(f"{path} table {table}", cell)
        finally:
            con.close()

    def duckdb(self, path: Path) -> None:
        """Every cell: DuckDB compresses strings in its file (dictionary, FSST)."""
        con = duckdb.connect(str(path), read_only=True)
        try:
            tables = con.execute(
                "SELECT table_schema, table_name FROM information_schema.tables WHERE table_catalog = "
                "current_database()"
            ).fetchall()
            assert tables, f"no tables in {path}"
            for schema, table in tables:
                for row in con.execute(f'SELECT * FROM "{schema}"."{table}"').fetchall():
                    self.text(f"{path} table {schema}.{table}", repr(row))
        finally:
            con.close()

    def git(self, git_dir: Path) -> None:
        """Every object, decompressed (loose objects and packs are zlib-compressed on disk), and the
        whole history as patches."""
        for args in (
            ["cat-file", "--batch-all-objects", "--batch", "--unordered"],
            ["log", "--all", "-p", "--format=raw"],
        ):
            proc = subprocess.run(
                ["git", "--git-dir", str(git_dir), *args], capture_output=True, check=True, timeout=120
            )
            self.data(f"{git_dir}: git {args[0]}", proc.stdout)

    def s3(self, fs: s3fs.S3FileSystem) -> int:
        objects = [p for bucket in fs.ls("") for p in fs.find(bucket)]
        for path in objects:
            self.data(f"s3://{path}", fs.cat_file(path))
        return len(objects)

    def logs(self, where: str, records: Iterable[logging.LogRecord]) -> None:
        formatter = logging.Formatter("%(name)s %(levelname)s %(message)s")
        for record in records:
            self.text(f"{where}: log record of {record.name}", formatter.format(record))

    def exception(self, where: str, error: BaseException) -> None:
        self.text(where, "".join(traceback.format_exception(error)))


# ----------------------------------------------------------------------------------------- helpers
def dead_endpoint() -> str:
    """An http endpoint on 127.0.0.1 where nothing listens (connections are refused at once)."""
    return f"http://127.0.0.1:{free_port()}"


def storage_options(endpoint: str) -> str:
    return json.dumps({"key": OPT_KEY, "secret": OPT_SECRET, "client_kwargs": {"endpoint_url": endpoint}})


@dataclass
class Cli:
    """The coralord CLI as a subprocess, every output kept for the search."""

    cwd: Path
    outputs: list[tuple[str, str]] = field(default_factory=list)

    def __call__(self, *args: str, code: int = 0, env: dict[str, str] | None = None) -> str:
        proc = subprocess.run(
            [str(BIN / "coralord"), *args],
            cwd=self.cwd,
            env={**os.environ, **(env or {})},
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        out = proc.stdout + proc.stderr
        self.outputs.append((" ".join(args), out))
        assert proc.returncode == code, f"coralord {' '.join(args)}: exit {proc.returncode}\n{out[-3000:]}"
        return out


def failures(result: dg.ExecuteInProcessResult) -> list[str]:
    """The errors Dagster recorded for a failed run (step and resource failures), as text."""
    out = []
    for event in result.all_events:
        error = getattr(event.event_specific_data, "error", None)
        if error is not None:
            out.append(error.to_string())
    return out


class Holder(dg.ConfigurableResource):
    """Holds a planted canary (as resource config it lands in the job snapshot)."""

    value: str


@dg.asset
def planted(context: dg.AssetExecutionContext, holder: Holder) -> None:
    context.log.info(f"logged {holder.value}")
    raise RuntimeError(f"raised {holder.value}")


def control(tmp: Path) -> None:
    """Plant a canary in each kind of place the search must see into; it must find every one."""
    canary = PLANTED
    # Dagster's own storage: a snapshot (resource config, zlib-compressed), the event log (an exception,
    # a log line), the compute logs (stderr).
    home = tmp / "dagster_home"
    home.mkdir(parents=True)

    with dg.DagsterInstance.from_config(str(home)) as instance:
        result = dg.materialize(
            [planted], resources={"holder": Holder(value=canary)}, instance=instance, raise_on_error=False
        )
    assert not result.success
    # A compressed Git object (a blob, never a plain file in the repository's folder).
    repo = tmp / "repo"
    subprocess.run(["git", "init", "--quiet", str(repo)], check=True)
    blob = subprocess.run(
        ["git", "-C", str(repo), "hash-object", "-w", "--stdin"],
        input=canary.encode(),
        capture_output=True,
        check=True,
    )
    assert blob.stdout.strip()
    # A DuckDB cell, in a column DuckDB compresses.
    with duckdb.connect(str(tmp / "catalog.duckdb")) as con:
        con.execute("CREATE TABLE t AS SELECT 'x' || (i % 3) || ? AS v FROM range(100000) r(i)", [canary])
        con.execute("CHECKPOINT")
    # base64, as an HTTP Basic header would carry it.
    (tmp / "header.txt").write_bytes(b"Authorization: Basic " + base64.b64encode(f"u:{canary}".encode()))

    planted_search = Search(needles={"planted": encoded_forms(canary)})
    planted_search.tree(tmp)
    record = logging.LogRecord("coralord_dagster", logging.INFO, __file__, 1, "%s", (canary,), None)
    planted_search.logs("control", [record])
    found = "\n".join(planted_search.hits)
    for place in (
        "history/runs.db table snapshots (inflated)",  # the resource config in the job snapshot
        "table event_logs",  # the log line and the exception
        "compute_logs",  # stderr of the step
        "repo/.git: git cat-file",
        "catalog.duckdb table main.t",
        "header.txt",
        "control: log record",
    ):
        assert place in found, f"the search misses a canary planted in {place}:\n{found}"
    assert "(base64) in" in found
    # A Git object is compressed on disk: only the Git reader sees into it.
    assert not any("repo/.git/objects" in hit for hit in planted_search.hits)


# ----------------------------------------------------------------------------------------- the test
@pytest.mark.slow
def test_no_credential_is_written_or_shown_anywhere(
    s3: dict[str, str],
    fmnist_source: Path,
    use_case_copy: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    control(tmp_path / "control")
    shutil.rmtree(tmp_path / "control")  # the plants go
    search = Search()

    caplog.set_level(logging.INFO)
    moto = s3["AWS_ENDPOINT_URL"]
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ENV_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", ENV_SECRET)
    monkeypatch.setenv("CORALORD_STORAGE_OPTIONS", storage_options(moto))
    monkeypatch.setenv("CORALORD_STORAGE_RETRIES", "2")  # failures come quickly
    monkeypatch.setenv("HF_TOKEN", HF_TOKEN)
    s3fs.S3FileSystem.clear_instance_cache()
    home = tmp_path / "dagster_home"
    home.mkdir()
    # Empty on purpose: with any setting in it, Dagster runs logging.config.dictConfig at each run, which
    # closes every logging handler of the process (absl's, holding pytest's captured stderr, among them).
    (home / "dagster.yaml").write_text("")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    cache = Path(os.environ["CORALORD_CACHE"])
    remote_url = f"http://{REMOTE_USER}:{REMOTE_PASSWORD}@127.0.0.1:{free_port()}/r.git"
    url_storage = f"s3://{URL_KEY}:{URL_SECRET}@datasets/coralord"
    registry = tmp_path / "reg"

    hub = Behaviour(hub_sha="c" * 40, root=fmnist_source)
    with http_server(hub) as hub_url, dg.DagsterInstance.get() as instance:
        monkeypatch.setenv("HF_ENDPOINT", hub_url)

        def materialize(resource: CoralordResource, *, checks: bool = True) -> dg.ExecuteInProcessResult:
            defs = build_definitions(use_case_copy.parent, resource=resource)
            selection = [asset_of(defs, "fashion_mnist"), *(defs.asset_checks if checks else [])]
            io = CoralordIOManager(coralord=resource)
            return dg.materialize(
                selection,
                resources={"coralord": resource, "coralord_io_manager": io},
                instance=instance,
                raise_on_error=False,
            )

        # 1. Dagster publishes to S3 (storage credentials from CORALORD_STORAGE_OPTIONS), observes the
        # source on the Hub (with HF_TOKEN) and reads the version back in-process.
        resource = CoralordResource(registry=str(registry), storage=STORAGE)
        ok = materialize(resource)
        assert ok.success
        assert ok.asset_materializations_for_node("fashion_mnist")[0].metadata["coralord/new_version"].value
        assert f"Bearer {HF_TOKEN}" in [h.get("Authorization") for _, _, h in hub.seen]  # the token was used
        from dagster._core.definitions.observe import observe

        defs = build_definitions(use_case_copy.parent, resource=resource)
        source = next(a for a in defs.assets if isinstance(a, dg.SourceAsset))
        assert observe([source], instance=instance).success
        ws = resource.workspace()
        assert open_dataset("fashion_mnist", workspace=ws).to_arrow().num_rows > 0

        # 2. Storage unreachable: retried, then StorageUnavailableError, stored by Dagster with its cause.
        monkeypatch.setenv("CORALORD_STORAGE_OPTIONS", storage_options(dead_endpoint()))
        s3fs.S3FileSystem.clear_instance_cache()
        down = materialize(resource)
        assert not down.success
        assert any("StorageUnavailableError" in f for f in failures(down)), failures(down)
        monkeypatch.setenv("CORALORD_STORAGE_OPTIONS", storage_options(moto))
        s3fs.S3FileSystem.clear_instance_cache()

        # 3. The Hub refuses: the source check fails, recorded by Dagster as a failed observation.
        hub.status = 401
        assert observe([source], instance=instance).success  # a recorded failure, not a traceback
        [record] = instance.fetch_observations(source.key, limit=1, ascending=False).records
        assert "401" in record.asset_observation.metadata["coralord/error"].value
        hub.status = None

        # 4. Credentials in URLs. As configuration they would be stored in Dagster's job snapshot before
        # any code of ours runs, so the resource refuses them, without repeating them.
        pw_reg = tmp_path / "reg-remote-pw"
        Workspace.open(pw_reg, storage=STORAGE, create=True)
        for kwargs in ({"remote": remote_url}, {"storage": url_storage}, {"registry": remote_url}):
            # pydantic's ValidationError (a ValueError), the input hidden
            with pytest.raises(ValueError, match="carries credentials") as refused:
                CoralordResource(**kwargs)
            search.exception(f"CoralordResource({next(iter(kwargs))}=...)", refused.value)
        # From the environment (dg.EnvVar: Dagster stores the variable's name only), the run fails.
        monkeypatch.setenv("CANARY_REMOTE", remote_url)
        monkeypatch.setenv("CANARY_STORAGE", url_storage)
        for kwargs in (
            {"registry": str(pw_reg), "storage": STORAGE, "remote": dg.EnvVar("CANARY_REMOTE")},
            {"registry": str(tmp_path / "reg-url"), "storage": dg.EnvVar("CANARY_STORAGE")},
        ):
            bad = materialize(CoralordResource(**kwargs), checks=False)
            assert not bad.success
            assert any("carries credentials" in f for f in failures(bad)), failures(bad)
        # The core refuses them too (the CLI and consumers open workspaces without Dagster).
        for kwargs in (
            {"registry": pw_reg, "remote": remote_url},
            {"registry": tmp_path / "reg-url-core", "storage": url_storage, "create": True},
            {"registry": remote_url},
        ):
            with pytest.raises(ConfigError, match="carries credentials") as refused:
                Workspace.open(**kwargs)  # type: ignore[arg-type]
            search.exception(f"Workspace.open({sorted(kwargs)})", refused.value)
        assert not (tmp_path / "reg-url").exists() and not (tmp_path / "reg-url-core").exists()
        assert "origin" not in (pw_reg / ".git" / "config").read_text()

        # 5. A remote that cannot be reached (no password: those are refused): the push fails.
        remote_reg = tmp_path / "reg-remote"
        Workspace.open(remote_reg, storage=STORAGE, create=True)
        unreachable = materialize(
            CoralordResource(registry=str(remote_reg), storage=STORAGE, remote=dead_endpoint() + "/r.git"),
            checks=False,
        )
        assert not unreachable.success
        assert any("remote" in f for f in failures(unreachable)), failures(unreachable)

        # 6. The CLI, as a user runs it: publish, read, and fail.
        cli = Cli(cwd=tmp_path)
        cli_reg = str(tmp_path / "reg-cli")
        cli("--registry", cli_reg, "publish", str(use_case_copy), env={"CORALORD_STORAGE": STORAGE})
        cli("--registry", cli_reg, "list")
        cli("--registry", cli_reg, "list", "--json")
        cli("--registry", cli_reg, "log", "fashion_mnist")
        cli("--registry", cli_reg, "show", "fashion_mnist")
        cli("--registry", cli_reg, "verify", "fashion_mnist")
        out = str(tmp_path / "out.parquet")
        cli("--registry", cli_reg, "get", "fashion_mnist@v1.0.0", "-o", out)
        cli("--registry", str(registry), "get", "fashion_mnist", "-o", out)
        # Storage unreachable: exit 3, nothing from the cache (a fresh one).
        fresh = {"CORALORD_CACHE": str(tmp_path / "cache-down")}
        down_env = {**fresh, "CORALORD_STORAGE_OPTIONS": storage_options(dead_endpoint())}
        cli("--registry", cli_reg, "get", "fashion_mnist", "-o", out, code=3, env=down_env)
        cli("--registry", cli_reg, "verify", "fashion_mnist", code=3, env=down_env)
        # A part deleted from S3: exit 1 naming it.
        fs = s3fs.S3FileSystem(endpoint_url=moto)
        cli_registry = Workspace.open(cli_reg).registry
        manifest = cli_registry.manifest(cli_registry.latest("fashion_mnist"))
        gone = manifest.parts[0]
        kept = fs.cat_file(gone.url)
        fs.rm(gone.url)
        missing = {"CORALORD_CACHE": str(tmp_path / "cache-missing")}
        assert gone.sha256 in cli(
            "--registry", cli_reg, "get", "fashion_mnist", "-o", out, code=1, env=missing
        )
        cli("--registry", cli_reg, "verify", "fashion_mnist", code=1, env=missing)
        fs.pipe_file(gone.url, kept)
        # Credentials in URLs: refused (exit 2), not repeated.
        url_env = {"CORALORD_STORAGE": url_storage}
        for args, env in (
            (["--registry", remote_url, "list"], None),
            (["--registry", str(tmp_path / "reg-cli-url"), "publish", str(use_case_copy)], url_env),
            (["--registry", cli_reg, "list"], url_env),
        ):
            assert "carries credentials" in cli(*args, code=2, env=env)
        assert not (tmp_path / "reg-cli-url").exists()

    # ------------------------------------------------------------------------------ the search
    # Every kind of place the guarantee names exists, so the search below is not vacuous.
    for path in (registry, tmp_path / "reg-cli"):
        assert (path / ".git" / "coralord" / "catalog.duckdb").is_file(), path
        assert (path / "datasets" / "fashion_mnist" / "croissant.json").is_file(), path
    assert (remote_reg / ".git").is_dir()
    assert any(home.rglob("runs.db")) and any(home.rglob("*.err")), "Dagster stored nothing?"
    assert any(p.suffix == ".parquet" for p in cache.rglob("*")), "nothing cached?"
    search.tree(tmp_path)  # registries, catalogs, DAGSTER_HOME, caches, outputs: every file we wrote
    assert search.s3(fs) > 0
    for command, output in cli.outputs:
        search.text(f"coralord {command}", output)
    search.logs("caplog", caplog.records)
    captured = capfd.readouterr()
    search.text("stdout", captured.out)
    search.text("stderr", captured.err)
    assert search.places > 100
    assert not search.hits, "credentials leaked:\n" + "\n".join(sorted(set(search.hits)))


def test_the_search_reads_base64_at_every_alignment() -> None:
    for prefix in ("", "u:", "us:", "user:"):
        blob = base64.b64encode(f"{prefix}{OPT_SECRET}".encode())
        assert any(form in blob for form in encoded_forms(OPT_SECRET)[1:]), prefix


def test_a_source_override_url_keeps_its_password_out_of_lineage(
    fmnist_source: Path, use_case_copy: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from coralord_dagster.descriptor import load_descriptor
    from coralord_dagster.sources import override_variable
    from coralord_dagster.use_case import publish_descriptor

    with http_server(Behaviour(root=fmnist_source)) as mirror:
        host = mirror.split("://", 1)[1]
        monkeypatch.setenv(
            override_variable("fashion_mnist"), f"http://{REMOTE_USER}:{REMOTE_PASSWORD}@{host}"
        )
        ws = Workspace.open(tmp_path / "reg", create=True)
        assert publish_descriptor(load_descriptor(use_case_copy), ws).created
    search = Search()
    search.tree(tmp_path / "reg")
    assert not search.hits, "credentials leaked:\n" + "\n".join(sorted(set(search.hits)))
