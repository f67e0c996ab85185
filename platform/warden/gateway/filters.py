"""Turn structured filters into polars expressions, with values typed by the schema.

Nothing here evaluates caller strings: a column name must be in the schema, the op comes
from a fixed set, and each value is checked against the column's type.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import polars as pl

from warden.errors import InvalidFilter

MAX_IN_VALUES = 1000
MAX_STRING = 1024


def typed_value(column: str, dtype: str, value: Any) -> Any:
    """Check one value against a column type; return it in the type polars compares with."""
    if value is None:
        raise InvalidFilter(f"{column}: a null value is only valid with is_null / not_null")
    if dtype.startswith("Int") or dtype.startswith("UInt"):
        if isinstance(value, bool) or not isinstance(value, int):
            raise InvalidFilter(f"{column} is an integer column; got {value!r}")
        if not -(2**63) <= value < 2**63:
            raise InvalidFilter(f"{column}: {value} is out of range")
        return value
    if dtype.startswith("Float"):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise InvalidFilter(f"{column} is a number column; got {value!r}")
        return float(value)
    if dtype in ("Utf8", "String", "Categorical"):
        if not isinstance(value, str):
            raise InvalidFilter(f"{column} is a text column; got {value!r}")
        if len(value) > MAX_STRING:
            raise InvalidFilter(f"{column}: value longer than {MAX_STRING} characters")
        return value
    if dtype.startswith("Datetime"):
        if not isinstance(value, str):
            raise InvalidFilter(f"{column} is a timestamp column; give an ISO-8601 string")
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            raise InvalidFilter(f"{column}: {value[:64]!r} is not an ISO-8601 timestamp") from None
        # Parquet timestamps here are naive UTC.
        return parsed.astimezone(UTC).replace(tzinfo=None) if parsed.tzinfo else parsed
    if dtype == "Boolean":
        if not isinstance(value, bool):
            raise InvalidFilter(f"{column} is a boolean column; got {value!r}")
        return value
    raise InvalidFilter(f"{column} ({dtype}) cannot be filtered on")


def expression(column: str, dtype: str, op: str, value: Any) -> pl.Expr:
    result: pl.Expr = _compared(pl.col(column), column, dtype, op, value)
    return result


def column_test(
    column: str, dtype: str, op: str, value: Any
) -> Callable[[pl.DataFrame], Any] | None:
    """The same filter made on a frame's column itself (a boolean Series), without polars'
    query engine: the Series' operators are the expressions' own, nulls included. None where
    a Series has no such operator or might order otherwise (booleans and categoricals
    compared by order): the engine's filter then decides. Made beside the filter's
    `expression`, which checks the filter; a test alone checks it only when run."""
    if not dtype.startswith(_BY_COLUMN) and not (dtype == "Boolean" and op not in _ORDER):
        return None
    if "time_zone=" in dtype and "time_zone=None" not in dtype:
        return None  # a zoned timestamp: the engine compares it with the naive value

    def test(frame: pl.DataFrame) -> Any:
        return _compared(frame.get_column(column), column, dtype, op, value)

    return test


def _compared(col: Any, column: str, dtype: str, op: str, value: Any) -> Any:
    """`col` (an expression or a Series) compared as the filter asks."""
    if op in ("is_null", "not_null"):
        if value is not None:
            raise InvalidFilter(f"{column}: {op} takes no value")
        return col.is_null() if op == "is_null" else col.is_not_null()
    if op in ("in", "not_in"):
        if not isinstance(value, list) or not value:
            raise InvalidFilter(f"{column}: {op} needs a non-empty list of values")
        if len(value) > MAX_IN_VALUES:
            raise InvalidFilter(f"{column}: {op} takes at most {MAX_IN_VALUES} values")
        values = [typed_value(column, dtype, v) for v in value]
        member = col.is_in(values)  # a plain list: the values, not a column to compare with
        return member if op == "in" else ~member
    if isinstance(value, list):
        raise InvalidFilter(f"{column}: {op} takes one value, not a list")
    return _COMPARE[op](col, typed_value(column, dtype, value))


# Column types whose every filter op a Series makes as an expression does (tests/gateway/
# test_column_tests.py); the order comparisons a Boolean Series lacks.
_BY_COLUMN = ("Int", "UInt", "Float", "Utf8", "String", "Datetime")
_ORDER = ("lt", "le", "gt", "ge")

# Only the comparison asked for is built: each costs a polars expression and a literal.
_COMPARE = {
    "eq": operator.eq,
    "ne": operator.ne,
    "lt": operator.lt,
    "le": operator.le,
    "gt": operator.gt,
    "ge": operator.ge,
}
