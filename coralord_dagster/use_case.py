"""Running a descriptor's pipeline and publishing its output, without Dagster.

The Dagster asset factory calls the same functions, so a dataset built from the command line or a test
is built exactly as in a deployment.
"""

from __future__ import annotations

from typing import Any

from coralord_dagster.croissant import DatasetInfo
from coralord_dagster.descriptor import LoadedDescriptor, pipeline_signature_accepts
from coralord_dagster.errors import CoralordError, PipelineError
from coralord_dagster.publish import Provenance, PublishResult
from coralord_dagster.sources import resolve_source
from coralord_dagster.workspace import Workspace


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
    source = resolve_source(desc)
    described = source.describe()
    if source.base != source.uri:
        described["read_from"] = source.base
    return Provenance(sources=[described], code_version=desc.code_version(), run_id=run_id)


def publish_descriptor(
    desc: LoadedDescriptor, workspace: Workspace, run_id: str | None = None
) -> PublishResult:
    """Build a descriptor's dataset and publish it (the whole path, without Dagster)."""
    data = run_pipeline(desc)
    return workspace.publisher().publish(
        data, dataset_info(desc), provenance(desc, run_id), part_rows=desc.spec.storage.part_rows
    )
