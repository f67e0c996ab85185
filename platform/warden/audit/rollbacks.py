"""What the log says happened and the rows no longer say: a token it revoked that works again,
a principal it disabled (and never enabled since) that is enabled, a sandbox it saw end that
is live again (its job token would work again), an experiment it saw stopped or decided
in another state now, a tenant whose serving default is not the one it saw set last.

A sealed row (db/sealed.py, identity/caller.token_seal) cannot be forged, but its earlier
self, seal and all, can be written back by someone with database write access. The row
alone cannot tell; the chain can: the revocations it records (read as every process reads
them, identity/revocations.py: the chain's own keyed events only) are compared with the rows
now, and `verify` reports each row written back as tampering (`rolled_back`). A sandbox's
status is not sealed (it moves as it runs): one launched with a workspace and never ended in
the log whose row says it is not running is reported too."""

from __future__ import annotations

from collections.abc import Iterator

from sqlalchemy import select
from sqlalchemy.orm import Session

from warden.experiments.models import Experiment, ServingDefault
from warden.identity.models import ApiToken, Principal
from warden.identity.revocations import Revocations
from warden.sandbox.models import LIVE_STATUSES, Sandbox

ROLLED_BACK = "rolled_back"  # a row written back to what it was before a logged revocation

Found = tuple[str, int | None, str | None, str]  # kind, seq, event id, detail


def rolled_back(db: Session) -> Iterator[Found]:
    log = Revocations().refresh(db)
    checks = [
        (log.tokens, ApiToken.id, ApiToken.revoked_at.is_(None),
         "token {} was revoked (seq {}) and is not revoked now"),
        (log.disabled, Principal.name, Principal.disabled.is_(False),
         "principal {} was disabled (seq {}), not enabled since, and is enabled now"),
        (log.ended, Sandbox.id, Sandbox.status.in_(LIVE_STATUSES),
         "sandbox {} ended (seq {}) and is live now"),
    ]  # fmt: skip
    for said, key, live, detail in checks:
        if said:
            for found in db.scalars(select(key).where(key.in_(said), live)):
                yield ROLLED_BACK, said[found], None, detail.format(found, said[found])
    for sandbox_id in log.mounting:  # launched with a workspace, never ended: still live
        status = db.scalar(select(Sandbox.status).where(Sandbox.id == sandbox_id))
        if status not in LIVE_STATUSES:
            row_says = "has no row" if status is None else f"is {status} in its row"
            detail = f"sandbox {sandbox_id} mounts a workspace, never ended in the log"
            yield ROLLED_BACK, None, None, f"{detail}, and {row_says}"
    for experiment_id, (seq, (state, _)) in log.experiments.items():
        row = db.get(Experiment, experiment_id)
        if row is not None and row.state != state:
            detail = f"experiment {row.name} was {state} (seq {seq}) and is {row.state} now"
            yield ROLLED_BACK, seq, None, detail
    for tenant_id, (seq, default_id) in log.defaults.items():
        newest = db.scalars(
            select(ServingDefault.id)
            .where(ServingDefault.tenant_id == tenant_id)
            .order_by(ServingDefault.created_at.desc(), ServingDefault.id.desc())
            .limit(1)
        ).first()
        if newest != default_id:
            detail = f"tenant {tenant_id}'s serving default was set to row {default_id} (seq {seq})"
            yield ROLLED_BACK, seq, None, f"{detail}; the newest row is {newest}"
