"""ERA5 model-level wind: a time window (and levels, variables, a lat/lon box) cut out of a Zarr store.

The store is opened lazily (``chunks=None``: no dask, no data read), the window is selected by label,
and only then are values loaded: xarray reads exactly the chunks that intersect the window. The result
is tidy: one row per point (time, level and the horizontal dimension) and one column per variable.

ARCO-ERA5's ``co/model-level-wind.zarr-v2`` holds spherical-harmonic coefficients along a ``values``
dimension, which has no latitude or longitude; a gridded store (with ``latitude``/``longitude``
dimensions, such as ARCO-ERA5's ``ar/`` stores) also takes a lat/lon box.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field, model_validator

RENAMES = {"hybrid": "level", "values": "coefficient"}


class Params(BaseModel):
    """A window of the store: the descriptor's ``params``, and each subset's."""

    model_config = ConfigDict(extra="forbid")

    valid_time_start: datetime = Field(
        description="First time of the window (inclusive), e.g. 2024-01-01T00:00."
    )
    valid_time_stop: datetime = Field(description="Last time of the window (inclusive).")
    levels: list[int] | None = Field(None, description="Hybrid model levels (1-137); default all.")
    variables: list[str] | None = Field(None, description="Variables, e.g. [d, vo]; default all.")
    latitude: tuple[float, float] | None = Field(None, description="[south, north], gridded stores only.")
    longitude: tuple[float, float] | None = Field(None, description="[west, east], gridded stores only.")

    @model_validator(mode="after")
    def _ordered(self) -> Params:
        if self.valid_time_stop < self.valid_time_start:
            raise ValueError("valid_time_stop is before valid_time_start")
        return self


def open_store(source: Any) -> Any:
    """The source's Zarr store as a lazy xarray Dataset (nothing but metadata is read)."""
    try:
        import xarray as xr
    except ImportError as e:
        raise RuntimeError(
            "the ERA5 use case needs xarray and zarr: pip install 'coralord-dagster[zarr]'"
        ) from e
    options = {"storage_options": source.storage_options} if source.storage_options else {}
    return xr.open_zarr(source.location, chunks=None, consolidated=True, **options)


def select(ds: Any, params: Params) -> Any:
    """The window of ``ds`` (still lazy); errors name the parameter at fault."""
    import numpy as np

    start, stop = np.datetime64(params.valid_time_start), np.datetime64(params.valid_time_stop)
    times = ds["time"].values
    if not ((times >= start) & (times <= stop)).any():
        raise ValueError(
            f"params: valid_time_start/valid_time_stop {params.valid_time_start}..{params.valid_time_stop} "
            f"select no time of the store ({times.min()}..{times.max()})"
        )
    variables = params.variables or sorted(ds.data_vars)
    unknown = sorted(set(variables) - set(ds.data_vars))
    if unknown:
        raise ValueError(f"params.variables: {unknown} not in the store; it has {sorted(ds.data_vars)}")
    ds = ds[variables].sel(time=slice(start, stop))
    if params.levels is not None:
        missing = sorted(set(params.levels) - set(ds["hybrid"].values.tolist()))
        if missing:
            raise ValueError(f"params.levels: {missing} not in the store's hybrid levels")
        ds = ds.sel(hybrid=params.levels)
    if params.latitude or params.longitude:
        if "latitude" not in ds.dims or "longitude" not in ds.dims:
            raise ValueError(
                "params.latitude/longitude: this store has no latitude/longitude dimensions (dimensions: "
                f"{list(ds.dims)}; spherical-harmonic coefficients are not on a grid); drop the box or use a "
                "gridded store"
            )
        ds = ds.sel(latitude=_between(ds["latitude"].values, params.latitude))
        ds = ds.sel(longitude=_between(ds["longitude"].values, params.longitude))
    return ds


def _between(values: Any, bounds: tuple[float, float] | None) -> Any:
    if bounds is None:
        return values
    lo, hi = min(bounds), max(bounds)
    return values[(values >= lo) & (values <= hi)]


def tidy(ds: Any) -> pa.Table:
    """One row per point, one column per variable; loads the selected chunks only."""
    frame = ds.load().to_dataframe().reset_index()
    frame = frame.rename(columns=RENAMES)
    keep = [c for c in ("time", "level", "latitude", "longitude", "coefficient") if c in frame.columns]
    frame = frame[keep + [c for c in frame.columns if c not in keep]]
    table = pa.Table.from_pandas(frame, preserve_index=False)
    return table.replace_schema_metadata(None)


def window(source: Any, params: Params) -> pa.Table:
    """The dataset (and each subset): the window ``params`` of the source's store, tidy."""
    return tidy(select(open_store(source), params))
