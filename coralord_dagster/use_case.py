"""Running a descriptor's pipeline and publishing its output, without Dagster.

The Dagster asset factory calls the same functions, so a dataset built from the command line or a test
is built exactly as in a deployment.
"""

from __future__ import annotations

import logging
from typing import Any

from coralord_dagster.croissant import DatasetInfo
from coralord_dagster.descriptor import LoadedDescriptor, pipeline_signature_accepts
from coralord_dagster.errors import CoralordError, PipelineError
from coralord_dagster.publish import Provenance, PublishResult, Versioned
from coralord_dagster.sources import SourceError, fingerprint, resolve_source
from coralord_dagster.workspace import Workspace

log = logging.getLogger(__name__)


def dataset_info(desc: LoadedDescriptor) -> DatasetInfo:
    """What the Croissant says about a descriptor's dataset."""
    s = desc.spec
    return DatasetInfo(
        name=s.name,
        description=s.description,
        license=s.license,
        url=s.url,
        citation=s.citation,
        keywords=tuple(s.keywords),
        split_column=s.splits.column if s.splits else None,
        split_names=tuple(s.splits.names) if s.splits else (),
        columns={k: v.model_dump(exclude_none=True) for k, v in s.columns.items()},
        pipeline=s.pipeline,
        environment=s.environment.model_dump(exclude_none=True),
        descriptor_text=desc.text,
        metadata_digest=desc.metadata_digest(),
    )


def run_pipeline(desc: LoadedDescriptor, context: Any = None) -> Any:
    """Call the descriptor's pipeline on its resolved source; returns a DataFrame or Arrow table."""
    func = desc.load_pipeline()
    kwargs = (
        {"context": context} if context is not None and pipeline_signature_accepts(func, "context") else {}
    )
    try:
        return func(resolve_source(desc), **kwargs)
    except CoralordError:
        raise
    except Exception as e:
        raise PipelineError(
            f"{desc.path}: pipeline {desc.spec.pipeline} failed: {type(e).__name__}: {e}"
        ) from e


def provenance(desc: LoadedDescriptor, run_id: str | None = None) -> Provenance:
    """Where a build comes from. Call it *before* running the pipeline: the source fingerprint it
    records then covers what the pipeline read, and a change during the run is seen at the next check.
    """
    source = resolve_source(desc)
    described = source.describe()
    try:
        described["fingerprint"] = fingerprint(source).value
    except SourceError as e:  # the pipeline may still read it; the next check will compare afresh
        log.warning("not fingerprinted: %s", e)
        described["fingerprint"] = None
    return Provenance(sources=[described], code_version=desc.code_version(), run_id=run_id)


def build(desc: LoadedDescriptor, run_id: str | None = None, context: Any = None) -> Versioned:
    """Build a descriptor's dataset: provenance first, then the pipeline."""
    prov = provenance(desc, run_id)
    data = run_pipeline(desc, context)
    return Versioned(data, dataset_info(desc), prov, part_rows=desc.spec.storage.part_rows)


def publish_descriptor(
    desc: LoadedDescriptor, workspace: Workspace, run_id: str | None = None
) -> PublishResult:
    """Build a descriptor's dataset and publish it (the whole path, without Dagster)."""
    v = build(desc, run_id)
    return workspace.publisher().publish(v.data, v.info, v.provenance, part_rows=v.part_rows)
