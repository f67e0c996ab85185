"""One master mask key per deployment, known to the database only by a keyed fingerprint.

Every pseudonym is derived from the master key (`keys.derive`), so two hosts holding
different master keys mask one entity differently and masked columns silently stop joining
across them. The database keeps the fingerprint of the deployment's key (`deployment_key`,
row `mask`): HMAC-SHA256 of a fixed label under the key, never the key nor a plain hash of
it (a value no other use of the key produces). Like any fingerprint it lets someone test a
guessed key, so the key must be random: a generated `mask.key` is 32 random bytes.
`warden serve` and `warden worker` refuse to start with a key whose fingerprint differs.

Who records it: `warden init`; else the first host to start on a deployment that has masked
nothing yet (one migrated from before fingerprints were kept). Once reads have been masked,
a missing fingerprint is never re-recorded from whatever key a starting host holds, so
deleting the row does not let a foreign key in: hosts refuse to start until an operator
records the key they know to be the deployment's (`warden data record-mask-key`, audited).
A tenant's rotation (`keys.rotate`) derives new keys from the same master: the fingerprint
stays. Replacing the master itself changes every pseudonym: `record-mask-key --replace`.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import String, cast, select
from sqlalchemy.orm import Session

from warden.audit.models import AuditEvent
from warden.audit.outcomes import by_operator
from warden.audit.service import append
from warden.catalog.models import DeploymentKey
from warden.config import Settings
from warden.db.base import utcnow

MASTER = "mask"  # the master mask key's row in deployment_key
_LABEL = b"warden master mask key fingerprint v1"


def load_mask_key(settings: Settings) -> bytes:
    """The master key: from WARDEN_MASK_KEY, else a random one kept in the data directory."""
    if settings.mask_key:
        return settings.mask_key.encode()
    path = key_file(settings)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_hex(32))
        path.chmod(0o600)
    return path.read_text().strip().encode()


def key_file(settings: Settings) -> Path:
    return Path(settings.data_dir) / "mask.key"


def fingerprint(master: bytes) -> str:
    """HMAC-SHA256 of a fixed label under the master key (64 hex digits)."""
    if not master:
        raise ValueError("the master mask key is empty")
    return hmac.new(master, _LABEL, hashlib.sha256).hexdigest()


def short(fp: str) -> str:
    return fp[:16]


@dataclass(frozen=True)
class MasterKeyCheck:
    """What the database says of one host's master key."""

    own: str  # its fingerprint
    recorded: str | None  # the deployment's, when one is recorded
    recorded_by: str = ""
    masked_before: bool = False  # no fingerprint, yet reads were already masked

    @property
    def foreign(self) -> bool:
        return self.recorded is not None and not hmac.compare_digest(self.recorded, self.own)

    @property
    def unknown(self) -> bool:
        """No fingerprint to compare with, and masked reads that a wrong key would betray."""
        return self.recorded is None and self.masked_before


def inspect(db: Session, master: bytes) -> MasterKeyCheck:
    own = fingerprint(master)
    row = db.get(DeploymentKey, MASTER)
    if row is not None:
        when = row.recorded_at.strftime("%Y-%m-%d %H:%M")
        return MasterKeyCheck(own, row.fingerprint, f"{row.recorded_by} at {when} UTC")
    return MasterKeyCheck(own, None, masked_before=has_masked_reads(db))


def has_masked_reads(db: Session) -> bool:
    """Whether any allowed event of the chain sent masked columns (stops at the first). The
    text test only narrows: the same empty list written as other text ('[ ]') parses empty."""
    masked = cast(AuditEvent.masked_columns, String).not_in(("[]", "null"))
    query = select(AuditEvent.masked_columns).where(
        AuditEvent.decision == "allow", AuditEvent.seq >= 1, masked
    )
    return any(columns for columns in db.scalars(query.execution_options(yield_per=100)))


def record(db: Session, master: bytes, *, actor: str, how: str, reason: str = "") -> MasterKeyCheck:
    """Make `master` the deployment's key (replacing any other), audited as
    `mask_key.record` with both fingerprints' first 16 digits."""
    fp = fingerprint(master)
    row = db.get(DeploymentKey, MASTER)
    replaced = row.fingerprint if row is not None else None
    if row is None:
        row = DeploymentKey(name=MASTER, fingerprint=fp, recorded_by=actor[:64])
        db.add(row)
    else:
        row.fingerprint, row.recorded_by, row.recorded_at = fp, actor[:64], utcnow()
    db.flush()
    details = {"fingerprint": short(fp), "how": how}
    details |= {"replaced": short(replaced)} if replaced else {}
    append(db, by_operator(actor, "mask_key.record", reason, details=details))
    return MasterKeyCheck(fp, fp, actor)


def settle(db: Session, master: bytes, *, actor: str) -> MasterKeyCheck:
    """A starting host's check: records its key when the deployment has none and has
    masked nothing yet (two hosts racing to do so conflict on the row's key: the loser's
    commit fails, and its second look compares with the winner's)."""
    check = inspect(db, master)
    if check.recorded is None and not check.masked_before:
        return record(db, master, actor=actor, how="first start")
    return check
