"""A ``dg`` Component: one dataset folder (descriptor, pipeline, subsets) as its Dagster assets, checks
and sensors. In a ``dg`` project::

    dg scaffold defs coralord_dagster.DatasetComponent my_data   # defs/my_data/defs.yaml, descriptor...
    dg check defs && dg list defs

``defs.yaml``::

    type: coralord_dagster.DatasetComponent
    attributes:
      descriptor: descriptor.yaml        # relative to this folder
      registry: /srv/registry            # optional; default CORALORD_REGISTRY or ./.coralord/registry
      storage: s3://bucket/coralord      # optional; default CORALORD_STORAGE or the registry's own
      group: wine_quality                # optional; default this folder's name
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import dagster as dg
import pydantic
import yaml

from coralord_dagster.descriptor import load_descriptor
from coralord_dagster.orchestration.factory import build_definitions
from coralord_dagster.orchestration.io_manager import CoralordIOManager
from coralord_dagster.orchestration.resource import CoralordResource

__all__ = ["DatasetComponent"]

_DESCRIPTOR = """\
# A coralord dataset: what it is, where its rows come from and the function that builds them.
name: {name}
description: Rows read from data/rows.csv.
license: CC0-1.0
source:
  kind: url
  url: data                 # a folder beside this file; any fsspec URL works (https://, s3://...)
  files: [rows.csv]
pipeline: pipeline.py:build
checks:
  rows: {{min: 1}}
"""

_PIPELINE = '''\
"""Build the dataset's rows from its source (the files the descriptor lists)."""

import pyarrow as pa
import pyarrow.csv


def build(source) -> pa.Table:
    with source.open("rows.csv") as f:
        return pyarrow.csv.read_csv(f)
'''


class DatasetScaffoldParams(pydantic.BaseModel):
    """``dg scaffold defs coralord_dagster.DatasetComponent NAME [--descriptor FILE]``."""

    descriptor: str = "descriptor.yaml"


class DatasetScaffolder(dg.Scaffolder[DatasetScaffoldParams]):
    """Writes ``defs.yaml`` and, when the folder has no descriptor yet, a small working dataset."""

    @classmethod
    def get_scaffold_params(cls) -> type[DatasetScaffoldParams]:
        return DatasetScaffoldParams

    def scaffold(self, request: dg.ScaffoldRequest[DatasetScaffoldParams]) -> None:
        folder = Path(request.target_path)
        folder.mkdir(parents=True, exist_ok=True)
        descriptor = folder / request.params.descriptor
        if not descriptor.exists():
            name = folder.name.lower().replace("-", "_")
            descriptor.write_text(_DESCRIPTOR.format(name=name))
            (folder / "pipeline.py").write_text(_PIPELINE)
            (folder / "data").mkdir(exist_ok=True)
            (folder / "data" / "rows.csv").write_text("id,label\n1,a\n2,b\n3,a\n")
            (folder / "subsets").mkdir(exist_ok=True)  # a file added here later is picked up live
            (folder / "subsets" / "label_a.yaml").write_text(
                "description: The rows labelled a.\nwhere: label = 'a'\n"
            )
        attributes = {"descriptor": request.params.descriptor}
        (folder / "defs.yaml").write_text(
            yaml.safe_dump({"type": request.type_name, "attributes": attributes}, sort_keys=False)
        )


@cache
def _shared(
    registry: str | None, storage: str | None, remote: str | None
) -> tuple[CoralordResource, CoralordIOManager]:
    """One resource and IO manager per configuration: Dagster merges the components' definitions
    only when the resources under one key are the same objects."""
    resource = CoralordResource(registry=registry, storage=storage, remote=remote)
    return resource, CoralordIOManager(coralord=resource)


@dg.scaffold_with(DatasetScaffolder)
class DatasetComponent(dg.Component, dg.Resolvable, dg.Model):
    """A coralord dataset: its descriptor's asset (with its quality gate and parts check), its subsets
    and the sensors that rebuild them when the source, the code or a subset file changes."""

    descriptor: str = pydantic.Field(
        "descriptor.yaml", description="The dataset's descriptor, relative to this component's folder."
    )
    registry: str | None = pydantic.Field(
        None, description="Registry path or Git URL (default: CORALORD_REGISTRY, else ./.coralord/registry)."
    )
    storage: str | None = pydantic.Field(
        None, description="Part storage URL (default: CORALORD_STORAGE, else the registry's own)."
    )
    remote: str | None = pydantic.Field(None, description="Git remote every new version is pushed to.")
    group: str | None = pydantic.Field(
        None,
        description="Dagster asset group (default: this folder's name; the stages of one multi-stage use "
        "case name their use case, e.g. wine_quality).",
    )

    def build_defs(self, context: dg.ComponentLoadContext) -> dg.Definitions:
        desc = load_descriptor(Path(context.path) / self.descriptor)
        if self.group:
            desc.group = self.group
        resource, io_manager = _shared(self.registry, self.storage, self.remote)
        return build_definitions([desc], resource=resource, io_manager=io_manager, scope=desc.name)
