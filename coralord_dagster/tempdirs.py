"""Private temporary folders that a killed process cannot leave behind for long.

Each folder's name carries the process id (``coralord-<pid>-<what>-…``); :func:`remove_orphans` deletes
those whose process is gone. Publishing calls it, so a ``kill -9`` costs disk space only until the next
publish on the machine.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

_NAME = re.compile(r"coralord-(\d+)-")


@contextmanager
def private_tempdir(what: str) -> Iterator[Path]:
    """A temporary folder for this process, removed on exit."""
    with tempfile.TemporaryDirectory(prefix=f"coralord-{os.getpid()}-{what}-") as tmp:
        yield Path(tmp)


@contextmanager
def replacing(path: Path | str) -> Iterator[Path]:
    """A fresh file beside ``path`` to write, that replaces ``path`` when the block succeeds.

    The file is created exclusively under an unpredictable name (never a file or symlink someone planted),
    and the rename replaces ``path`` itself: a symlink there is replaced, never followed. On failure
    nothing is left and ``path`` is unchanged.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    # O_EXCL: never an existing file or symlink; mode 0o666 as umask allows, like any new file
    os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o666))
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_orphans(root: Path | str | None = None) -> list[str]:
    """Delete temporary folders of coralord processes that no longer run; returns their names."""
    base = Path(root or tempfile.gettempdir())
    removed: list[str] = []
    try:
        entries = list(base.iterdir())
    except OSError:
        return removed
    for entry in entries:
        m = _NAME.match(entry.name)
        if m and entry.is_dir() and int(m.group(1)) != os.getpid() and not _alive(int(m.group(1))):
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(entry.name)
    return removed
