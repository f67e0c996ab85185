"""Response bodies read straight off ORM rows: same field names, JSON columns that may be NULL
read as empty."""

from __future__ import annotations

from typing import Annotated, Any, Self

from pydantic import BaseModel, BeforeValidator, ConfigDict

EmptyList = BeforeValidator(lambda value: [] if value is None else value)
EmptyDict = BeforeValidator(lambda value: {} if value is None else value)
Strings = Annotated[list[str], EmptyList]
Records = Annotated[list[dict[str, Any]], EmptyList]
Mapping = Annotated[dict[str, Any], EmptyDict]


class RowOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    @classmethod
    def of(cls, row: Any) -> Self:
        return cls.model_validate(row)
