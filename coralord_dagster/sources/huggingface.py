"""Hugging Face Hub datasets: the revision's commit sha from the Hub API, plus each file's ETag.

``GET {endpoint}/api/datasets/{repo}/revision/{revision}`` answers the commit the revision points at;
``HF_ENDPOINT`` points it at a mirror (or a local server speaking the same API, as the tests do) and
``HF_TOKEN`` authenticates without ever being stored.
"""

from __future__ import annotations

import json
from urllib.parse import quote

from coralord_dagster.sources.base import Source, SourceError
from coralord_dagster.sources.fingerprint import Fingerprint, checker, make
from coralord_dagster.sources.http import http_file, request


def revision_sha(endpoint: str, repo: str, revision: str, timeout: float) -> str:
    url = f"{endpoint}/api/datasets/{repo}/revision/{quote(revision, safe='')}"
    r = request("GET", url, timeout)
    if r.status >= 400:
        raise SourceError(f"{url}: HTTP {r.status}")
    try:
        return str(json.loads(r.data)["sha"])
    except (ValueError, KeyError, TypeError):
        raise SourceError(f"{url}: not a Hub API answer (no 'sha')") from None


@checker("huggingface")
def check_huggingface(source: Source, previous: Fingerprint | None, timeout: float) -> Fingerprint:
    o = source.options
    try:
        sha = revision_sha(o["endpoint"], o["repo"], o["revision"], timeout)
        known = previous.details.get("items", {}) if previous else {}
        items: dict[str, object] = {"revision": sha}
        for rel in source.files:
            url = source.url(rel)
            items[rel] = http_file(url, known.get(rel), timeout)
    except SourceError as e:
        raise SourceError(f"source {source.uri}: {e}") from None
    return make(items)
