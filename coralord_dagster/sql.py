"""User SQL, checked before it runs: a ``where`` is one expression over the version's own columns.

A predicate comes from a command line, a notebook or a subset file someone else wrote, and runs on the
consumer's machine with the consumer's files and credentials around it. So it is parsed by DuckDB's own
parser and accepted only if it is an expression built from the dataset's columns, constants, operators
and an allow-list of deterministic scalar functions: no subquery, no table function, no statement
(``COPY``, ``ATTACH``, ``INSTALL``, ``LOAD``, ``SET``, ``PRAGMA``…), nothing that reads a file, a
setting, a variable or the clock. The refusal names the construct. What passes runs on a connection with
external access off and its configuration locked (:func:`coralord_dagster.duck.sandboxed_query`): the
second wall, should the first ever let something through.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterator, Sequence
from typing import Any

import duckdb
import pyarrow as pa

from coralord_dagster.duck import sandboxed_query
from coralord_dagster.errors import CoralordError

_ONE_EXPRESSION = "a predicate is one expression over the dataset's columns"


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


#: Longer predicates are refused: nobody writes them by hand, and the parser's work grows with them.
MAX_PREDICATE_CHARS = 10_000

# Keywords that begin or join statements and queries: none belongs in an expression.
_STATEMENT_KEYWORDS = _words(
    """select from with union intersect except values table copy attach detach install load force set
    reset pragma call export import create drop insert update delete alter truncate use checkpoint
    vacuum describe show summarize explain analyze begin commit rollback abort prepare execute deallocate
    pivot unpivot merge returning grant revoke into lateral"""
)

# Expression classes a predicate may contain (of DuckDB's parsed expression tree).
_CLASSES = frozenset(
    {"CONJUNCTION", "COMPARISON", "BETWEEN", "OPERATOR", "CONSTANT", "COLUMN_REF", "CAST", "CASE", "TYPE"}
    | {"COLLATE", "FUNCTION"}
)
_FORBIDDEN_CLASSES = {
    "SUBQUERY": "a subquery",
    "STAR": "'*' or COLUMNS(...)",
    "PARAMETER": "a prepared-statement parameter",
    "POSITIONAL_REFERENCE": "a positional reference (#n)",
    "WINDOW": "a window function",
    "LAMBDA": "a lambda",
    "LAMBDA_REF": "a lambda",
    "DEFAULT": "DEFAULT",
}

# Deterministic scalar functions and operators over values: the result depends on the row alone.
# Not here, on purpose: anything that reads files, settings, variables or the environment (read_*, glob,
# getenv, current_setting, getvariable…), the clock and randomness (now, current_date, random, uuid: a
# subset must select the same rows forever), hash (not stable across DuckDB releases), and functions
# that can build unbounded values from small inputs (repeat, lpad, rpad, range, generate_series).
_FUNCTIONS = _words(
    """
    + - * / // % ** ^ || ~~ !~~ ~~* !~~* ~~~ !~~~ ^@ @> <@ && & | << >> ~ xor
    abs ceil ceiling floor round round_even roundbankers trunc sign sqrt cbrt exp ln log log2 log10 pow
    power mod greatest least isnan isinf isfinite pi degrees radians sin cos tan asin acos atan atan2 cot
    gcd lcm even bit_count factorial
    lower upper lcase ucase length len strlen char_length character_length octet_length substr substring
    substring_grapheme left right left_grapheme right_grapheme trim ltrim rtrim concat concat_ws replace
    reverse starts_with ends_with prefix suffix contains instr strpos position regexp_matches
    regexp_full_match regexp_extract regexp_replace like_escape not_like_escape ilike_escape
    not_ilike_escape split_part ascii chr unicode ord translate strip_accents nfc_normalize levenshtein
    damerau_levenshtein hamming jaccard jaro_similarity jaro_winkler_similarity mismatches format printf
    year month day hour minute second millisecond microsecond nanosecond dayofweek dayofmonth dayofyear
    isodow isoyear week weekofyear weekday yearweek quarter decade century millennium era epoch epoch_ms
    epoch_us epoch_ns date_part datepart date_trunc datetrunc date_diff datediff date_sub datesub date_add
    strftime strptime try_strptime make_date make_time make_timestamp to_timestamp last_day monthname
    dayname time_bucket to_years to_months to_weeks to_days to_hours to_minutes to_seconds
    to_milliseconds to_microseconds to_decades to_centuries to_millennia
    list_value list_contains list_has array_contains list_position list_indexof array_position
    list_extract array_extract list_element len array_length list_has_any array_has_any list_has_all
    array_has_all struct_extract struct_pack row map_extract element_at cardinality
    ifnull nullif if iif coalesce typeof
    """
)


class QueryError(CoralordError, ValueError):
    """A column list or predicate does not fit the dataset, or is not allowed."""


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def sql_literal(s: str) -> str:
    """A SQL string literal (for the few values that cannot be parameters, like file paths)."""
    return "'" + s.replace("'", "''") + "'"


def _wrap(where: str) -> str:
    # On lines of its own: a trailing '--' comment cannot swallow the closing parenthesis.
    return f"SELECT * FROM t WHERE (\n{where}\n)"


def _serialize(sql: str) -> dict[str, Any]:
    """DuckDB's parse tree of ``sql`` (parsed, never run)."""
    con = duckdb.connect(config={"enable_external_access": False})
    try:
        rows = con.execute("SELECT json_serialize_sql(?)", [sql]).fetchall()
    finally:
        con.close()
    parsed: dict[str, Any] = json.loads(rows[0][0]) if rows else {"error": True}
    return parsed


