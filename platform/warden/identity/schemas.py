"""Request and response bodies for principals and tokens."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

# The names identity.service.check_name accepts (it still checks: these only document them).
NAME_PATTERN = r"^[a-z][a-z0-9_.-]{0,63}$"
ROLE_PATTERN = r"^(role:)?[a-z][a-z0-9_.-]{0,63}$"
RoleName = Annotated[str, Field(json_schema_extra={"pattern": ROLE_PATTERN})]


class PrincipalCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(max_length=64, json_schema_extra={"pattern": NAME_PATTERN})
    kind: Literal["person", "service"] = "person"
    roles: list[RoleName] = Field(default_factory=list, max_length=32)
    # Service accounts: the owning person (default: the creator). People have none.
    owner: str | None = Field(
        default=None, max_length=64, json_schema_extra={"pattern": NAME_PATTERN}
    )


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
    # Above the principal kind's maximum (settings) is refused; none: the kind's default.
    ttl_days: int | None = Field(default=None, ge=1, le=3650)


class TokenOut(BaseModel):
    token: str
    id: str
    principal: str
    expires_at: str
    # Set when the token was minted for someone else: it works once another person approves.
    change_id: str | None = None


class TokenInfo(BaseModel):
    """A token as listed: never its secret or hash."""

    id: str
    label: str
    created_at: str
    expires_at: str | None
    revoked_at: str | None
    revoked_by: str | None
    last_used_at: str | None  # to the hour
    state: Literal["live", "pending", "expired", "revoked"]  # pending: awaits a second person


class TokenList(BaseModel):
    principal: str
    tokens: list[TokenInfo]


class TenantCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(max_length=64)
    admin: str = Field(max_length=64)
    # A second founding admin: widening changes need a different person to approve them, so a
    # tenant with one admin could never widen anything.
    founder: str | None = Field(default=None, max_length=64)


class TenantCreated(BaseModel):
    tenant: str
    admin: str
    token: str
    policy_version: int
    founders: dict[str, str] = {}  # the founder's token, shown once


class TenantOut(BaseModel):
    name: str
    installation: bool
    created_at: str


class RoleChange(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: str = Field(max_length=64, json_schema_extra={"pattern": ROLE_PATTERN})
