"""Job tokens: bound to one sandbox, its segment, datasets and purpose; dead once it ends."""

from __future__ import annotations

import hmac
import secrets
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from warden.db.sealed import RowTampered, check
from warden.errors import Unauthenticated
from warden.identity.caller import JOB_TOKEN_PREFIX, Caller, hash_token
from warden.identity.models import Principal, Tenant
from warden.identity.revocations import revocations_for
from warden.sandbox.models import LIVE_STATUSES, JobToken, Sandbox


def issue_job_token(db: Session, sandbox: Sandbox) -> str:
    """A new secret for this sandbox; only its hash is stored."""
    secret = JOB_TOKEN_PREFIX + secrets.token_urlsafe(32)
    db.add(JobToken(sandbox_id=sandbox.id, token_hash=hash_token(secret, db.get_bind())))
    db.flush()
    return secret


def authenticate_job_token(db: Session, secret: str, now: datetime, socket_of: str) -> Caller:
    """The job's Caller while its sandbox runs, on its own sandbox's socket (`socket_of`);
    Unauthenticated ("job ended") after."""
    del now  # a job token lives exactly as long as its sandbox, not by the clock
    digest = hash_token(secret, db.get_bind())
    row = db.execute(
        select(JobToken, Sandbox, Principal, Tenant)
        .join(JobToken, JobToken.sandbox_id == Sandbox.id)
        .join(Principal, Principal.id == Sandbox.launcher_id)
        .join(Tenant, Tenant.id == Sandbox.tenant_id)
        .where(JobToken.token_hash == digest)
    ).first()
    if row is None:
        raise Unauthenticated("invalid token")
    token, sandbox, launcher, tenant = row
    if not hmac.compare_digest(token.token_hash or "", digest):
        raise Unauthenticated("invalid token")  # whatever the database's `=` meant
    if sandbox.id != socket_of:  # the socket checked its token; this is its row's sandbox
        raise Unauthenticated("invalid token")
    # what the log says ended stays ended; held to the newest checkpoint and refused while an
    # alarm stands, as an API token is (red team 21: a job read on through the alarm)
    over = revocations_for(db).held(db).refresh(db)
    if sandbox.id in over.ended:
        raise Unauthenticated("job ended")
    if launcher.name in over.disabled:
        raise Unauthenticated("principal disabled")
    if sandbox.status not in LIVE_STATUSES:
        raise Unauthenticated("job ended")
    if launcher.disabled:
        raise Unauthenticated("principal disabled")
    try:  # its scope, launcher and tenant as Warden wrote them (db/sealed.py)
        for sealed in (token, sandbox, launcher, tenant):
            check(db, sealed)
    except RowTampered:
        raise Unauthenticated("this job's sandbox was written past Warden") from None
    if sandbox.launcher != launcher.name:
        raise Unauthenticated("this job's sandbox was written past Warden")
    return caller_for(sandbox, tenant.name)


def caller_for(sandbox: Sandbox, tenant: str) -> Caller:
    return Caller(
        name=sandbox.actor_name,
        kind="job",
        tenant=tenant,
        principal_id=sandbox.launcher_id,
        on_behalf_of=sandbox.launcher,
        job_id=sandbox.id,
        segment=sandbox.segment,
        scope_datasets=tuple(sandbox.datasets or ()),
        scope_purpose=sandbox.purpose,
    )