def _skeleton(node: Any) -> Any:
    """A parse tree without its source positions, for comparing shapes."""
    if isinstance(node, dict):
        return {k: _skeleton(v) for k, v in node.items() if not k.startswith("query_location")}
    if isinstance(node, list):
        return [_skeleton(v) for v in node]
    return node


@functools.cache
def _expected() -> Any:
    """The shape of the query around a predicate, which a predicate must leave as it is."""
    return _skeleton({**_serialize(_wrap("1"))["statements"][0]["node"], "where_clause": None})


def parse_predicate(where: str, what: str = "the dataset") -> dict[str, Any]:
    """The parse tree of the predicate ``where`` (a ``where_clause``), if it is one expression and no
    statement or query rides along; else :class:`QueryError` naming what is in the way."""
    where = where.strip()
    if not where:
        raise QueryError(f"empty predicate for {what}")
    if len(where) > MAX_PREDICATE_CHARS:
        raise QueryError(
            f"predicate for {what} is {len(where):,} characters long; at most {MAX_PREDICATE_CHARS:,} are "
            "accepted"
        )
    where_ = f"predicate {_show(where)} for {what}"
    try:
        parsed = _serialize(_wrap(where))
    except (duckdb.Error, RecursionError, ValueError) as e:  # too deep for the parser or for json
        parsed = {"error": True, "error_message": _first_line(e)}
    statements = parsed.get("statements") or []
    node = statements[0]["node"] if len(statements) == 1 and not parsed.get("error") else {}
    clause = node.get("where_clause")
    if clause is None or _skeleton({**node, "where_clause": None}) != _expected():
        construct = _statement_construct(where)
        if construct:
            raise QueryError(f"{where_}: {construct} is not allowed; {_ONE_EXPRESSION}")
        if parsed.get("error"):
            raise QueryError(f"invalid {where_}: {parsed.get('error_message') or 'not an expression'}")
        raise QueryError(
            f"{where_} is not one expression: it changes the query around it (unbalanced parentheses, or a "
            "clause such as GROUP BY, ORDER BY or LIMIT)"
        )
    return dict(clause)


def _statement_construct(where: str) -> str | None:
    """The statement keyword or ';' in a predicate that did not parse as one expression (outside strings,
    comments and quoted names), to name in the refusal."""
    try:
        tokens = duckdb.tokenize(where)
    except duckdb.Error:
        return None
    for position, kind in tokens:
        text = where[position:]
        if kind == duckdb.token_type.operator and text.startswith(";"):
            return "a second statement (';')"
        word = re.match(r"[A-Za-z_]+", text) if kind == duckdb.token_type.keyword else None
        if word and word.group().lower() in _STATEMENT_KEYWORDS:
            name = word.group().upper()
            return "a subquery (SELECT)" if name in ("SELECT", "FROM", "WITH", "VALUES", "TABLE") else name
    return None


