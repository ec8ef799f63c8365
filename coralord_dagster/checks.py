"""Quality gates: checks a descriptor (or a subset file) declares, run on the built table before
anything is written or tagged. A failing check publishes nothing; the results of a passing version are
recorded in its manifest and Croissant.

Declared as ``checks:``::

    checks:
      rows: {min: 100, max: 1000000}       # row-count bounds
      not_null: [label, image]
      unique: [id, [user, day]]            # a column, or a combination of columns
      accepted_values: {split: [train, test]}
      range: {quality: {min: 0, max: 10}}  # numeric bounds (inclusive)
      schema: {label: int64}               # a contract: these columns with these Arrow types
      max_row_drop: 0.05                   # rows may fall by at most 5% against the previous version
      max_row_growth: 2.0                  # ... and grow by at most 200%

No Dagster here: the orchestration shows each result as a blocking asset check.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from coralord_dagster.errors import CoralordError

__all__ = ["CheckFailedError", "CheckResult", "Checks", "check_table", "raise_on_failure"]

#: Offending values named in a failed check's message.
EXAMPLES = 5


class CheckFailedError(CoralordError):
    """A declared quality check failed: nothing was published."""

    exit_code = 1

    def __init__(self, message: str, results: list[CheckResult]) -> None:
        super().__init__(message)
        self.results = results


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Bounds(_Model):
    """Inclusive bounds; either may be left out."""

    min: float | None = Field(None, allow_inf_nan=False, description="Smallest accepted value.")
    max: float | None = Field(None, allow_inf_nan=False, description="Largest accepted value.")

    @model_validator(mode="after")
    def _ordered(self) -> Bounds:
        if self.min is None and self.max is None:
            raise ValueError("give 'min', 'max' or both")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min {self.min} is above max {self.max}")
        return self


class Checks(_Model):
    """The quality checks of a dataset or subset (see the module docstring)."""

    rows: Bounds | None = Field(None, description="Bounds on the number of rows.")
    not_null: list[str] = Field(default_factory=list, description="Columns that may hold no null.")
    unique: list[str | list[str]] = Field(
        default_factory=list, description="Columns (or combinations of columns) whose values are unique."
    )
    accepted_values: dict[str, list[Any]] = Field(
        default_factory=dict, description="Column → the only values it may hold (nulls are not_null's)."
    )
    range: dict[str, Bounds] = Field(default_factory=dict, description="Column → inclusive numeric bounds.")
    schema_: dict[str, str] = Field(
        default_factory=dict,
        alias="schema",
        description="Column → Arrow type (e.g. int64, string, timestamp[us, tz=UTC]) it must have.",
    )
    max_row_drop: float | None = Field(
        None, ge=0, le=1, description="Largest share of rows the previous version may lose, e.g. 0.05."
    )
    max_row_growth: float | None = Field(
        None, ge=0, allow_inf_nan=False, description="Largest growth in rows over the previous version."
    )

    @field_validator("unique")
    @classmethod
    def _combinations(cls, v: list[str | list[str]]) -> list[str | list[str]]:
        if any(isinstance(c, list) and not c for c in v):
            raise ValueError("an empty combination of columns")
        return v

    @property
    def declared(self) -> bool:
        return bool(self.model_dump(exclude_defaults=True))


@dataclass(frozen=True)
class CheckResult:
    """The outcome of one check: ``name`` says what was checked (``not_null(label)``)."""

    name: str
    passed: bool
    message: str
    details: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        out = {"check": self.name, "passed": self.passed, "message": self.message}
        return {**out, **({"details": self.details} if self.details else {})}


def check_table(checks: Checks, table: pa.Table, previous_rows: int | None = None) -> list[CheckResult]:
    """Run every declared check on ``table`` (``previous_rows``: the previous version's row count, for
    the change limits; None for a first version)."""
    results: list[CheckResult] = []
    if checks.rows is not None:
        results.append(_bounds("rows", table.num_rows, checks.rows, "rows"))
    for column, wanted in checks.schema_.items():
        results.append(_schema(table, column, wanted))
    for column in checks.not_null:
        results.append(_column(table, f"not_null({column})", column, _not_null))
    for entry in checks.unique:
        columns = [entry] if isinstance(entry, str) else list(entry)
        results.append(_unique(table, columns))
    for column, values in checks.accepted_values.items():
        results.append(_column(table, f"accepted_values({column})", column, _accepted, values))
    for column, bounds in checks.range.items():
        results.append(_column(table, f"range({column})", column, _range, bounds))
    if previous_rows is not None and previous_rows > 0:
        if checks.max_row_drop is not None:
            results.append(_change("max_row_drop", previous_rows, table.num_rows, checks.max_row_drop))
        if checks.max_row_growth is not None:
            results.append(_change("max_row_growth", previous_rows, table.num_rows, checks.max_row_growth))
    return results


def raise_on_failure(results: list[CheckResult], what: str) -> None:
    """Raise :class:`CheckFailedError` naming every failed check of ``what``."""
    failed = [r for r in results if not r.passed]
    if failed:
        raise CheckFailedError(
            f"{what}: {len(failed)} check(s) failed, nothing was published: "
            + "; ".join(f"{r.name}: {r.message}" for r in failed),
            results,
        )


# ----------------------------------------------------------------- the checks
def _change(name: str, before: int, after: int, limit: float) -> CheckResult:
    """Rows may fall (``max_row_drop``) or grow by at most ``limit`` against the previous version."""
    change = (after - before) / before
    drop = name == "max_row_drop"
    ok = -change <= limit if drop else change <= limit
    return CheckResult(
        name,
        ok,
        f"rows {before} -> {after} ({change:+.1%}; at most {'-' if drop else '+'}{limit:.1%})",
        {"previous_rows": before, "rows": after},
    )


def _bounds(name: str, value: float, bounds: Bounds, unit: str) -> CheckResult:
    low = bounds.min is None or value >= bounds.min
    high = bounds.max is None or value <= bounds.max
    limits = " and ".join(
        s
        for s in (
            f">= {bounds.min:g}" if bounds.min is not None else "",
            f"<= {bounds.max:g}" if bounds.max is not None else "",
        )
        if s
    )
    return CheckResult(name, low and high, f"{value:g} {unit} (must be {limits})", {"value": value})


def _schema(table: pa.Table, column: str, wanted: str) -> CheckResult:
    name = f"schema({column})"
    if column not in table.column_names:
        return CheckResult(name, False, f"column {column!r} is missing (columns: {table.column_names})")
    actual = str(table.schema.field(column).type)
    return CheckResult(name, actual == wanted, f"type {actual} (contract: {wanted})", {"type": actual})


def _column(table: pa.Table, name: str, column: str, check: Any, *args: Any) -> CheckResult:
    if column not in table.column_names:
        return CheckResult(name, False, f"column {column!r} is missing (columns: {table.column_names})")
    return check(name, table.column(column), *args)


def _not_null(name: str, values: pa.ChunkedArray) -> CheckResult:
    nulls = values.null_count
    return CheckResult(name, nulls == 0, f"{nulls} null(s)", {"nulls": nulls})


def _accepted(name: str, values: pa.ChunkedArray, accepted: list[Any]) -> CheckResult:
    try:
        allowed = pa.array(accepted, values.type)
    except (pa.ArrowInvalid, pa.ArrowTypeError) as e:
        return CheckResult(
            name, False, f"the accepted values do not fit the column's type {values.type}: {e}"
        )
    bad = values.filter(pc.and_(pc.invert(pc.is_in(values, allowed)), pc.is_valid(values)))
    return _outside(name, bad, str(accepted))


def _range(name: str, values: pa.ChunkedArray, bounds: Bounds) -> CheckResult:
    if not (
        pa.types.is_integer(values.type)
        or pa.types.is_floating(values.type)
        or pa.types.is_decimal(values.type)
    ):
        return CheckResult(name, False, f"type {values.type} is not numeric")
    masks = [pc.less(values, bounds.min)] if bounds.min is not None else []
    masks += [pc.greater(values, bounds.max)] if bounds.max is not None else []
    outside = masks[0] if len(masks) == 1 else pc.or_(*masks)
    bad = values.filter(pc.fill_null(outside, False))
    low, high = ("" if v is None else f"{v:g}" for v in (bounds.min, bounds.max))
    return _outside(name, bad, f"[{low}, {high}]")


def _outside(name: str, bad: pa.ChunkedArray, allowed: str) -> CheckResult:
    """The result of a check that found the values ``bad`` outside what is ``allowed``."""
    examples = _examples(pc.unique(bad))
    return CheckResult(
        name,
        len(bad) == 0,
        f"{len(bad)} row(s) outside {allowed}" + (f", e.g. {examples}" if examples else ""),
        {"rows": len(bad), "examples": examples},
    )


def _unique(table: pa.Table, columns: list[str]) -> CheckResult:
    name = f"unique({', '.join(columns)})"
    missing = [c for c in columns if c not in table.column_names]
    if missing:
        return CheckResult(name, False, f"column(s) {missing} are missing (columns: {table.column_names})")
    counts = table.select(columns).group_by(columns).aggregate([([], "count_all")])
    repeated = counts.filter(pc.greater(counts.column("count_all"), 1))
    examples = [
        {c: row[c] for c in columns} | {"rows": row["count_all"]}
        for row in repeated.slice(0, EXAMPLES).to_pylist()
    ]
    return CheckResult(
        name,
        repeated.num_rows == 0,
        f"{repeated.num_rows} value(s) repeated" + (f", e.g. {examples}" if examples else ""),
        {"repeated": repeated.num_rows, "examples": examples},
    )


def _examples(values: pa.Array) -> list[Any]:
    return [
        v if isinstance(v, (int, float, str, bool)) or v is None else str(v)
        for v in values.slice(0, EXAMPLES).to_pylist()
    ]
