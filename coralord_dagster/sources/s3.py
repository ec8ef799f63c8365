"""S3 objects or prefixes: ETag and VersionId from HEAD/LIST (credentials from the environment)."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
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
    options = {
        **source.storage_options,  # the descriptor's (endpoint_url, anon, requester_pays...)
        "skip_instance_cache": True,  # a fresh listing every check, not a cached one
        "config_kwargs": {
            "connect_timeout": timeout,
            "read_timeout": timeout,
            "retries": {"max_attempts": 1},
        },
    }
    fs, root = fsspec.core.url_to_fs(source.base, **options)
    paths = [f"{root.rstrip('/')}/{f}" for f in source.files] or [root]
    return _checked(source, timeout, lambda: make(object_items(fs, paths)))


@checker("fsspec")
def check_fsspec(source: Source, previous: Fingerprint | None, timeout: float) -> Fingerprint:
    """Any other fsspec store: size, checksum/ETag or mtime as the store reports them."""

    def check() -> Fingerprint:
        fs, root = fsspec.core.url_to_fs(source.base, skip_instance_cache=True, **source.storage_options)
        items = {}
        for path in [f"{root.rstrip('/')}/{f}" for f in source.files] or [root]:
            info = fs.info(path)
            items[path] = {
                k: str(info.get(k))
                for k in ("size", "ETag", "etag", "md5Hash", "crc32c", "mtime", "updated", "LastModified")
                if info.get(k) is not None
            }
        return make(items)

    return _checked(source, timeout, check)


def _checked(source: Source, timeout: float, check: Callable[[], Fingerprint]) -> Fingerprint:
    """``check()`` within ``timeout`` (plus a grace for its own timeouts to fire): a store that never
    answers fails the check, not the sensor tick. The call runs on a daemon thread, which a hung store
    keeps, but which never holds up the process's exit."""
    outcome: queue.Queue[tuple[bool, Any]] = queue.Queue(maxsize=1)

    def run() -> None:
        try:
            outcome.put((True, check()))
        except BaseException as e:  # delivered to the caller below
            outcome.put((False, e))

    threading.Thread(target=run, name=f"coralord-check {source.uri}", daemon=True).start()
    try:
        ok, value = outcome.get(timeout=timeout + 5)
    except queue.Empty:
        raise SourceError(f"source {source.uri}: no answer within {timeout:g} s") from None
    if ok:
        return value
    if isinstance(value, FileNotFoundError):
        raise SourceError(f"source {source.uri}: {value}") from None
    if isinstance(value, Exception):
        raise SourceError(f"source {source.uri}: {type(value).__name__}: {value}") from None
    raise value
