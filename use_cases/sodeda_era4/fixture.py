"""An offline stand-in for ARCO-ERA5's ``co/model-level-wind.zarr-v2``.

Same layout as the real store: Zarr v2 with consolidated metadata, variables ``vo``, ``d``, ``t``, ``w``
(float32) over ``(time, hybrid, values)``, chunked ``(1, 1, values)`` (one chunk per time, level and
variable), ``hybrid`` levels numbered as ERA5's, and the ``valid_time_start``/``valid_time_stop``
attributes. Smaller: 72 hourly times, the 8 lowest levels (130-137), 512 coefficients instead of
410,240.
"""

from __future__ import annotations

from pathlib import Path

VARIABLES = ("vo", "d", "t", "w")


def make_fixture(
    dest: Path | str,
    *,
    start: str = "2024-01-01T00:00",
    hours: int = 72,
    levels: tuple[int, ...] = tuple(range(130, 138)),
    coefficients: int = 512,
    seed: int = 0,
) -> Path:
    """Write the store to ``dest`` (a ``.zarr`` folder) and return its path."""
    import numpy as np
    import pandas as pd
    import xarray as xr

    dest = Path(dest)
    rng = np.random.default_rng(seed)
    times = pd.date_range(start, periods=hours, freq="h")
    shape = (hours, len(levels), coefficients)
    scale = {"vo": 1e-5, "d": 1e-5, "t": 10.0, "w": 0.1}
    offset = {"vo": 0.0, "d": 0.0, "t": 250.0, "w": 0.0}
    data = {
        v: (
            ("time", "hybrid", "values"),
            (offset[v] + scale[v] * rng.standard_normal(shape)).astype("float32"),
        )
        for v in VARIABLES
    }
    ds = xr.Dataset(data, coords={"time": times, "hybrid": np.array(levels, dtype="int64")})
    ds.attrs.update(
        valid_time_start=str(times[0].date()),
        valid_time_stop=str(times[-1].date()),
        description="coralord offline fixture in the layout of ARCO-ERA5 co/model-level-wind.zarr-v2",
    )
    encoding = {v: {"chunks": (1, 1, coefficients)} for v in VARIABLES}
    ds.to_zarr(dest, mode="w", zarr_format=2, consolidated=True, encoding=encoding)
    return dest
