"""HTTP(S) files: ETag, Last-Modified and Content-Length from a conditional HEAD (or GET).

With the previous ETag or Last-Modified the request is conditional, so an unchanged file costs a
304 and no body. A server without validators is fingerprinted by the content's sha256.
"""

from __future__ import annotations

import hashlib
import os
from typing import Any

import urllib3

from coralord_dagster.sources.base import Source, SourceError
from coralord_dagster.sources.fingerprint import Fingerprint, checker, make

# One pool for the process: connections are reused across files, sources and sensor ticks.
POOL = urllib3.PoolManager(num_pools=64, maxsize=64, retries=False)


def http_file(
    url: str, old: dict[str, Any] | None, timeout: float, headers: dict[str, str] | None = None
) -> dict[str, Any]:
    """Validators of one URL: {etag, last_modified, length} or {sha256}; reuses ``old`` on 304."""
    request_headers = dict(headers or {})
    if old and old.get("etag"):
        request_headers["If-None-Match"] = old["etag"]
    elif old and old.get("last_modified"):
        request_headers["If-Modified-Since"] = old["last_modified"]
    try:
        r = POOL.request("HEAD", url, headers=request_headers, timeout=timeout, redirect=True)
        if r.status in (405, 501):  # no HEAD: a conditional GET
            r = POOL.request("GET", url, headers=request_headers, timeout=timeout, redirect=True)
    except urllib3.exceptions.HTTPError as e:
        raise SourceError(f"{url}: {type(e).__name__}: {e}") from None
    if r.status == 304 and old:
        return old
    if r.status >= 400:
        raise SourceError(f"{url}: HTTP {r.status}")
    etag = r.headers.get("X-Linked-Etag") or r.headers.get("ETag")
    modified = r.headers.get("Last-Modified")
    if etag or modified:
        return {"etag": etag, "last_modified": modified, "length": r.headers.get("Content-Length")}
    body = POOL.request("GET", url, headers=headers or {}, timeout=timeout).data
    return {"sha256": hashlib.sha256(body).hexdigest()}


def auth_headers(url: str) -> dict[str, str]:
    """Credentials from the environment (never stored): HF_TOKEN for Hub URLs."""
    token = os.environ.get("HF_TOKEN")
    return {"Authorization": f"Bearer {token}"} if token and "/datasets/" in url else {}


@checker("http")
def check_http(source: Source, previous: Fingerprint | None, timeout: float) -> Fingerprint:
    known = previous.details.get("items", {}) if previous else {}
    names = list(source.files) or [""]
    items = {}
    for rel in names:
        url = source.url(rel) if rel else source.base
        try:
            items[rel or url] = http_file(url, known.get(rel or url), timeout, auth_headers(url))
        except SourceError as e:
            raise SourceError(f"source {source.uri}: {e}") from None
    return make(items)
