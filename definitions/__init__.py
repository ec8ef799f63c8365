"""The Dagster code location: one asset (+ checks) per descriptor under ``use_cases/``.

``dagster dev -w workspace.yaml`` and ``dagster asset materialize -m definitions --select ...`` load it.
"""

from pathlib import Path

from coralord_dagster.orchestration import build_definitions

USE_CASES = Path(__file__).resolve().parent.parent / "use_cases"

defs = build_definitions(USE_CASES)
