"""One way for a repository to narrow a list by the filters a caller gave."""

from __future__ import annotations

from typing import Any, TypeVar

from sqlalchemy import Select
from sqlalchemy.orm import InstrumentedAttribute

Row = TypeVar("Row")


def where_given(
    query: Select[Row], *filters: tuple[InstrumentedAttribute[Any], object]
) -> Select[Row]:
    """`query` keeping only the rows whose column equals its value, for each (column, value)
    whose value is given (not None)."""
    for column, value in filters:
        if value is not None:
            query = query.where(column == value)
    return query
