"""Git repositories: the commit a branch or tag points at, from ``git ls-remote`` (no clone)."""

from __future__ import annotations

import subprocess

from coralord_dagster.sources.base import Source, SourceError
from coralord_dagster.sources.fingerprint import Fingerprint, checker, make


@checker("git")
def check_git(source: Source, previous: Fingerprint | None, timeout: float) -> Fingerprint:
    ref = source.options.get("ref", "HEAD")
    try:
        out = subprocess.run(
            ["git", "ls-remote", source.base, ref],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=True,
        ).stdout
    except subprocess.TimeoutExpired:
        raise SourceError(f"source {source.uri}: git ls-remote timed out after {timeout} s") from None
    except subprocess.CalledProcessError as e:
        raise SourceError(f"source {source.uri}: {e.stderr.strip() or e}") from None
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
