"""Source checks are bounded and honour the descriptor: a store that never answers fails its check
within the timeout, fsspec stores get the descriptor's storage_options, git gets no option in disguise."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import git
import pytest

from coralord_dagster.sources import Source, SourceError, fingerprint
from coralord_dagster.sources.base import git_checkout

from .helpers import public_object, public_s3_source


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A TCP server on 127.0.0.1 that accepts connections and never says a word."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def serve() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                accepted.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield server.getsockname()[1]
    finally:
        stop.set()
        thread.join()
        for conn in accepted:
            conn.close()
        server.close()


def test_a_store_that_never_answers_fails_its_check_not_the_tick(silent_server: int):
    url = f"ftp://127.0.0.1:{silent_server}/data"
    source = Source(kind="url", uri=url, base=url, files=("a.csv",))
    assert source.checker == "fsspec"
    with pytest.raises(SourceError, match="no answer within 1 s|timed out"):
        fingerprint(source, timeout=1)


def test_the_s3_check_uses_the_descriptors_storage_options(s3, monkeypatch: pytest.MonkeyPatch):
    endpoint = s3["AWS_ENDPOINT_URL"]
    public_object(endpoint)
    monkeypatch.delenv("AWS_ENDPOINT_URL")  # only the descriptor says where the (public) store is
    fp = fingerprint(public_s3_source(endpoint), timeout=5)
    assert list(fp.details["items"]) == ["datasets/raw/data.csv"]


@pytest.mark.parametrize("field", ["repo", "ref"])
def test_git_checkout_passes_no_option_in_disguise(tmp_path: Path, field: str):
    repo = tmp_path / "upstream"
    r = git.Repo.init(repo, initial_branch="main")
    (repo / "a.csv").write_text("x\n1\n")
    r.index.add(["a.csv"])
    r.index.commit("data")
    canary = tmp_path / "pwned"
    evil = f"--upload-pack=touch {canary};false"
    args = {"repo": str(repo), "ref": "main", field: evil}
    with pytest.raises(SourceError, match="may not start with '-'"):
        git_checkout(args["repo"], args["ref"], cache=tmp_path / "cache")
    assert not canary.exists()
    assert (git_checkout(str(repo), "main", cache=tmp_path / "cache") / "a.csv").read_text() == "x\n1\n"
