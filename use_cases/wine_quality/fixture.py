"""Offline stand-in for the UCI Wine Quality files, in their layout.

``winequality-red.csv`` and ``winequality-white.csv``: ``;``-separated, a quoted header, values with the
UCI files' precision, plus what real downloads contain and the process stage must clean: an exact
duplicate row and a row with a missing value in each file.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from use_cases.wine_quality.pipeline import COLUMNS

#: Mean and spread per column (red, white), close to the real files'.
PROFILE = {
    "fixed acidity": ((8.3, 1.7), (6.9, 0.8), 1),
    "volatile acidity": ((0.53, 0.18), (0.28, 0.1), 3),
    "citric acid": ((0.27, 0.19), (0.33, 0.12), 2),
    "residual sugar": ((2.5, 1.4), (6.4, 5.0), 1),
    "chlorides": ((0.087, 0.047), (0.046, 0.022), 3),
    "free sulfur dioxide": ((15.9, 10.5), (35.3, 17.0), 0),
    "total sulfur dioxide": ((46.5, 32.9), (138.4, 42.5), 0),
    "density": ((0.9967, 0.0019), (0.994, 0.003), 4),
    "pH": ((3.31, 0.15), (3.19, 0.15), 2),
    "sulphates": ((0.66, 0.17), (0.49, 0.11), 2),
    "alcohol": ((10.4, 1.07), (10.5, 1.23), 1),
}


def _file(rows: int, color: int, rng: np.random.Generator) -> str:
    lines = [";".join(f'"{c}"' for c in COLUMNS)]
    for _ in range(rows):
        values = []
        for column in COLUMNS[:-1]:
            (mean, sd), digits = PROFILE[column][color], PROFILE[column][2]
            values.append(f"{max(0.0, rng.normal(mean, sd)):.{digits}f}")
        values.append(str(int(np.clip(round(rng.normal(5.7, 0.85)), 3, 9))))
        lines.append(";".join(values))
    lines.append(lines[1])  # an exact duplicate, as the real files have
    broken = lines[2].split(";")
    broken[4] = ""  # a missing value
    lines.append(";".join(broken))
    return "\n".join(lines) + "\n"


def make_fixture(dest: Path | str, red: int = 400, white: int = 1000, seed: int = 0) -> Path:
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    (dest / "winequality-red.csv").write_text(_file(red, 0, rng))
    (dest / "winequality-white.csv").write_text(_file(white, 1, rng))
    return dest
