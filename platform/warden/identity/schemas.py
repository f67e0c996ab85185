"""Request and response bodies for principals and tokens."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class PrincipalCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(max_length=64)
    kind: Literal["person", "service"] = "person"
    roles: list[str] = Field(default_factory=list, max_length=32)
    # Service accounts: the owning person (default: the creator). People have none.
    owner: str | None = Field(default=None, max_length=64)


class PrincipalOut(BaseModel):
    name: str
    kind: str
    tenant: str
    roles: list[str]
    disabled: bool = False
    owner: str | None = None
    created_by: str | None = None


class PrincipalChangeOut(PrincipalOut):
    """A principal with roles proposed but not yet in force, and the change carrying them."""

    pending_roles: list[str] = Field(default_factory=list)
    change_id: str | None = None


class TokenCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    label: str = Field(default="", max_length=64)
    ttl_days: int | None = Field(default=None, ge=1, le=3650)


class TokenOut(BaseModel):
    token: str
    principal: str
    expires_at: str | None


class RoleChange(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: str = Field(max_length=64)