def check_predicate(where: str, columns: Sequence[str] | None, what: str = "the dataset") -> dict[str, Any]:
    """The parse tree of ``where`` once it is known to be an expression over ``columns`` (any column
    name when None: a subset file checked before its parent's schema is known) with allowed functions
    only; else :class:`QueryError` naming the first construct that is not allowed."""
    clause = parse_predicate(where, what)
    lowered = {c.lower() for c in columns} if columns is not None else None
    where_ = f"predicate {_show(where)} for {what}"
    for node in _expressions(clause):
        kind = node.get("class")
        if kind in _FORBIDDEN_CLASSES:
            raise QueryError(
                f"predicate {_show(where)} for {what}: {_FORBIDDEN_CLASSES[kind]} is not allowed"
            )
        if kind not in _CLASSES:
            raise QueryError(f"predicate {_show(where)} for {what}: {kind} expressions are not allowed")
        if kind == "COLUMN_REF" and lowered is not None and _column_of(node, lowered) is None:
            raise QueryError(
                f"{where_}: unknown column {'.'.join(map(str, node.get('column_names', [])))!r}; columns: "
                f"{list(columns or [])}"
            )
        if kind == "FUNCTION":
            _check_function(node, where, what)
    return clause


def _check_function(node: dict[str, Any], where: str, what: str) -> None:
    name = str(node.get("function_name", "")).lower()
    where_ = f"predicate {_show(where)} for {what}"
    if node.get("schema") or node.get("catalog"):
        raise QueryError(f"{where_}: qualified function name {node.get('schema')}.{name} is not allowed")
    if name not in _FUNCTIONS:
        raise QueryError(
            f"{where_}: function {name}() is not allowed; a predicate may use operators and deterministic "
            "scalar functions (comparison, arithmetic, string, date and list functions)"
        )
    if node.get("filter") is not None or node.get("distinct") or (node.get("order_bys") or {}).get("orders"):
        raise QueryError(f"{where_}: aggregate modifiers (FILTER, DISTINCT, ORDER BY) are not allowed")


def _expressions(node: Any) -> Iterator[dict[str, Any]]:
    """Every expression node below ``node`` (iteratively: a deep tree cannot exhaust the stack)."""
    stack = [node]
    while stack:
        n = stack.pop()
        if isinstance(n, dict):
            if "class" in n:
                yield n
            stack.extend(n.values())
        elif isinstance(n, list):
            stack.extend(n)


def validate_query(schema: pa.Schema, columns: Sequence[str] | None, where: str | None, what: str) -> None:
    """Fail before any read if the columns or the predicate do not fit ``schema`` or are not allowed."""
    if columns is not None:
        unknown = [c for c in columns if c not in schema.names]
        if unknown:
            raise QueryError(f"{what} has no column(s) {unknown}; columns: {schema.names}")
        if not columns:
            raise QueryError("no columns requested")
    if where is None:
        return
    check_predicate(where, schema.names, what)
    try:  # types: on an empty table, in the sandbox
        sandboxed_query(schema.empty_table(), f"{_wrap(where)} LIMIT 0")
    except duckdb.Error as e:
        raise QueryError(f"invalid predicate {_show(where)} for {what}: {_first_line(e)}") from None


def referenced_columns(where: str, schema: pa.Schema) -> list[str]:
    """The columns of ``schema`` a predicate mentions (what must be read to evaluate it)."""
    lowered = {c.lower() for c in schema.names}
    found = {
        _column_of(n, lowered) for n in _expressions(parse_predicate(where)) if n.get("class") == "COLUMN_REF"
    }
    return [n for n in schema.names if n.lower() in found]


def _column_of(ref: dict[str, Any], lowered: set[str]) -> str | None:
    """The (lower-case) column a column reference names: ``x``, a field of a struct column (``s.a``), or
    a column qualified by the table (``t.x``); None when it names no column."""
    names = [str(n).lower() for n in ref.get("column_names") or []]
    if names and names[0] in lowered:
        return names[0]
    if len(names) > 1 and names[0] == "t" and names[1] in lowered:
        return names[1]
    return None


def _show(where: str, limit: int = 200) -> str:
    return repr(where if len(where) <= limit else where[:limit] + "…")


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__
