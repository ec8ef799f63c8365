"""Dataset names, semantic versions and ``NAME@REV`` references.

A name is valid as a Dagster asset key, a path segment and a Git ref all at once, so it can never
escape a folder or form an odd tag. A subset's full name is ``dataset/subset``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from coralord_dagster.errors import InvalidNameError

_SEGMENT = re.compile(r"[a-z][a-z0-9_]{0,63}")
_SEMVER = re.compile(r"v?(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)")
_CONTENT_PREFIX = re.compile(r"[0-9a-f]{8,64}")

Bump = Literal["major", "minor", "patch"]


def validate_name(name: str, *, what: str = "dataset name") -> str:
    """Return ``name`` if it is a valid dataset or ``dataset/subset`` name, else raise."""
    if not isinstance(name, str):
        raise InvalidNameError(f"{what} must be a string, got {type(name).__name__}")
    segments = name.split("/")
    if len(segments) > 2 or not all(_SEGMENT.fullmatch(s) for s in segments):
        hint = re.sub(r"[^a-z0-9_]+", "_", name.lower()).strip("_") or "my_dataset"
        if not hint[0].isalpha():
            hint = "d_" + hint
        raise InvalidNameError(
            f"invalid {what} {name!r}: use lowercase letters, digits and '_', starting with a letter, "
            f"at most 64 characters (a subset is 'dataset/subset'); did you mean {hint[:64]!r}?"
        )
    return name


def asset_key_path(name: str) -> list[str]:
    """The Dagster asset key path of a dataset or subset name."""
    return validate_name(name).split("/")


@dataclass(frozen=True, order=True)
class SemVer:
    major: int
    minor: int
    patch: int

    @classmethod
    def parse(cls, text: str) -> SemVer:
        m = _SEMVER.fullmatch(text.strip())
        if not m:
            raise InvalidNameError(f"invalid version {text!r}: expected MAJOR.MINOR.PATCH, e.g. v1.2.0")
        return cls(*(int(g) for g in m.groups()))

    def bump(self, kind: Bump) -> SemVer:
        if kind == "major":
            return SemVer(self.major + 1, 0, 0)
        if kind == "minor":
            return SemVer(self.major, self.minor + 1, 0)
        return SemVer(self.major, self.minor, self.patch + 1)

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}.{self.patch}"


FIRST_VERSION = SemVer(1, 0, 0)


def tag_name(name: str, version: SemVer) -> str:
    """The Git tag of a published version: ``NAME-vMAJOR.MINOR.PATCH``."""
    return f"{validate_name(name)}-v{version}"


def parse_tag(tag: str) -> tuple[str, SemVer] | None:
    """Split a registry tag into (name, version); None for tags that are not ours."""
    name, sep, ver = tag.rpartition("-v")
    if not sep:
        return None
    try:
        return validate_name(name), SemVer.parse(ver)
    except InvalidNameError:
        return None


@dataclass(frozen=True)
class Ref:
    """A parsed ``NAME[@REV]``: REV is ``latest``, ``vX.Y.Z`` or a content-id prefix."""

    name: str
    rev: str = "latest"

    @classmethod
    def parse(cls, text: str) -> Ref:
        name, _, rev = text.partition("@")
        validate_name(name)
        rev = rev or "latest"
        if rev != "latest" and not _SEMVER.fullmatch(rev) and not _CONTENT_PREFIX.fullmatch(rev):
            raise InvalidNameError(
                f"invalid revision {rev!r} in {text!r}: use 'latest', 'vMAJOR.MINOR.PATCH' "
                "or at least 8 hex digits of a content id"
            )
        return cls(name, rev)

    @property
    def semver(self) -> SemVer | None:
        return SemVer.parse(self.rev) if _SEMVER.fullmatch(self.rev) else None

    def __str__(self) -> str:
        return f"{self.name}@{self.rev}"
