"""Every error coralord raises on purpose derives from :class:`CoralordError`.

Subclasses also inherit the builtin that fits (``ValueError``, ``LookupError``, ``OSError``), so callers
that already catch builtins keep working. Messages name the file, field or dataset and say what to do.
The CLI maps :attr:`CoralordError.exit_code` to its process exit code:

==  ==========================================================================
0   success
1   a check found a problem: stored data is corrupt or missing (verify, diff)
2   bad usage or input: a name, a file, a field, a predicate
3   storage or the registry's remote unreachable after retries: try again later
4   an internal error (a bug): the message says how to get the traceback
==  ==========================================================================
"""

from __future__ import annotations


class CoralordError(Exception):
    """Base class of coralord's errors."""

    #: Process exit code the CLI uses: 2 = bad input or usage, 1 = a check found a problem.
    exit_code = 2


class InvalidNameError(CoralordError, ValueError):
    """A dataset, subset or version name does not follow the naming rules."""


class DescriptorError(CoralordError, ValueError):
    """A descriptor file is missing, unreadable or invalid."""


class ConfigError(CoralordError, ValueError):
    """Settings (registry location, storage URL, coralord.toml) are invalid."""


class NotFoundError(CoralordError, LookupError):
    """A dataset, version or file does not exist."""


class DatasetNotFoundError(NotFoundError):
    """No dataset of that name is in the registry."""


class VersionNotFoundError(NotFoundError):
    """The dataset exists but not at the requested version."""


class RegistryError(CoralordError, OSError):
    """The Git registry could not be read or written."""


class StorageError(CoralordError, OSError):
    """The part store could not be read or written."""


class StorageUnavailableError(StorageError):
    """Storage (or the registry's remote) could not be reached after retries; nothing was changed."""

    exit_code = 3


class IntegrityError(CoralordError):
    """Stored data does not match its recorded checksum or size, or is missing."""

    exit_code = 1


class PublishConflictError(RegistryError):
    """A version could not be published: the remote kept moving, or rejected the push."""


class CroissantError(CoralordError, ValueError):
    """A Croissant document failed validation."""


class PipelineError(CoralordError, RuntimeError):
    """A dataset's pipeline could not be loaded or returned something unusable."""
