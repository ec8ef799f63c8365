"""The same use cases as a ``dg`` project: each use case folder's ``defs.yaml`` is a
``coralord_dagster.DatasetComponent`` (``[tool.dg]`` in ``pyproject.toml``).

``dg check defs``, ``dg list defs`` and ``dg dev`` load this module; ``workspace.yaml`` and
``-m definitions`` load :mod:`definitions` (one Definitions for all use cases, shared job and sensor
names). Both show the same assets; run one of them against a Dagster instance, not both, or each
dataset has two sets of sensors.
"""

from pathlib import Path

import dagster as dg


@dg.definitions
def defs() -> dg.Definitions:
    return dg.load_from_defs_folder(project_root=Path(__file__).resolve().parent.parent)
