"""The Dagster resource that holds a coralord workspace: registry, part storage and catalog."""

from __future__ import annotations

import dagster as dg
from pydantic import ConfigDict, Field, ValidationInfo, field_validator

from coralord_dagster.redact import refuse_url_credentials
from coralord_dagster.workspace import Workspace


class CoralordResource(dg.ConfigurableResource):
    """Where datasets are published: a Git registry, a Parquet part store and a DuckDB catalog.

    Unset fields come from the environment (``CORALORD_REGISTRY``, ``CORALORD_STORAGE``,
    ``CORALORD_CATALOG``), then from defaults (``./.coralord/registry``, storage from the registry's
    ``coralord.toml``). Storage credentials are never configuration: they come from
    ``CORALORD_STORAGE_OPTIONS`` (JSON) or the usual AWS / fsspec environment variables; Git passwords
    from a credential helper or an SSH key. A URL that carries credentials (``s3://KEY:SECRET@bucket``,
    ``https://user:token@host/r.git``) is refused, as configuration or as a ``dg.EnvVar`` alike: Dagster
    stores configuration in its run storage, Git a remote's URL in ``.git/config``.

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
    webserver: str | None = Field(
        default=None,
        description="URL of the Dagster webserver (e.g. http://127.0.0.1:3000; default "
        "$CORALORD_DAGSTER_WEBSERVER). When set, a run that built pipeline code changed on disk since "
        "the code location was loaded reloads that location, so the code version Dagster shows is the "
        "one the version recorded (no stale-code badge).",
    )

    # A refused value is not repeated in the validation error (Dagster stores and shows that error).
    model_config = ConfigDict(hide_input_in_errors=True)

    @field_validator("registry", "remote", "webserver")
    @classmethod
    def _no_git_password(cls, value: str | None, info: ValidationInfo) -> str | None:
        refuse_url_credentials(value, str(info.field_name))
        return value

    @field_validator("storage")
    @classmethod
    def _no_storage_credentials(cls, value: str | None) -> str | None:
        refuse_url_credentials(value, "storage", user_too=True)
        return value

    def workspace(self) -> Workspace:
        """Open (creating if needed) the registry, store and catalog."""
        return Workspace.open(
            self.registry, storage=self.storage, catalog=self.catalog, create=True, remote=self.remote
        )
