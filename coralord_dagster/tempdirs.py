"""Private temporary folders that a killed process cannot leave behind for long.

Each folder's name carries the process id (``coralord-<pid>-<what>-…``); :func:`remove_orphans` deletes
those whose process is gone. Publishing calls it, so a ``kill -9`` costs disk space only until the next
publish on the machine.
"""

from __future__ import annotations

import os
import re
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
