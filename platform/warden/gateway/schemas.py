"""The read request a caller sends: columns, purpose, a structured filter and a limit."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

FilterOp = Literal["eq", "ne", "lt", "le", "gt", "ge", "in", "not_in", "is_null", "not_null"]
Scalar = int | float | str | bool | None


class FilterClause(BaseModel):
    model_config = ConfigDict(extra="forbid")

    column: str = Field(max_length=64)
    op: FilterOp
    value: Scalar | list[Scalar] = None


class Shard(BaseModel):
    """One part of an answer for one of `world` training processes: the rows whose position
    in the dataset version's file, among the rows the policy shows, is `rank` modulo `world`."""

    model_config = ConfigDict(extra="forbid")

    rank: int = Field(ge=0)
    world: int = Field(ge=1, le=65536)

    @model_validator(mode="after")
    def _rank_below_world(self) -> Shard:
        if self.rank >= self.world:
            raise ValueError(f"rank {self.rank} is not below world {self.world}")
        return self


class ReadRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    purpose: str = Field(max_length=32)
    columns: list[str] | None = Field(default=None, max_length=256)
    where: list[FilterClause] = Field(default_factory=list, max_length=64)
    limit: int | None = Field(default=None, ge=0)
    shard: Shard | None = None
    # read this earlier version (its digest, `x-warden-dataset-version`, or its Iceberg
    # snapshot id, `x-warden-dataset-snapshot`) instead of the current one: the ranks of one
    # training job pin one version
    version: str | None = Field(
        default=None, max_length=80, pattern=r"^(sha256:[0-9a-f]{64}|[0-9]{1,19})$"
    )
