"""Source fingerprints: a cheap, stable digest that changes when the upstream data changes.

Each source kind registers one checker (``@checker("http")``) in its own module. A checker gets the
source and its previous fingerprint (for conditional requests and fast paths) and returns a new
fingerprint or raises :class:`SourceError`. :func:`check_many` checks many sources concurrently and
never lets one failure stop the others.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from coralord_dagster.sources.base import Source, SourceError

DEFAULT_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class Fingerprint:
    """``value`` changes iff the source's content changed; ``details`` say what it is made of."""

    value: str
    details: dict[str, Any] = field(default_factory=dict)
    checked_at: float = field(default_factory=time.time)

    def to_json(self) -> dict[str, Any]:
        return {"value": self.value, "details": self.details, "checked_at": self.checked_at}

    @classmethod
    def from_json(cls, d: dict[str, Any] | None) -> Fingerprint | None:
        if not d or "value" not in d:
            return None
        return cls(d["value"], d.get("details", {}), d.get("checked_at", 0.0))

    def changes_from(self, previous: Fingerprint | None) -> list[str]:
        """Names of the parts (files, revision) that differ from ``previous``."""
        if previous is None:
            return ["(first check)"]
        old, new = previous.details.get("items", {}), self.details.get("items", {})
        return sorted(k for k in old.keys() | new.keys() if old.get(k) != new.get(k)) or (
            [] if previous.value == self.value else ["(content)"]
        )


def digest(items: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(items, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def make(items: dict[str, Any], **extra: Any) -> Fingerprint:
    """A fingerprint over ``items`` (name → the part of it that identifies its content)."""
    return Fingerprint(digest(items), {"items": items, **extra})


Checker = Callable[[Source, Fingerprint | None, float], Fingerprint]
CHECKERS: dict[str, Checker] = {}


def checker(kind: str) -> Callable[[Checker], Checker]:
    def register(func: Checker) -> Checker:
        CHECKERS[kind] = func
        return func

    return register


def fingerprint(
    source: Source, previous: Fingerprint | None = None, timeout: float = DEFAULT_TIMEOUT_S
) -> Fingerprint:
    """The source's current fingerprint; raises :class:`SourceError` when it cannot be checked."""
    check = CHECKERS.get(source.checker)
    if check is None:
        raise SourceError(f"source {source.uri}: no checker for {source.checker!r} sources")
    try:
        return check(source, previous, timeout)
    except SourceError:
        raise
    except Exception as e:  # a checker must never take the caller down with it
        raise SourceError(f"source {source.uri}: {type(e).__name__}: {e}") from e


def check_many(
    items: Sequence[tuple[str, Source, Fingerprint | None]],
    timeout: float = DEFAULT_TIMEOUT_S,
    max_workers: int = 64,
) -> dict[str, Fingerprint | SourceError]:
    """Fingerprint many sources concurrently; a failure is returned for its source, not raised."""

    def one(item: tuple[str, Source, Fingerprint | None]) -> tuple[str, Fingerprint | SourceError]:
        name, source, previous = item
        try:
            return name, fingerprint(source, previous, timeout)
        except SourceError as e:
            return name, e

    if not items:
        return {}
    with ThreadPoolExecutor(max_workers=max(1, min(max_workers, len(items)))) as pool:
        return dict(pool.map(one, items))
