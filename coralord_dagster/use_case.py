"""Running a descriptor's pipeline and publishing its output, without Dagster.

The Dagster asset factory calls the same functions, so a dataset built from the command line or a test
is built exactly as in a deployment.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from coralord_dagster.client import DatasetVersion, open_dataset
from coralord_dagster.descriptor import LoadedDescriptor, pipeline_signature_accepts
from coralord_dagster.errors import CoralordError, DescriptorError, NotFoundError, PipelineError
from coralord_dagster.model import DatasetInfo, ParentRef, Provenance, SourceRecord
from coralord_dagster.publish import PublishResult, Versioned
from coralord_dagster.sources import Source, SourceError, fingerprint, resolve_source
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
        creator=s.creator,
        publisher=s.publisher,
        split_column=s.splits.column if s.splits else None,
        split_names=tuple(s.splits.names) if s.splits else (),
        columns={k: v.model_dump(exclude_none=True) for k, v in s.columns.items()},
        pipeline=s.pipeline,
        environment=s.environment.model_dump(exclude_none=True),
        descriptor_text=desc.text,
        metadata_digest=desc.metadata_digest(),
        checks=s.checks if s.checks.declared else None,
        key=tuple(s.key or ()),
    )


#: Runs a pipeline callable: ``runner(desc, func, source, kwargs)``. The default calls it in-process;
#: the Dagster adapter passes one that runs it in the descriptor's Docker image.
Runner = Callable[[LoadedDescriptor, Callable[..., Any], Any, dict[str, Any]], Any]


def in_process(desc: LoadedDescriptor, func: Callable[..., Any], source: Any, kwargs: dict[str, Any]) -> Any:
    return func(source, **kwargs)


def pipeline_input(desc: LoadedDescriptor, workspace: Workspace | None = None) -> Source | DatasetVersion:
    """What the pipeline gets as its first argument: the resolved source, or for a ``dataset`` source
    the upstream version (resolved now, once, so lineage names exactly what was read)."""
    source = resolve_source(desc)
    if source.kind != "dataset":
        return source
    try:
        return open_dataset(
            source.options["dataset"], source.options["version"], workspace=workspace or Workspace.open()
        )
    except NotFoundError as e:
        raise PipelineError(
            f"{desc.path}: field 'source.name': upstream dataset {source.options['dataset']!r} "
            f"{source.options['version']} is not published yet ({e}); publish it first"
        ) from None


def run_pipeline(
    desc: LoadedDescriptor,
    context: Any = None,
    *,
    source: Any = None,
    params: dict[str, Any] | None = None,
    params_from: Path | None = None,
    workspace: Workspace | None = None,
    runner: Runner = in_process,
) -> Any:
    """Call the descriptor's pipeline; returns a DataFrame, an Arrow table or a :class:`Result`.

    ``params`` override the descriptor's ``params`` (a subset's window, say; ``params_from`` is the
    file they come from, for error messages). The pipeline gets ``params`` and ``context`` only if its
    signature asks for them.
    """
    func = desc.load_pipeline()
    kwargs: dict[str, Any] = {}
    if context is not None and pipeline_signature_accepts(func, "context"):
        kwargs["context"] = context
    if pipeline_signature_accepts(func, "params"):
        kwargs["params"] = desc.pipeline_params(params, params_from, func)
    elif params or desc.spec.params:
        raise DescriptorError(
            f"{params_from or desc.path}: field 'params': pipeline {desc.spec.pipeline} takes no "
            "'params' argument; add one or remove the params"
        )
    if source is None:
        source = pipeline_input(desc, workspace)
    try:
        return runner(desc, func, source, kwargs)
    except CoralordError:
        raise
    except Exception as e:
        raise PipelineError(
            f"{desc.path}: pipeline {desc.spec.pipeline} failed: {type(e).__name__}: {e}"
        ) from e


def provenance(desc: LoadedDescriptor, run_id: str | None = None, source: Any = None) -> Provenance:
    """Where a build comes from. Call it *before* running the pipeline: the source fingerprint it
    records then covers what the pipeline read, and a change during the run is seen at the next check.
    ``source``: the upstream version already opened for a ``dataset`` source.
    """
    if isinstance(source, DatasetVersion):
        m = source.manifest
        return Provenance(
            sources=[SourceRecord(kind="dataset", uri=f"coralord:{source.name}", fingerprint=m.content_id)],
            derived_from=[
                ParentRef(
                    name=source.name, version=source.version, content_id=m.content_id, relation="derivedFrom"
                )
            ],
            code_version=desc.code_version(),
            run_id=run_id,
        )
    resolved = resolve_source(desc)
    described = SourceRecord.model_validate(resolved.describe())
    try:
        described.fingerprint = fingerprint(resolved).value
    except SourceError as e:  # the pipeline may still read it; the next check will compare afresh
        log.warning("not fingerprinted: %s", e)
    return Provenance(sources=[described], code_version=desc.code_version(), run_id=run_id)


def params_record(
    desc: LoadedDescriptor, overrides: dict[str, Any] | None = None, where: Path | None = None
) -> dict[str, Any] | None:
    """The validated pipeline parameters as lineage records them (None when there are none)."""
    if not desc.spec.params and overrides is None:
        return None
    params = desc.pipeline_params(overrides, where)
    return (
        params.model_dump(mode="json", exclude_none=True) if hasattr(params, "model_dump") else dict(params)
    )


def build(
    desc: LoadedDescriptor,
    run_id: str | None = None,
    context: Any = None,
    *,
    workspace: Workspace | None = None,
    runner: Runner = in_process,
    environment: dict[str, Any] | None = None,
) -> Versioned:
    """Build a descriptor's dataset: provenance first, then the pipeline.

    ``environment``: what the Croissant records about where the pipeline ran (set by ``runner``'s
    owner); default: the descriptor's own ``environment``.
    """
    source = pipeline_input(desc, workspace)
    prov = provenance(desc, run_id, source)
    params = params_record(desc)
    if params is not None and prov.sources:
        prov.sources[0].params = params
    data = run_pipeline(desc, context, source=source, runner=runner)
    if environment is not None:
        prov = replace(prov, environment=environment)
    return Versioned(data, dataset_info(desc), prov, part_rows=desc.spec.storage.part_rows)


def publish_descriptor(
    desc: LoadedDescriptor, workspace: Workspace, run_id: str | None = None
) -> PublishResult:
    """Build a descriptor's dataset and publish it (the whole path, without Dagster)."""
    v = build(desc, run_id, workspace=workspace)
    return workspace.publisher().publish(v.data, v.info, v.provenance, part_rows=v.part_rows)
