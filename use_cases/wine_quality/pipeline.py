"""UCI Wine Quality in three stages, DVC data-registry style: download → process → analyze.

Each stage is a dataset of its own (``download/``, ``process/``, ``analyze/`` descriptors), versioned and
published with its lineage; a new version of one stage rebuilds the next. ``process`` runs in the use
case's Docker image (``env/Dockerfile``) through Dagster Pipes, so this module imports nothing at the
top but pandas and pyarrow, which the image has.
"""

from __future__ import annotations

import csv
import io
from typing import Any

import pandas as pd
import pyarrow as pa

COLUMNS = [
    "fixed acidity",
    "volatile acidity",
    "citric acid",
    "residual sugar",
    "chlorides",
    "free sulfur dioxide",
    "total sulfur dioxide",
    "density",
    "pH",
    "sulphates",
    "alcohol",
    "quality",
]
TRAIN_SHARE = 0.8


def download(source: Any) -> pa.Table:
    """Stage 1: the CSV files (``;``-separated, quoted header) as they are, values kept as text."""
    rows: dict[str, list[str]] = {c: [] for c in [*COLUMNS, "color"]}
    for name in source.files:
        color = name.removesuffix(".csv").rsplit("-", 1)[-1]
        with source.open(name) as f:
            reader = csv.reader(io.TextIOWrapper(f, encoding="utf-8"), delimiter=";")
            header = next(reader, None)
            if header != COLUMNS:
                raise ValueError(f"{name}: unexpected header {header}; expected the UCI columns {COLUMNS}")
            for n, record in enumerate(reader, start=2):
                if not record:
                    continue
                if len(record) != len(COLUMNS):
                    raise ValueError(f"{name} line {n}: {len(record)} fields, expected {len(COLUMNS)}")
                for column, value in zip(COLUMNS, record, strict=True):
                    rows[column].append(value.strip())
                rows["color"].append(color)
    return pa.table({c: pa.array(v, pa.string()) for c, v in rows.items()})


def snake_case(name: str) -> str:
    return name.strip().lower().replace(" ", "_")


def process(source: Any) -> pd.DataFrame:
    """Stage 2: typed, cleaned (invalid rows and duplicates dropped) and split 80/20 by row hash."""
    raw = source.to_pandas()
    frame = raw.rename(columns=snake_case)
    measures = [snake_case(c) for c in COLUMNS if c != "quality"]
    for column in [*measures, "quality"]:
        frame[column] = pd.to_numeric(frame[column], errors="coerce")
    valid = frame[measures + ["quality"]].notna().all(axis=1)
    valid &= (frame[measures] >= 0).all(axis=1) & frame["quality"].between(0, 10)
    frame = frame[valid].drop_duplicates().reset_index(drop=True)
    frame["quality"] = frame["quality"].astype("int64")
    # The split follows the row's values, not its position: a row keeps its split across versions.
    buckets = pd.util.hash_pandas_object(frame[[*measures, "quality", "color"]], index=False) % 100
    frame["split"] = ["train" if b < TRAIN_SHARE * 100 else "val" for b in buckets]
    return frame[[*measures, "quality", "color", "split"]]


def analyze(source: Any) -> Any:
    """Stage 3: statistics per split and column, plus headline metrics for each version."""
    from coralord_dagster import Result

    frame = source.to_pandas()
    numeric = [c for c in frame.columns if c not in ("color", "split")]
    records = []
    for split, part in [("all", frame), *sorted(frame.groupby("split"))]:
        for column in numeric:
            values = part[column].astype("float64")
            records.append(
                {
                    "split": split,
                    "column": column,
                    "count": int(values.count()),
                    "mean": float(values.mean()),
                    "std": float(values.std()),
                    "min": float(values.min()),
                    "p25": float(values.quantile(0.25)),
                    "p50": float(values.quantile(0.5)),
                    "p75": float(values.quantile(0.75)),
                    "max": float(values.max()),
                }
            )
    stats = pd.DataFrame.from_records(records)
    metrics: dict[str, float] = {
        "rows": float(len(frame)),
        "red_share": float((frame["color"] == "red").mean()),
    }
    for split, part in frame.groupby("split"):
        metrics[f"rows/{split}"] = float(len(part))
        metrics[f"quality_mean/{split}"] = float(part["quality"].mean())
    metrics["quality_mean"] = float(frame["quality"].mean())
    metrics["alcohol_mean"] = float(frame["alcohol"].mean())
    return Result(stats, metrics)
