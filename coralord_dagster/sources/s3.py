"""S3 objects or prefixes: ETag and VersionId from HEAD/LIST (credentials from the environment)."""

from __future__ import annotations

from typing import Any

import fsspec

from coralord_dagster.sources.base import Source, SourceError
from coralord_dagster.sources.fingerprint import Fingerprint, checker, make


def object_items(fs: Any, paths: list[str]) -> dict[str, dict[str, Any]]:
    items: dict[str, dict[str, Any]] = {}
    for path in paths:
        infos = [fs.info(path)] if fs.isfile(path) else list(fs.find(path, detail=True).values())
        if not infos:
            raise SourceError(f"{path}: no such object or prefix")
        for info in infos:
            items[info["name"]] = {
                "etag": info.get("ETag") or info.get("etag"),
                "version_id": info.get("VersionId"),
                "size": info.get("size"),
            }
    return items


@checker("s3")
def check_s3(source: Source, previous: Fingerprint | None, timeout: float) -> Fingerprint:
    fs, root = fsspec.core.url_to_fs(
        source.base,
        skip_instance_cache=True,  # a fresh listing every check, not a cached one
        config_kwargs={"connect_timeout": timeout, "read_timeout": timeout, "retries": {"max_attempts": 1}},
    )
    paths = [f"{root.rstrip('/')}/{f}" for f in source.files] or [root]
    try:
        return make(object_items(fs, paths))
    except FileNotFoundError as e:
        raise SourceError(f"source {source.uri}: {e}") from None
    except OSError as e:
        raise SourceError(f"source {source.uri}: {type(e).__name__}: {e}") from None


@checker("fsspec")
def check_fsspec(source: Source, previous: Fingerprint | None, timeout: float) -> Fingerprint:
    """Any other fsspec store: size, checksum/ETag or mtime as the store reports them."""
    fs, root = fsspec.core.url_to_fs(source.base)
    paths = [f"{root.rstrip('/')}/{f}" for f in source.files] or [root]
    items = {}
    try:
        for path in paths:
            info = fs.info(path)
            items[path] = {
                k: str(info.get(k))
                for k in ("size", "ETag", "etag", "md5Hash", "crc32c", "mtime", "updated", "LastModified")
                if info.get(k) is not None
            }
    except OSError as e:
        raise SourceError(f"source {source.uri}: {type(e).__name__}: {e}") from None
    return make(items)
