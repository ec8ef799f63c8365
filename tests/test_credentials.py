"""Credentials go only to the host they belong to: the Hugging Face token to the trusted Hub's origin,
never to another host a descriptor names, nor across a redirect."""

from __future__ import annotations

from pathlib import Path

import pytest

from coralord_dagster.sources import Source, fingerprint
from coralord_dagster.sources.http import auth_headers

from .faulty_proxy import FaultyProxy
from .helpers import public_object, public_s3_source
from .servers import Behaviour, http_server

TOKEN = "hf_FAKEtoken0123456789canary"
REPO = "zalando-datasets/fashion_mnist"
FILE = "fashion_mnist/train/0000.parquet"


def hub_source(endpoint: str) -> Source:
    base = f"{endpoint}/datasets/{REPO}/resolve/main"
    return Source(
        kind="huggingface",
        uri=base,
        base=base,
        files=(FILE,),
        options={"endpoint": endpoint, "repo": REPO, "revision": "main"},
    )


def authorizations(b: Behaviour) -> list[str | None]:
    return [headers.get("Authorization") for _, _, headers in b.seen]


@pytest.fixture
def files(tmp_path: Path) -> Path:
    (tmp_path / "fashion_mnist" / "train").mkdir(parents=True)
    (tmp_path / "fashion_mnist" / "train" / "0000.parquet").write_bytes(b"PAR1 rows PAR1")
    return tmp_path


def test_the_hub_gets_the_token_and_no_other_host_does(monkeypatch: pytest.MonkeyPatch, files: Path):
    hub, other = Behaviour(hub_sha="a" * 40, root=files), Behaviour(hub_sha="b" * 40, root=files)
    with http_server(hub) as hub_url, http_server(other) as other_url:
        monkeypatch.setenv("HF_ENDPOINT", hub_url)
        monkeypatch.setenv("HF_TOKEN", TOKEN)
        fingerprint(hub_source(hub_url))
        assert authorizations(hub) == [f"Bearer {TOKEN}"] * 2  # the revision API and the file

        # A URL source on another host, even with a Hub-like path: no token.
        url = f"{other_url}/datasets/wine/resolve/main"
        fingerprint(Source(kind="url", uri=url, base=url, files=(FILE,)))
        # A Hugging Face source whose descriptor names another endpoint: no token either.
        fingerprint(hub_source(other_url))
        assert other.seen and authorizations(other) == [None] * len(other.seen)


def test_a_redirect_to_another_host_drops_the_token(monkeypatch: pytest.MonkeyPatch, files: Path):
    hub, cdn = Behaviour(hub_sha="a" * 40), Behaviour(root=files)
    with http_server(hub) as hub_url, http_server(cdn) as cdn_url:
        monkeypatch.setenv("HF_ENDPOINT", hub_url)
        monkeypatch.setenv("HF_TOKEN", TOKEN)
        hub.redirects[f"/datasets/{REPO}/resolve/main/{FILE}"] = f"{cdn_url}/{FILE}"
        fp = fingerprint(hub_source(hub_url))
        assert fp.details["items"][FILE]["etag"]  # followed to the file
        assert authorizations(hub) == [f"Bearer {TOKEN}"] * 2
        assert [path for _, path, _ in cdn.seen] == [f"/{FILE}"]
        assert authorizations(cdn) == [None]


def test_the_token_is_scoped_to_scheme_host_and_port(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    monkeypatch.delenv("HF_ENDPOINT", raising=False)
    assert auth_headers("https://huggingface.co/datasets/x/resolve/main/a.parquet")
    assert auth_headers("https://HuggingFace.co:443/api/datasets/x")
    for url in (
        "http://huggingface.co/datasets/x",  # not over plain HTTP
        "https://huggingface.co.evil.example/datasets/x",
        "https://evil.example/huggingface.co/datasets/x",
        "https://huggingface.co@evil.example/datasets/x",
        "https://huggingface.co:8443/datasets/x",
        "https://example.org/datasets/wine.csv",
    ):
        assert auth_headers(url) == {}, url
    monkeypatch.delenv("HF_TOKEN")
    assert auth_headers("https://huggingface.co/datasets/x") == {}


def test_aws_keys_are_sent_only_to_the_environments_s3_endpoint(s3, monkeypatch: pytest.MonkeyPatch):
    """A descriptor naming another S3 endpoint is read anonymously: the consumer's keys sign nothing
    for a host they do not belong to."""
    public_object(s3["AWS_ENDPOINT_URL"])
    with FaultyProxy(s3["AWS_ENDPOINT_URL"]) as foreign:

        def check(endpoint: str) -> None:
            fingerprint(public_s3_source(endpoint), timeout=5)

        check(foreign.endpoint)  # not the environment's endpoint: anonymous
        assert foreign.stats.authorizations and not any(foreign.stats.authorizations)
        monkeypatch.setenv("AWS_ENDPOINT_URL", foreign.endpoint)  # now it is the configured one
        foreign.stats.authorizations.clear()
        check(foreign.endpoint)
        assert foreign.stats.authorizations and all(
            s3["AWS_ACCESS_KEY_ID"] in a for a in foreign.stats.authorizations
        )
