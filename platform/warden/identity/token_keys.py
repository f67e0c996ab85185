"""Token hashes are keyed (`caller.keyed`) and token rows sealed (`caller.token_seal`). A
deployment that stored tokens before keeps unkeyed, unsealed rows, which authenticate
nothing now, until an operator rekeys them once (`warden data rekey-tokens`, audited): every
stored hash h becomes keyed(h), which is what the token's secret now hashes to, and each row
is sealed. It cannot tell a row written in SQL from a real one, so it runs right after the
upgrade, and once: it refuses when any row already carries a valid seal (which no database
writer can forge) or the `deployment_key` row `token_hashes` says it was done (the migration
writes it when no token existed yet)."""

from __future__ import annotations

import hmac

from sqlalchemy import exists, select, update
from sqlalchemy.orm import Session

from warden.audit.keys import keys_for
from warden.audit.outcomes import by_operator
from warden.audit.service import append
from warden.catalog.models import DeploymentKey
from warden.db import sealed
from warden.errors import Conflict
from warden.identity.caller import keyed
from warden.identity.models import ApiToken
from warden.identity.service import seal_of, seal_token
from warden.sandbox.models import JobToken

MARKER = "token_hashes"
KEYED = "keyed-v1"


def _any_sealed(db: Session) -> bool:
    """Whether some token row carries a valid seal: then this deployment keys its tokens."""
    for token in db.scalars(select(ApiToken).where(ApiToken.seal.is_not(None))):
        if hmac.compare_digest(token.seal or "", seal_of(db, token)):
            return True
    return False


def unkeyed_tokens_remain(db: Session) -> bool:
    """Whether stored tokens may still carry unkeyed hashes (never rekeyed)."""
    if db.get(DeploymentKey, MARKER) is not None:
        return False
    return bool(db.scalar(select(exists().where(ApiToken.id.is_not(None))))) and not _any_sealed(db)


def rekey(db: Session, *, actor: str, reason: str = "") -> int:
    """Key and seal every stored token, once; returns how many. Conflict if already done."""
    if db.get(DeploymentKey, MARKER) is not None or _any_sealed(db):
        raise Conflict("token hashes are already keyed; rekeying twice would end every token")
    keys = keys_for(db.get_bind())
    count = 0
    for table in (ApiToken, JobToken):
        for row_id, plain in db.execute(select(table.id, table.token_hash)).all():
            db.execute(
                update(table).where(table.id == row_id).values(token_hash=keyed(keys, plain))
            )
            count += 1
    db.expire_all()  # the hashes just rewritten
    for token in db.scalars(select(ApiToken)):
        seal_token(db, token)
    for job_token in db.scalars(select(JobToken)):
        job_token.seal = sealed.seal_of(keys, job_token)
    db.add(DeploymentKey(name=MARKER, fingerprint=KEYED, recorded_by=actor[:64]))
    append(db, by_operator(actor, "tokens.rekeyed", reason, details={"tokens": count}))
    return count
