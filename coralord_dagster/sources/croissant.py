"""Upstream Croissant datasets: the version and the checksums of every file in its distribution."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import urllib3

from coralord_dagster.sources.base import Source, SourceError, scheme
from coralord_dagster.sources.fingerprint import Fingerprint, checker, make
from coralord_dagster.sources.http import request


def load_croissant(url: str, timeout: float) -> dict[str, Any]:
    try:
        if scheme(url) in ("http", "https"):
            r = request("GET", url, timeout)
            if r.status >= 400:
                raise SourceError(f"{url}: HTTP {r.status}")
            data = r.data
        else:
            data = Path(url.removeprefix("file://")).read_bytes()
        doc = json.loads(data)
    except (urllib3.exceptions.HTTPError, OSError) as e:
        raise SourceError(f"{url}: {type(e).__name__}: {e}") from None
    except ValueError:
        raise SourceError(f"{url}: not a JSON-LD document") from None
    if not isinstance(doc, dict) or "distribution" not in doc:
        raise SourceError(f"{url}: not a Croissant dataset (no 'distribution')")
    return doc


@checker("croissant")
def check_croissant(source: Source, previous: Fingerprint | None, timeout: float) -> Fingerprint:
    doc = load_croissant(source.options["croissant"], timeout)
    items: dict[str, Any] = {"version": doc.get("version"), "dateModified": doc.get("dateModified")}
    for entry in doc["distribution"]:
        name = entry.get("@id") or entry.get("name")
        checksum = entry.get("sha256") or entry.get("md5")
        if entry.get("@type") in ("cr:FileObject", "FileObject") and checksum:
            items[str(name)] = checksum
    return make(items)
