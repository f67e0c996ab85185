"""Bodies of /v1/experiments and /v1/recommend."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

NAME = r"^[a-z0-9][a-z0-9_.-]{0,63}$"
USER = r"^[A-Za-z0-9_.:@-]{1,128}$"


class Guardrails(BaseModel):
    model_config = ConfigDict(extra="forbid")
    p95_ms: float = Field(gt=0, le=60_000)
    error_rate: float = Field(ge=0, le=1)
    cost_per_1k_usd: float = Field(gt=0, le=1_000)


class ExperimentCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(pattern=NAME)
    control: str = Field(max_length=80, description="model ref (ID, NAME, NAME@VERSION)")
    challenger: str = Field(max_length=80)
    shadow: str | None = Field(default=None, max_length=80)
    split: float = Field(default=0.5, gt=0, lt=1, description="share of users on the challenger")
    kpi: Literal["clicks", "saves"] = "clicks"
    mde: float = Field(gt=0, le=10, description="minimum detectable effect, KPI units/request")
    guardrails: Guardrails


class SimulateIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    requests: int = Field(default=500, ge=1, le=20_000)
    seed: int = Field(default=0, ge=0, le=2**31)
    k: int = Field(default=10, ge=1, le=100)


class RecommendIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    user: str = Field(pattern=USER, description="who asks (a pseudonym): the split's key")
    history: list[int] = Field(default_factory=list, max_length=64, description="pin ids")
    k: int = Field(default=10, ge=1, le=100)
    model: str | None = Field(default=None, max_length=80)
    experiment: str | None = Field(default=None, pattern=NAME)


class RecommendOut(BaseModel):
    pins: list[int]
    model: str
    experiment: str | None = None
    arm: str | None = None
    audit_event: str | None = None


class ExperimentOut(BaseModel):
    name: str
    state: str
    owner: str
    control: str
    challenger: str
    shadow: str | None
    split: float
    plan: dict[str, Any]
    summary: dict[str, Any]
    decision: dict[str, Any]
    created_at: datetime
    ended_at: datetime | None
