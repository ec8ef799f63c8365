"""Is a dataset or subset current, and if not, why: decided here, once, against what is published.

The Dagster sensors translate these reasons into runs (adding what only they know: the cadence and
the changes seen since they started); ``coralord status`` prints them for people and scripts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from coralord_dagster.descriptor import LoadedDescriptor, LoadedSubset, load_subsets
from coralord_dagster.errors import CoralordError
from coralord_dagster.model import Manifest
from coralord_dagster.sources import Fingerprint, SourceError, fingerprint, resolve_source
from coralord_dagster.workspace import Workspace

__all__ = ["SOURCE_CHANGED", "Status", "dataset_reasons", "status", "subset_reason"]

#: A params subset (built by the pipeline from the source) whose source changed since it was built.
SOURCE_CHANGED = "its source changed since it was built"


@dataclass(frozen=True)
class Status:
    """One dataset's or subset's state: ``current`` (nothing to do), ``stale`` (``reasons`` say why a
    build would publish something new) or ``error`` (it could not be decided: ``reasons``)."""

    name: str
    version: str | None
    state: str
    reasons: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "version": self.version, "state": self.state, "reasons": self.reasons}


def dataset_reasons(latest: Manifest | None, source: str, code: str) -> list[str]:
    """Why a dataset must be rebuilt: the ``source`` fingerprint or ``code`` version differ from what
    its ``latest`` version was built from (empty: current)."""
    if latest is None:
        return ["no version published yet"]
    built_from = latest.sources[0].fingerprint if latest.sources else None
    reasons = []
    if built_from != source:
        reasons.append("source differs from the published version")
    if latest.code_version != code:
        reasons.append(f"code version {latest.code_version} -> {code}")
    return reasons


def subset_reason(
    ws: Workspace,
    sub: LoadedSubset,
    parent_version: str,
    observed: str | None = None,
) -> str | None:
    """Why a subset needs a new version now (None: current): no version yet, a newer parent, a changed
    definition, or for a params subset a source changed since it was built (``observed``)."""
    latest = ws.registry.latest(sub.full_name)
    if latest is None:
        return "it has no version yet"
    manifest = ws.registry.manifest(latest)
    parent = manifest.parent
    if parent is None or parent.version != parent_version:
        return f"its parent {sub.dataset} is now v{parent_version}"
    if parent.subset is not None and parent.subset != sub.spec.model_dump(mode="json", exclude_none=True):
        return "its definition changed"
    built_from = manifest.sources[0].fingerprint if manifest.sources else None
    if sub.spec.params is not None and observed and built_from != observed:
        return SOURCE_CHANGED
    return None


def status(ws: Workspace, descriptors: Sequence[LoadedDescriptor]) -> list[Status]:
    """The state of every dataset in ``descriptors`` and of its subsets (sources are checked now)."""
    out: list[Status] = []
    for desc in descriptors:
        latest = ws.registry.latest(desc.name)
        version = str(latest.version) if latest else None
        try:
            source = _source_fingerprint(ws, desc)
            manifest = ws.registry.manifest(latest) if latest else None
            reasons = dataset_reasons(manifest, source.value, desc.code_version())
        except CoralordError as e:
            out.append(Status(desc.name, version, "error", [str(e)]))
            continue
        out.append(Status(desc.name, version, "stale" if reasons else "current", reasons))
        try:
            subsets = load_subsets(desc)
        except CoralordError as e:
            out.append(Status(f"{desc.name}/*", None, "error", [str(e)]))
            continue
        for sub in subsets:
            sub_latest = ws.registry.latest(sub.full_name)
            sub_version = str(sub_latest.version) if sub_latest else None
            if latest is None:
                out.append(Status(sub.full_name, sub_version, "stale", [f"{desc.name} has no version yet"]))
                continue
            why = subset_reason(ws, sub, str(latest.version), source.value)
            out.append(
                Status(sub.full_name, sub_version, "stale" if why else "current", [why] if why else [])
            )
    return out


def _source_fingerprint(ws: Workspace, desc: LoadedDescriptor) -> Fingerprint:
    """What the dataset is built from now: its source's fingerprint, or for a stage the upstream
    dataset's latest content id."""
    source = resolve_source(desc)
    if source.kind == "dataset":
        upstream = ws.registry.latest(str(source.options["dataset"]))
        if upstream is None:
            raise SourceError(f"upstream dataset {source.options['dataset']} has no version yet")
        return Fingerprint(ws.registry.manifest(upstream).content_id, {})
    return fingerprint(source)
