"""Where a registry, its part store and its catalog are, resolved from arguments, environment and config.

Resolution order for each setting: explicit argument, then environment, then default.

======================  ==========================  ===============================================
setting                 environment                 default
======================  ==========================  ===============================================
registry (path or URL)  ``CORALORD_REGISTRY``       ``./.coralord/registry``
storage URL             ``CORALORD_STORAGE``        ``[storage] url`` of the registry's coralord.toml
storage options (JSON)  ``CORALORD_STORAGE_OPTIONS`` none (fsspec also reads ``FSSPEC_S3_*``, AWS env)
catalog file            ``CORALORD_CATALOG``        ``<registry>/.git/coralord/catalog.duckdb``
======================  ==========================  ===============================================

A new local registry stores its parts in ``../storage`` next to it unless told otherwise.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from coralord_dagster.catalog import Catalog
from coralord_dagster.errors import ConfigError
from coralord_dagster.publish import Publisher
from coralord_dagster.reader import PartCache
from coralord_dagster.redact import refuse_url_credentials
from coralord_dagster.registry import Registry, default_cache_dir, is_git_url
from coralord_dagster.store import PartStore

DEFAULT_REGISTRY = ".coralord/registry"
DEFAULT_STORAGE = "../storage"


def registry_location(registry: str | Path | None = None) -> str:
    return str(registry or os.environ.get("CORALORD_REGISTRY") or DEFAULT_REGISTRY)


def storage_options_from_env() -> dict[str, Any]:
    raw = os.environ.get("CORALORD_STORAGE_OPTIONS")
    if not raw:
        return {}
    try:
        opts = json.loads(raw)
    except json.JSONDecodeError as e:
        raise ConfigError(
            f"CORALORD_STORAGE_OPTIONS is not valid JSON ({e}); use e.g. '{{\"anon\": false}}'"
        ) from None
    if not isinstance(opts, dict):
        raise ConfigError("CORALORD_STORAGE_OPTIONS must be a JSON object")
    return opts


@dataclass
class Workspace:
    """An opened registry with its part store and catalog."""

    registry: Registry
    store: PartStore
    catalog: Catalog
    cache: PartCache

    @classmethod
    def open(
        cls,
        registry: str | Path | None = None,
        *,
        storage: str | None = None,
        storage_options: dict[str, Any] | None = None,
        catalog: str | Path | None = None,
        create: bool = False,
        remote: str | None = None,
    ) -> Workspace:
        location = registry_location(registry)
        storage = storage or os.environ.get("CORALORD_STORAGE")
        # Refused before a registry is created or cloned: a clone keeps its URL in .git/config, a new
        # registry its storage URL in coralord.toml, a remote goes into .git/config.
        refuse_url_credentials(location, "registry")
        refuse_url_credentials(remote, "remote")
        refuse_url_credentials(storage, "storage URL", user_too=True)
        if create and not is_git_url(location):
            reg = Registry.init(location, storage_url=storage or DEFAULT_STORAGE, remote=remote)
        elif is_git_url(location):
            reg = Registry.open(location)
        else:
            reg = Registry(location, remote=remote)
        # The HTTP address consumers fetch parts from (a CDN or a public bucket): the registry's own
        # setting applies to the registry's own storage only.
        public_url = os.environ.get("CORALORD_STORAGE_PUBLIC_URL") or (None if storage else reg.public_url())
        store = PartStore(
            storage or reg.storage_url(), storage_options or storage_options_from_env(), public_url=public_url
        )
        cat = Path(
            catalog or os.environ.get("CORALORD_CATALOG") or reg.path / ".git" / "coralord" / "catalog.duckdb"
        )
        return cls(reg, store, Catalog(cat), PartCache(default_cache_dir()))

    def publisher(self) -> Publisher:
        return Publisher(self.registry, self.store, self.catalog)
