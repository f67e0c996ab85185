"""Token hashes are keyed (`caller.keyed`). A deployment that stored tokens before they were
keeps unkeyed hashes, which authenticate nothing now, until an operator rekeys them once
(`warden data rekey-tokens`, audited): every stored hash h becomes keyed(h), which is what
the token's secret now hashes to. It cannot tell a row written in SQL from a real one, so
it runs right after the upgrade, and once: the `deployment_key` row `token_hashes` says it
was done (the migration writes it when no token existed yet)."""

from __future__ import annotations

from sqlalchemy import exists, select, update
from sqlalchemy.orm import Session

from warden.audit.keys import keys_for
from warden.audit.outcomes import by_operator
from warden.audit.service import append
from warden.catalog.models import DeploymentKey
from warden.errors import Conflict
from warden.identity.caller import keyed
from warden.identity.models import ApiToken
from warden.sandbox.models import JobToken

MARKER = "token_hashes"
KEYED = "keyed-v1"


def unkeyed_tokens_remain(db: Session) -> bool:
    """Whether stored tokens may still carry unkeyed hashes (never rekeyed)."""
    if db.get(DeploymentKey, MARKER) is not None:
        return False
    return bool(db.scalar(select(exists().where(ApiToken.id.is_not(None)))))


def rekey(db: Session, *, actor: str, reason: str = "") -> int:
    """Key every stored token hash, once; returns how many. Conflict if already done."""
    if db.get(DeploymentKey, MARKER) is not None:
        raise Conflict("token hashes are already keyed; rekeying twice would end every token")
    keys = keys_for(db.get_bind())
    count = 0
    for table in (ApiToken, JobToken):
        for row_id, plain in db.execute(select(table.id, table.token_hash)).all():
            db.execute(
                update(table).where(table.id == row_id).values(token_hash=keyed(keys, plain))
            )
            count += 1
    db.add(DeploymentKey(name=MARKER, fingerprint=KEYED, recorded_by=actor[:64]))
    append(db, by_operator(actor, "tokens.rekeyed", reason, details={"tokens": count}))
    return count
