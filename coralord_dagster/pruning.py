"""Skip parts that cannot match a predicate, by their per-part min/max, without reading them.

Conservative by construction: only AND-ed comparisons of a column with a literal are understood
(``= <> < <= > >=``, ``BETWEEN``, ``IN``); any other expression, an unknown column or a value of
another type keeps the part. DuckDB parses the predicate; nothing is evaluated here but bounds.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from coralord_dagster.model import PartRef
from coralord_dagster.sql import QueryError, parse_predicate

Condition = tuple[str, str, Any]  # (column, operator, value or values)

_FLIP = {
    "COMPARE_LESSTHAN": "COMPARE_GREATERTHAN",
    "COMPARE_GREATERTHAN": "COMPARE_LESSTHAN",
    "COMPARE_LESSTHANOREQUALTO": "COMPARE_GREATERTHANOREQUALTO",
    "COMPARE_GREATERTHANOREQUALTO": "COMPARE_LESSTHANOREQUALTO",
    "COMPARE_EQUAL": "COMPARE_EQUAL",
    "COMPARE_NOTEQUAL": "COMPARE_NOTEQUAL",
}


def _literal(node: dict[str, Any]) -> Any:
    if node.get("class") != "CONSTANT" or "literal" not in node:
        raise ValueError
    kind, text = node["literal"].get("kind"), node["literal"].get("text")
    if kind == "INTEGER":
        return int(text)
    if kind in ("DECIMAL", "FLOAT", "DOUBLE"):
        return float(text)
    if kind == "STRING":
        return str(text)
    raise ValueError


def _column(node: dict[str, Any]) -> str:
    if node.get("class") != "COLUMN_REF" or len(node.get("column_names", [])) != 1:
        raise ValueError
    return str(node["column_names"][0])


def _conditions(node: dict[str, Any]) -> list[Condition]:
    """The conditions every matching row satisfies (those that cannot be used are left out)."""
    kind = node.get("type", "")
    if kind == "CONJUNCTION_AND":
        return [c for child in node.get("children", []) for c in _conditions(child)]
    try:
        if node.get("class") == "COMPARISON" and kind in _FLIP:
            left, right = node["left"], node["right"]
            if left.get("class") == "COLUMN_REF":
                return [(_column(left), kind, _literal(right))]
            return [(_column(right), _FLIP[kind], _literal(left))]
        if node.get("class") == "BETWEEN" and kind == "COMPARE_BETWEEN":
            return [(_column(node["input"]), "BETWEEN", (_literal(node["lower"]), _literal(node["upper"])))]
        if kind == "COMPARE_IN":
            first, *rest = node["children"]
            return [(_column(first), "IN", [_literal(v) for v in rest])]
    except (ValueError, KeyError):
        pass
    return []


def conditions(where: str) -> list[Condition]:
    """The column-versus-constant conditions of a predicate that min/max statistics can rule out."""
    try:
        return _conditions(parse_predicate(where))
    except QueryError:
        return []


def _comparable(a: Any, b: Any) -> bool:
    numbers = (int, float)
    return (isinstance(a, numbers) and isinstance(b, numbers)) or (isinstance(a, str) and isinstance(b, str))


def _may_match(bounds: list[Any], op: str, value: Any) -> bool:
    lo, hi = bounds
    values = value if op in ("IN", "BETWEEN") else [value]
    if not all(_comparable(lo, v) for v in values):
        return True
    if op == "COMPARE_EQUAL":
        return lo <= value <= hi
    if op == "COMPARE_NOTEQUAL":
        return not (lo == hi == value)
    if op == "COMPARE_LESSTHAN":
        return lo < value
    if op == "COMPARE_LESSTHANOREQUALTO":
        return lo <= value
    if op == "COMPARE_GREATERTHAN":
        return hi > value
    if op == "COMPARE_GREATERTHANOREQUALTO":
        return hi >= value
    if op == "BETWEEN":
        return hi >= value[0] and lo <= value[1]
    if op == "IN":
        return any(lo <= v <= hi for v in value)
    return True


def may_match(stats: dict[str, list[Any]] | None, conds: Sequence[Condition]) -> bool:
    """Whether rows with these per-column [min, max] may satisfy every condition."""
    if not stats or not conds:
        return True
    return all(col not in stats or _may_match(stats[col], op, v) for col, op, v in conds)


def prune(parts: Sequence[PartRef], conds: Sequence[Condition]) -> list[PartRef]:
    """The parts that may hold rows matching ``conds`` (all of them when nothing can be decided)."""
    return [p for p in parts if may_match(p.stats, conds)]
