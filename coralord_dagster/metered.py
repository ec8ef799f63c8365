"""An fsspec filesystem proxy that counts the bytes read through it.

Partial reads are the point of subsets and column projection, so what a fetch costs is measured where
it is paid: at the filesystem layer, under DuckDB and pyarrow. The count is reported to users
(``coralord get`` prints it) and used by tests and ``bench/``.
"""

from __future__ import annotations

import threading
from typing import Any

from fsspec import AbstractFileSystem


class MeteredFileSystem(AbstractFileSystem):
    """Delegates to ``inner`` and counts every byte read from it (``bytes_read``)."""

    cachable = False

    def __init__(self, inner: AbstractFileSystem) -> None:
        super().__init__()
        self.inner = inner
        self.protocol = inner.protocol
        self.bytes_read = 0
        self._lock = threading.Lock()

    def count(self, n: int) -> None:
        with self._lock:
            self.bytes_read += n

    def _strip_protocol(self, path: str) -> str:
        return self.inner._strip_protocol(path)

    def _open(self, path: str, mode: str = "rb", **kwargs: Any) -> Any:
        f = self.inner.open(path, mode, **kwargs)
        return _MeteredFile(f, self) if "r" in mode else f

    def cat_file(self, path: str, start: int | None = None, end: int | None = None, **kwargs: Any) -> bytes:
        data = self.inner.cat_file(path, start=start, end=end, **kwargs)
        self.count(len(data))
        return data

    def cat_ranges(
        self, paths: list[str], starts: list[int], ends: list[int], *args: Any, **kwargs: Any
    ) -> list[bytes]:
        out = self.inner.cat_ranges(paths, starts, ends, *args, **kwargs)
        self.count(sum(len(b) for b in out if isinstance(b, bytes)))
        return list(out)

    def info(self, path: str, **kwargs: Any) -> dict[str, Any]:
        return self.inner.info(path, **kwargs)

    def ls(self, path: str, detail: bool = True, **kwargs: Any) -> Any:
        return self.inner.ls(path, detail=detail, **kwargs)

    def exists(self, path: str, **kwargs: Any) -> bool:
        return self.inner.exists(path, **kwargs)

    def size(self, path: str) -> int:
        return self.inner.size(path)

    def modified(self, path: str) -> Any:
        return self.inner.modified(path)

    def pipe_file(self, path: str, value: bytes, **kwargs: Any) -> Any:
        return self.inner.pipe_file(path, value, **kwargs)

    def rm_file(self, path: str) -> Any:
        return self.inner.rm_file(path)


class _MeteredFile:
    """A read-only file wrapper that reports what it reads."""

    def __init__(self, f: Any, fs: MeteredFileSystem) -> None:
        self._f = f
        self._fs = fs

    def read(self, length: int = -1) -> bytes:
        data = self._f.read(length)
        self._fs.count(len(data))
        return data

    def readinto(self, buffer: Any) -> int:
        n = self._f.readinto(buffer)
        self._fs.count(n or 0)
        return n

    def __getattr__(self, name: str) -> Any:
        return getattr(self._f, name)

    def __enter__(self) -> _MeteredFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self._f.close()

    def __iter__(self) -> Any:
        return iter(self._f)
