"""`warden init`: schema, the first tenant and admin, seed policy rules; idempotence refused."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import func, select

from warden.audit.service import ensure_head
from warden.config import Settings
from warden.db.migrate import upgrade
from warden.db.session import make_engine, make_sessionmaker, unit_of_work
from warden.errors import Conflict
from warden.identity.models import Principal
from warden.identity.service import Caller, create_principal, get_or_create_tenant, issue_token
from warden.policy.changes import apply_change
from warden.policy.rules import Rule, read_csv


@dataclass(frozen=True)
class Initialized:
    tenant: str
    admin: str
    token: str
    policy_version: int
    # Further founding admins and their tokens (shown once).
    founders: dict[str, str] = field(default_factory=dict)


def initialize(
    settings: Settings,
    *,
    tenant: str = "acme",
    admin: str = "admin",
    extra_policy_files: list[Path] | None = None,
    founders: Sequence[str] = (),
) -> Initialized:
    """Build the schema, create the tenant and its admin, seed the rules; returns the token.

    The one change nobody reviews, audited as `policy.bootstrap`. `founders` are further
    admins created here, by nobody: widening changes need a second person who is not a
    principal their proposer created, so a deployment that wants reviewed changes from day
    one names its founding admins at init."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    url = settings.resolved_database_url
    upgrade(url)
    engine = make_engine(url)
    try:
        with unit_of_work(make_sessionmaker(engine)) as db:
            if db.scalar(select(func.count()).select_from(Principal)):
                raise Conflict(
                    f"Warden is already initialised at {url}; use `warden principals` to add people"
                )
            ensure_head(db)
            the_tenant = get_or_create_tenant(db, tenant)
            principal = create_principal(db, admin, "person", the_tenant)
            token = issue_token(db, principal, label="init")
            actor = Caller(admin, "person", tenant, principal.id)
            seeds = [settings.policies_dir / name for name in SEED_FILES]
            files = [*seeds, *(extra_policy_files or [])]
            rules = [for_tenant(r, tenant) for r in read_csv(files)]
            rules.append(("g", (admin, "role:admin", tenant)))
            tokens: dict[str, str] = {}
            for name in founders:
                founder = create_principal(db, name, "person", the_tenant)
                tokens[name] = issue_token(db, founder, label="init")
                rules.append(("g", (name, "role:admin", tenant)))
            version = apply_change(
                db,
                actor,
                add=rules,
                reason="warden init: seed rules (bootstrap, unreviewed by design)",
                action="policy.bootstrap",
                details={"bootstrap": True, "founders": list(founders)},
            )
    finally:
        engine.dispose()
    return Initialized(
        tenant=tenant, admin=admin, token=token, policy_version=version, founders=tokens
    )


SEED_TENANT = "acme"
# Loaded by `warden init`, in order: roles and data rules, sandbox launch rights, access rights.
SEED_FILES = ("seed.csv", "sandbox.csv", "access.csv")


def for_tenant(rule: Rule, tenant: str) -> Rule:
    """Seed files are written for tenant "acme"; re-home their domain field."""
    ptype, fields = rule
    index = 2 if ptype == "g" else 1
    if fields[index] != SEED_TENANT:
        return rule
    return ptype, (*fields[:index], tenant, *fields[index + 1 :])
