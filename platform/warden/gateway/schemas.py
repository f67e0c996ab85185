"""The read request a caller sends: columns, purpose, a structured filter and a limit."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

FilterOp = Literal["eq", "ne", "lt", "le", "gt", "ge", "in", "not_in", "is_null", "not_null"]
Scalar = int | float | str | bool | None


class FilterClause(BaseModel):
    model_config = ConfigDict(extra="forbid")

    column: str = Field(max_length=64)
    op: FilterOp
    value: Scalar | list[Scalar] = None


class ReadRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    purpose: str = Field(max_length=32)
    columns: list[str] | None = Field(default=None, max_length=256)
    where: list[FilterClause] = Field(default_factory=list, max_length=64)
    limit: int | None = Field(default=None, ge=0)
