"""The registry's inter-process write lock: one ``flock`` that also covers the Git children it starts.

Why not ``filelock``: a Git command started by a writer must keep the lock held if the writer is killed
while the command still runs (``kill -9`` of the Python process alone leaves ``git push`` or
``git fast-import`` alive). A ``flock`` belongs to the open file description, so passing the descriptor to
the child (:attr:`ProcessLock.fd` in ``pass_fds``) keeps the lock held until the last holder exits. That is
what makes it safe for the next writer to treat every Git lock file it finds as stale.
"""

from __future__ import annotations

import fcntl
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

from coralord_dagster.errors import RegistryError


class ProcessLock:
    """An exclusive lock on ``path``, re-entrant within a process, shared with child processes."""

    def __init__(
        self, path: Path | str, timeout: float, on_acquire: Callable[[], None] | None = None
    ) -> None:
        self.path = Path(path)
        self.timeout = timeout
        self.on_acquire = on_acquire  # run each time the lock is newly taken (e.g. crash recovery)
        self._thread_lock = threading.RLock()
        self._depth = 0
        self._fd: int | None = None

    @property
    def fd(self) -> int | None:
        """The locked descriptor while held (pass it to child processes), else None."""
        return self._fd

    @property
    def held(self) -> bool:
        return self._fd is not None

    def __enter__(self) -> ProcessLock:
        self._thread_lock.acquire()
        if self._depth == 0:
            try:
                self._fd = self._acquire()
                self._depth = 1
                if self.on_acquire is not None:
                    self.on_acquire()
            except BaseException:
                self._release()
                raise
        else:
            self._depth += 1
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._depth -= 1
        if self._depth == 0:
            self._release()
        else:
            self._thread_lock.release()

    def _release(self) -> None:
        self._depth = 0
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor releases the flock
            self._fd = None
        self._thread_lock.release()

    def _acquire(self) -> int:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        deadline = time.monotonic() + self.timeout
        delay = 0.005
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return fd
            except BlockingIOError:
                if time.monotonic() > deadline:
                    os.close(fd)
                    raise RegistryError(
                        f"{self.path}: another coralord writer has held the registry lock for more than "
                        f"{self.timeout:.0f} s; wait for it to finish, or stop it"
                    ) from None
                time.sleep(delay)
                delay = min(delay * 2, 0.2)
