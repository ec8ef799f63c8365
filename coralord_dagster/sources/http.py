"""HTTP(S) files: ETag, Last-Modified and Content-Length from a conditional HEAD (or GET).

With the previous ETag or Last-Modified the request is conditional, so an unchanged file costs a
304 and no body. A server without validators is fingerprinted by the content's sha256.
"""

from __future__ import annotations

import hashlib
import os
from typing import Any
from urllib.parse import urljoin

import urllib3

from coralord_dagster.redact import redact_url
from coralord_dagster.sources.base import DEFAULT_HF_ENDPOINT, Source, SourceError, origin
from coralord_dagster.sources.fingerprint import Fingerprint, checker, make

# One pool for the process: connections are reused across files, sources and sensor ticks.
POOL = urllib3.PoolManager(num_pools=64, maxsize=64, retries=False)


#: Redirects followed per request; each hop's credentials are decided for that hop's URL.
MAX_REDIRECTS = 5
_REDIRECTS = (301, 302, 303, 307, 308)


def request(
    method: str, url: str, timeout: float, headers: dict[str, str] | None = None
) -> urllib3.BaseHTTPResponse:
    """One request, redirects followed here rather than by urllib3, so that credentials are decided for
    each hop's own URL (:func:`auth_headers`): a redirect to another host never carries the token. A
    redirect that answers for the file itself (the Hub's ``X-Linked-Etag``) is returned as it is."""
    for _ in range(MAX_REDIRECTS + 1):
        try:
            r = POOL.request(
                method, url, headers={**(headers or {}), **auth_headers(url)}, timeout=timeout, redirect=False
            )
        except urllib3.exceptions.HTTPError as e:
            raise SourceError(f"{redact_url(url)}: {type(e).__name__}: {e}") from None
        location = r.headers.get("Location")
        if r.status not in _REDIRECTS or not location or r.headers.get("X-Linked-Etag"):
            return r
        url = urljoin(url, location)
        if r.status == 303:
            method = "GET"
    raise SourceError(f"{redact_url(url)}: more than {MAX_REDIRECTS} redirects")


def http_file(url: str, old: dict[str, Any] | None, timeout: float) -> dict[str, Any]:
    """Validators of one URL: {etag, last_modified, length} or {sha256}; reuses ``old`` on 304."""
    conditional: dict[str, str] = {}
    if old and old.get("etag"):
        conditional["If-None-Match"] = old["etag"]
    elif old and old.get("last_modified"):
        conditional["If-Modified-Since"] = old["last_modified"]
    r = request("HEAD", url, timeout, conditional)
    if r.status in (405, 501):  # no HEAD: a conditional GET
        r = request("GET", url, timeout, conditional)
    if r.status == 304 and old:
        return old
    if r.status >= 400:
        raise SourceError(f"{redact_url(url)}: HTTP {r.status}")
    etag = r.headers.get("X-Linked-Etag") or r.headers.get("ETag")
    modified = r.headers.get("Last-Modified")
    if etag or modified:
        return {"etag": etag, "last_modified": modified, "length": r.headers.get("Content-Length")}
    body = request("GET", url, timeout).data
    return {"sha256": hashlib.sha256(body).hexdigest()}


def hub_endpoint() -> str:
    """The Hugging Face Hub this process trusts with ``HF_TOKEN``: ``$HF_ENDPOINT`` or the public Hub
    (never an endpoint a descriptor names: a descriptor may come from someone else)."""
    return (os.environ.get("HF_ENDPOINT") or DEFAULT_HF_ENDPOINT).rstrip("/")


def auth_headers(url: str) -> dict[str, str]:
    """Credentials from the environment (never stored): ``HF_TOKEN``, for the trusted Hub's origin
    (scheme, host and port) only."""
    token = os.environ.get("HF_TOKEN")
    if not token or origin(url) != origin(hub_endpoint()):
        return {}
    return {"Authorization": f"Bearer {token}"}


@checker("http")
def check_http(source: Source, previous: Fingerprint | None, timeout: float) -> Fingerprint:
    known = previous.details.get("items", {}) if previous else {}
    names = list(source.files) or [""]
    items = {}
    for rel in names:
        url = source.url(rel) if rel else source.base
        try:
            items[rel or url] = http_file(url, known.get(rel or url), timeout)
        except SourceError as e:
            raise SourceError(f"source {source.uri}: {e}") from None
    return make(items)
