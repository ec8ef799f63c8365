"""coralord-dagster: software-defined, self-updating ML datasets in Dagster.

The core (descriptors, store, Croissant, registry, catalog, client) runs without Dagster; the
Dagster adapters live in :mod:`coralord_dagster.orchestration` and are re-exported here.
"""

from coralord_dagster.catalog import Catalog
from coralord_dagster.client import DatasetVersion, open_dataset
from coralord_dagster.descriptor import Descriptor, LoadedDescriptor, discover_descriptors, load_descriptor
from coralord_dagster.errors import (
    CoralordError,
    CroissantError,
    DatasetNotFoundError,
    DescriptorError,
    IntegrityError,
    InvalidNameError,
    NotFoundError,
    PipelineError,
    PublishConflictError,
    RegistryError,
    StorageError,
    StorageUnavailableError,
    VersionNotFoundError,
)
from coralord_dagster.model import (
    DatasetInfo,
    Manifest,
    ParentRef,
    PartRef,
    Provenance,
    SourceRecord,
    VersionRef,
)
from coralord_dagster.publish import Publisher, PublishResult, Result, Versioned
from coralord_dagster.registry import Registry
from coralord_dagster.store import PartStore
from coralord_dagster.use_case import publish_descriptor
from coralord_dagster.workspace import Workspace

_DAGSTER_EXPORTS = {"CoralordIOManager", "CoralordResource", "build_definitions"}


def __getattr__(name: str) -> object:
    # The Dagster adapters are imported on first use: the CLI and consumers never pay for Dagster.
    if name in _DAGSTER_EXPORTS:
        from coralord_dagster import orchestration

        return getattr(orchestration, name)
    if name == "DatasetComponent":
        from coralord_dagster.components import DatasetComponent

        return DatasetComponent
    raise AttributeError(f"module 'coralord_dagster' has no attribute {name!r}")


def __dir__() -> list[str]:
    # `dg` lists a registry module's component types from dir(): the lazy ones too.
    return sorted([*globals(), *_DAGSTER_EXPORTS, "DatasetComponent"])


__all__ = [
    "Catalog",
    "CoralordError",
    "CoralordIOManager",
    "CoralordResource",
    "CroissantError",
    "DatasetComponent",
    "DatasetInfo",
    "DatasetNotFoundError",
    "DatasetVersion",
    "Descriptor",
    "DescriptorError",
    "IntegrityError",
    "InvalidNameError",
    "LoadedDescriptor",
    "Manifest",
    "NotFoundError",
    "ParentRef",
    "PartRef",
    "PartStore",
    "PipelineError",
    "Provenance",
    "PublishConflictError",
    "PublishResult",
    "Publisher",
    "Registry",
    "RegistryError",
    "Result",
    "SourceRecord",
    "StorageError",
    "StorageUnavailableError",
    "VersionNotFoundError",
    "VersionRef",
    "Versioned",
    "Workspace",
    "build_definitions",
    "discover_descriptors",
    "load_descriptor",
    "open_dataset",
    "publish_descriptor",
]
