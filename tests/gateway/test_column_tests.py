"""A caller's filter made on a frame's own columns (gateway/filters.column_test, the small
answer's way) keeps exactly the rows the query engine's filter keeps: every op, on every
type a filter takes, nulls included, and several filters together."""

from __future__ import annotations

import functools
import operator
from datetime import datetime
from typing import Any

import polars as pl
import pytest

from warden.gateway.filters import column_test, expression

FRAME = pl.DataFrame(
    {
        "n": [1, None, 3, -4, 5],
        "x": [0.5, 2.0, None, -1.0, 3.5],
        "s": ["a", "b", None, "zz", "a"],
        "t": [datetime(2024, 1, d) if d else None for d in (1, 2, None, 4, 5)],
        "b": [True, None, False, True, False],
    }
)
DTYPES = {
    "n": "Int64",
    "x": "Float64",
    "s": "String",
    "t": "Datetime(time_unit='us')",
    "b": "Boolean",
}
VALUES = {"n": 3, "x": 2.0, "s": "a", "t": "2024-01-02T00:00:00", "b": True}
SETS = {"n": [1, 5], "x": [0.5, 3.5], "s": ["a", "zz"], "t": ["2024-01-04T00:00:00"], "b": [False]}


def _cases() -> list[tuple[str, str, Any]]:
    cases: list[tuple[str, str, Any]] = []
    for column in FRAME.columns:
        cases += [(column, op, VALUES[column]) for op in ("eq", "ne", "lt", "le", "gt", "ge")]
        cases += [(column, op, SETS[column]) for op in ("in", "not_in")]
        cases += [(column, op, None) for op in ("is_null", "not_null")]
    return cases


def _by_engine(filters: list[tuple[str, str, Any]]) -> pl.DataFrame:
    frame = FRAME.lazy()
    for column, op, value in filters:
        frame = frame.filter(expression(column, DTYPES[column], op, value))
    return frame.collect()


def _by_columns(filters: list[tuple[str, str, Any]]) -> pl.DataFrame:
    tests = [column_test(column, DTYPES[column], op, value) for column, op, value in filters]
    keep = functools.reduce(operator.and_, (test(FRAME) for test in tests if test is not None))
    return pl.DataFrame([FRAME.get_column(c).filter(keep) for c in FRAME.columns])


@pytest.mark.parametrize("case", _cases(), ids=lambda c: f"{c[0]}-{c[1]}")
def test_one_filter_keeps_the_rows_the_engine_keeps(case: tuple[str, str, Any]) -> None:
    column, op, value = case
    if column_test(column, DTYPES[column], op, value) is None:
        assert column == "b" and op in ("lt", "le", "gt", "ge")  # the engine decides these
        return
    assert _by_columns([case]).equals(_by_engine([case]))


def test_categorical_columns_are_left_to_the_engine() -> None:
    assert column_test("c", "Categorical", "eq", "a") is None


def test_filters_together_keep_the_rows_the_engine_keeps() -> None:
    filters = [("s", "ne", "zz"), ("n", "gt", 0), ("b", "not_null", None)]
    got = _by_columns(filters)
    assert got.equals(_by_engine(filters)) and got.height == 2  # rows 1 and 5
