"""`warden init`: schema, the first tenant and admin, seed policy rules; idempotence refused.
`create_tenant`: the same seeding for every later tenant, by a platform admin."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from warden.audit.keys import bind_settings
from warden.audit.outcomes import by
from warden.audit.service import append, ensure_head
from warden.config import Settings
from warden.core.filesystem import ensure_private_dir
from warden.db.migrate import upgrade
from warden.db.session import make_engine, make_sessionmaker, unit_of_work
from warden.errors import Conflict, Unprocessable
from warden.gateway import master_key
from warden.gateway.master_key import load_mask_key
from warden.identity.models import Principal, Tenant
from warden.identity.service import Caller, check_name, create_principal, issue_token
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
    The data folder is made 0700 (the CLI's umask makes what it holds 0600).

    The one change nobody reviews, audited as `policy.bootstrap`. `founders` are further
    admins created here, by nobody: widening changes need a second person who is not a
    principal their proposer created, so a deployment that wants reviewed changes from day
    one names its founding admins at init."""
    ensure_private_dir(settings.data_dir)
    url = settings.resolved_database_url
    upgrade(url)
    engine = make_engine(url)
    bind_settings(engine, settings)  # the audit chain keys, kept outside the database
    try:
        with unit_of_work(make_sessionmaker(engine)) as db:
            if db.scalar(select(func.count()).select_from(Principal)):
                raise Conflict(
                    f"Warden is already initialised at {url} (its schema is now up to date);"
                    " use `warden principals` to add people"
                )
            ensure_head(db)
            done = seed_tenant(
                db,
                settings,
                tenant,
                admin,
                actor=None,
                installation=True,
                extra_policy_files=extra_policy_files,
                founders=founders,
            )
            # every later host must hold this master mask key (gateway/master_key.py)
            master_key.record(db, load_mask_key(settings), actor="warden init", how="warden init")
    finally:
        engine.dispose()
    return done


def create_tenant(
    db: Session,
    settings: Settings,
    actor: Caller,
    tenant: str,
    admin: str,
    founder: str | None = None,
) -> Initialized:
    """A new tenant with its first admin (a person), optionally a second founding admin, and
    the seed role rules, created by a platform admin; returns their tokens (shown once). The
    caller checks the right."""
    check_name(tenant, "tenant name")
    check_name(admin, "principal name")
    if founder is not None:
        check_name(founder, "principal name")
        if founder == admin:
            raise Unprocessable("the founding admin must be a different person from the admin")
    if db.scalar(select(Tenant).where(Tenant.name == tenant)) is not None:
        raise Conflict(f"a tenant named {tenant!r} already exists")
    founders = [founder] if founder else []
    done = seed_tenant(
        db, settings, tenant, admin, actor=actor, installation=False, founders=founders
    )
    details = {"tenant": tenant, "admin": admin, **({"founder": founder} if founder else {})}
    append(
        db, by(actor, "tenant.create", "allow", policy_version=done.policy_version, details=details)
    )
    return done


def seed_tenant(
    db: Session,
    settings: Settings,
    tenant: str,
    admin: str,
    *,
    actor: Caller | None,
    installation: bool,
    extra_policy_files: list[Path] | None = None,
    founders: Sequence[str] = (),
) -> Initialized:
    """Create the tenant, its first admin and token, and load the seed rules re-homed to it."""
    check_name(tenant, "tenant name")
    the_tenant = Tenant(name=tenant, installation=installation)
    db.add(the_tenant)
    db.flush()
    principal = create_principal(db, admin, "person", the_tenant)
    token = issue_token(
        db, principal, label="init" if actor is None else "tenant-create", settings=settings
    )
    # The policy change is recorded in the new tenant, so its own auditors see how it began.
    if actor is None:
        who = Caller(admin, "person", tenant, principal.id)
        reason = "warden init: seed rules"
    else:
        who = Caller(actor.name, actor.kind, tenant, actor.principal_id)
        reason = (
            f"tenant {tenant} created by platform admin {actor.name} ({actor.tenant}): seed rules"
        )
    seeds = [settings.policies_dir / name for name in SEED_FILES]
    files = [*seeds, *(extra_policy_files or [])]
    rules = [for_tenant(r, tenant) for r in read_csv(files)]
    if actor is not None:
        # A later tenant gets the seed's roles, not the rules it names for the demo's people.
        rules = [r for r in rules if r[1][0].startswith("role:")]
    rules.append(("g", (admin, "role:admin", tenant)))
    tokens: dict[str, str] = {}
    for name in founders:
        founder = create_principal(db, name, "person", the_tenant)
        tokens[name] = issue_token(db, founder, label="init", settings=settings)
        rules.append(("g", (name, "role:admin", tenant)))
    # Seeding is the one unreviewed change; its audit action says so.
    version = apply_change(
        db,
        who,
        add=rules,
        reason=f"{reason} (bootstrap, unreviewed by design)",
        action="policy.bootstrap",
        details={"bootstrap": True, "installation": installation, "founders": list(founders)},
    )
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
