"""Dagster adapters over the coralord core: resource, IO manager, asset factory."""

from coralord_dagster.orchestration.factory import build_definitions, dataset_asset, dataset_checks
from coralord_dagster.orchestration.io_manager import CoralordIOManager
from coralord_dagster.orchestration.resource import CoralordResource

__all__ = ["CoralordIOManager", "CoralordResource", "build_definitions", "dataset_asset", "dataset_checks"]
