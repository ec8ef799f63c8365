"""Kill points: where the crash tests stop a publish dead, to prove that every step can be interrupted.

``CORALORD_KILL_AT=<point>`` (or ``<point>:<n>``, the n-th time the point is reached) makes the process
kill itself with SIGKILL at that point; ``CORALORD_KILL_MODE=process`` kills only this process (Git
children it started live on), the default ``group`` kills its whole process group. Without the variable a
point costs one dictionary lookup. The points, in publish order:

``parts``      one new part stored, the others not yet
``validated``  the Croissant validated, nothing committed
``objects``    the commit's Git objects written, no ref changed
``tagged``     the annotated tag object written, no ref changed
``pushed``     the remote accepted the version, local refs not updated yet
``refs``       local main and tag updated, working tree and catalog not yet
``index``      inside the catalog's write transaction
"""

from __future__ import annotations

import os
import signal
import threading

POINTS = ("parts", "validated", "objects", "tagged", "pushed", "refs", "index")

_counts: dict[str, int] = {}
_lock = threading.Lock()


def reached(point: str) -> None:
    """Die here if a crash test asked for it."""
    wanted = os.environ.get("CORALORD_KILL_AT")
    if not wanted:
        return
    name, _, nth = wanted.partition(":")
    if name != point:
        return
    with _lock:
        _counts[point] = _counts.get(point, 0) + 1
        if _counts[point] < int(nth or 1):
            return
    if os.environ.get("CORALORD_KILL_MODE", "group") == "group":
        os.killpg(os.getpgid(0), signal.SIGKILL)
    os.kill(os.getpid(), signal.SIGKILL)
