"""A versioned Parquet IO manager: every output is published as a dataset version.

Why not ``UPathIOManager``: it maps one asset (partition) to one path and overwrites it, while a
coralord version is a set of immutable, content-addressed parts shared with other versions, plus a
Git commit. The paths are the store's business; this class only translates between Dagster's contexts
and :class:`~coralord_dagster.publish.Publisher`.

Assets built from descriptors return :class:`~coralord_dagster.publish.Versioned` (data plus its
documentation and provenance). Plain ``@asset`` functions returning a DataFrame or Arrow table work
too: the dataset is named after the asset key and documented from the asset's description and
``coralord/license`` metadata.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import dagster as dg
import pandas as pd
import pyarrow as pa
from pydantic import Field

from coralord_dagster.client import open_dataset
from coralord_dagster.diff import diff_versions
from coralord_dagster.model import DatasetInfo, Provenance
from coralord_dagster.orchestration.metadata import publish_metadata
from coralord_dagster.orchestration.resource import CoralordResource
from coralord_dagster.publish import PublishResult, Versioned

PIN_KEY = "coralord/version"
IO_MANAGER_KEY = "coralord_io_manager"


class CoralordIOManager(dg.ConfigurableIOManager):
    """Publishes each output as a new version (Parquet parts, Croissant 1.1, Git tag, catalog entry).

    Identical content publishes nothing and reports "unchanged, still vX.Y.Z". Loading an input returns
    the latest version, or the one pinned with ``metadata={"coralord/version": "v1.2.0"}`` on the
    ``AssetIn`` or on the upstream asset. Parts are checked against their sha256 on load unless
    ``verify`` is off, so corrupt storage fails the step instead of feeding bad data downstream.
    """

    coralord: CoralordResource = Field(description="The registry, storage and catalog to publish to.")
    verify: bool = Field(default=True, description="Check every part's sha256 when loading an input.")

    def handle_output(self, context: dg.OutputContext, obj: Any) -> None:
        if obj is None:
            return
        if isinstance(obj, Versioned):
            result = (
                self.coralord.workspace()
                .publisher()
                .publish(
                    obj.data,
                    obj.info,
                    obj.provenance,
                    part_rows=obj.part_rows,
                    check_results=obj.check_results,
                )
            )
            self._report(context, obj.info.name, result, obj.info)
            return
        name = "/".join(context.asset_key.path)
        meta = context.definition_metadata or {}
        info = self._plain_dataset_info(context, name, meta)
        code_version = context.asset_spec.code_version if context.has_asset_key else None
        prov = Provenance(code_version=code_version, run_id=context.run_id)
        part_rows = None
        result = self.coralord.workspace().publisher().publish(obj, info, prov, part_rows=part_rows)
        self._report(context, name, result, info)

    def _report(self, context: dg.OutputContext, name: str, result: PublishResult, info: DatasetInfo) -> None:
        context.add_output_metadata(report(context.log, self.coralord, name, result, info))

    @staticmethod
    def _plain_dataset_info(context: dg.OutputContext, name: str, meta: Mapping[str, Any]) -> DatasetInfo:
        """A dataset written by a plain ``@asset``: documented from the asset itself."""
        description = (
            context.asset_spec.description if context.has_asset_key else None
        ) or f"Dataset {name}."
        license_ = meta.get("coralord/license", "unspecified")
        return DatasetInfo(
            name=name, description=description, license=str(getattr(license_, "value", license_))
        )

    def load_input(self, context: dg.InputContext) -> Any:
        upstream = context.upstream_output
        name = "/".join(context.asset_key.path)
        pin = (context.definition_metadata or {}).get(PIN_KEY)
        if pin is None and upstream is not None:
            pin = (upstream.definition_metadata or {}).get(PIN_KEY)
        version = str(getattr(pin, "value", pin) or "latest")
        ds = open_dataset(name, version, workspace=self.coralord.workspace())
        table = ds.to_arrow(verify=self.verify)
        context.log.info(f"loaded {name} v{ds.version} ({table.num_rows} rows)")
        wanted = getattr(context.dagster_type, "typing_type", None)
        if wanted is pa.Table:
            return table
        if wanted is pd.DataFrame or ds.manifest.produced_as == "pandas":
            return table.to_pandas()
        return table


def report(
    log: Any, coralord: CoralordResource, name: str, result: PublishResult, info: DatasetInfo
) -> dict[str, Any]:
    """Log a publish and return its materialization metadata, with the row diff against the previous
    version (by the descriptor's key when both versions have it, else rows compared whole)."""
    log.info(
        f"{name}: {result.summary} ({result.stats.parts_written} part(s) written, "
        f"{result.stats.parts_reused} reused)"
    )
    for warning in result.warnings:
        log.warning(warning)
    metadata = publish_metadata(result, info)
    previous = result.manifest.previous
    if result.created and previous:
        ws = coralord.workspace()
        a = open_dataset(f"{name}@v{previous.version}", workspace=ws)
        b = open_dataset(f"{name}@v{result.version}", workspace=ws)
        both = {f["name"] for f in a.manifest.fields} & {f["name"] for f in b.manifest.fields}
        d = diff_versions(a, b, key=list(info.key) if info.key and set(info.key) <= both else None)
        metadata["coralord/diff"] = d.summary()
        metadata["coralord/diff_json"] = dg.MetadataValue.json(d.to_json())
    return metadata
