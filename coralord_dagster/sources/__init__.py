"""Upstream sources: resolution, reading, and change detection by fingerprint.

One module per kind of source; each registers a checker with :func:`fingerprint.checker`. Adding a
kind means adding a module here and importing it below.
"""

from coralord_dagster.sources import croissant, git, http, huggingface, local, s3  # noqa: F401  (register)
from coralord_dagster.sources.base import Source, SourceError, git_checkout, override_variable, resolve_source
from coralord_dagster.sources.fingerprint import Fingerprint, check_many, fingerprint

__all__ = [
    "Fingerprint",
    "Source",
    "SourceError",
    "check_many",
    "fingerprint",
    "git_checkout",
    "override_variable",
    "resolve_source",
]
