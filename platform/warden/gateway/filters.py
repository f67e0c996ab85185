"""Turn structured filters into polars expressions, with values typed by the schema.

Nothing here evaluates caller strings: a column name must be in the schema, the op comes
from a fixed set, and each value is checked against the column's type.
"""

from __future__ import annotations

import operator
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
    col = pl.col(column)
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


# Only the comparison asked for is built: each costs a polars expression and a literal.
_COMPARE = {
    "eq": operator.eq,
    "ne": operator.ne,
    "lt": operator.lt,
    "le": operator.le,
    "gt": operator.gt,
    "ge": operator.ge,
}
