"""Git repositories: the commit a branch or tag points at, from ``git ls-remote`` (no clone)."""

from __future__ import annotations

import subprocess

from coralord_dagster.redact import redact_url
from coralord_dagster.sources.base import Source, SourceError, git_environment
from coralord_dagster.sources.fingerprint import Fingerprint, checker, make


def _git_arguments(source: Source, **values: str) -> list[str]:
    """``values`` from a descriptor, checked to be safe as git arguments (they go after ``--`` too).

    The descriptor model refuses them already; this holds for a source built any other way. A value
    that starts with '-' would be read as an option, and ``--upload-pack=<command>`` runs a command.
    """
    for field, value in values.items():
        if value.startswith("-") or "\0" in value or "\n" in value:
            raise SourceError(
                f"source {source.uri}: {field} {value[:40]!r} is not a repository or ref name (it would "
                "reach git as an option); fix the descriptor"
            )
    return list(values.values())


@checker("git")
def check_git(source: Source, previous: Fingerprint | None, timeout: float) -> Fingerprint:
    ref = source.options.get("ref", "HEAD")
    repo, ref = _git_arguments(source, repository=source.base, ref=ref)
    try:
        out = subprocess.run(
            ["git", "ls-remote", "--", repo, ref],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=True,
            env=git_environment(),
            stdin=subprocess.DEVNULL,
        ).stdout
    except subprocess.TimeoutExpired:
        raise SourceError(f"source {source.uri}: git ls-remote timed out after {timeout} s") from None
    except subprocess.CalledProcessError as e:
        raise SourceError(f"source {source.uri}: {redact_url(e.stderr.strip() or str(e))}") from None
    shas = {line.split("\t")[1]: line.split("\t")[0] for line in out.splitlines() if "\t" in line}
    if not shas:
        raise SourceError(f"source {source.uri}: no ref {ref!r}")
    # An exact ref wins over the peeled/abbreviated forms ls-remote also lists.
    sha = (
        shas.get(ref)
        or shas.get(f"refs/heads/{ref}")
        or shas.get(f"refs/tags/{ref}")
        or next(iter(shas.values()))
    )
    return make({"ref": ref, "commit": sha})
