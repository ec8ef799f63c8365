"""The Dagster resource that holds a coralord workspace: registry, part storage and catalog."""

from __future__ import annotations

import dagster as dg
from pydantic import Field

from coralord_dagster.workspace import Workspace


class CoralordResource(dg.ConfigurableResource):
    """Where datasets are published: a Git registry, a Parquet part store and a DuckDB catalog.

    Unset fields come from the environment (``CORALORD_REGISTRY``, ``CORALORD_STORAGE``,
    ``CORALORD_CATALOG``), then from defaults (``./.coralord/registry``, storage from the registry's
    ``coralord.toml``). Storage credentials are never configuration: they come from
    ``CORALORD_STORAGE_OPTIONS`` (JSON) or the usual AWS / fsspec environment variables.

    Example::

        import dagster as dg
        from coralord_dagster import CoralordIOManager, CoralordResource

        coralord = CoralordResource(registry="/srv/registry", storage="s3://datasets/parts")
        defs = dg.Definitions(
            assets=[...],
            resources={"coralord": coralord, "coralord_io_manager": CoralordIOManager(coralord=coralord)},
        )
    """

    registry: str | None = Field(
        default=None,
        description="Registry path (created if missing) or Git URL; default ./.coralord/registry.",
    )
    storage: str | None = Field(
        default=None, description="fsspec URL of the part store (local path, s3://bucket/prefix, ...)."
    )
    catalog: str | None = Field(default=None, description="DuckDB catalog file; default inside the registry.")
    remote: str | None = Field(
        default=None, description="Git remote URL the registry pushes every new version to."
    )

    def workspace(self) -> Workspace:
        """Open (creating if needed) the registry, store and catalog."""
        return Workspace.open(
            self.registry, storage=self.storage, catalog=self.catalog, create=True, remote=self.remote
        )
