"""Alarms: a signed line in the checkpoint folder that makes every process refuse.

When the checkpoint after an event that ends access is refused (audit/anchor.py), the chain
was changed between the commit and the signature: say a trigger deleted the revocation inside
its own commit, or replaced its row. The committing process knows (it holds the event), but
the other processes would never hear of it from the database, and no checkpoint names it. So
the committing process appends an *alarm* to `alarms.jsonl` beside the checkpoints, signed
with the checkpoint key and carrying the ending events it holds. Every process sharing the
folder looks at the file (one `stat` per authentication), takes those endings into its own
memory, and refuses every request (503) while an alarm stands. Only an operator on the host
clears one (`warden audit alarms --clear ID`, which signs a clearing line); no checkpoint, and
no database writer, does. Any checkpoint refused for tampering raises one too, carrying no
endings (audit/checkpoints.py): else every request would go on into a tail no checkpoint
protects, for the insider to cut once the chain is made consistent again. A line that does
not parse or whose signature fails stands as an alarm too (fail closed): the folder is
Warden's, so a line there that Warden did not sign means someone else writes there.
"""

from __future__ import annotations

import base64
import getpass
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from warden.audit.chain import canonical_json, iso_utc
from warden.core.filesystem import append_durably

FILE_NAME = "alarms.jsonl"
ALARM, CLEAR = "alarm", "clear"
MAX_REASON = 2000


def line_id(raw: bytes) -> str:
    """An alarm's id: of its line as written, so a line nobody can read is clearable too."""
    return hashlib.sha256(raw.strip()).hexdigest()[:16]


@dataclass(frozen=True)
class Ending:
    """An event that ended access, as the alarm carries it (what Revocations.take reads)."""

    action: str
    seq: int
    tenant: str | None
    dataset: str | None
    details: dict[str, Any]


@dataclass(frozen=True)
class Alarm:
    id: str
    ts: str
    reason: str
    endings: tuple[Ending, ...] = ()
    signed: bool = True  # False: a line that does not parse or whose signature fails


@dataclass
class AlarmLog:
    alarms: list[Alarm] = field(default_factory=list)
    cleared: set[str] = field(default_factory=set)

    @property
    def standing(self) -> list[Alarm]:
        return [a for a in self.alarms if a.id not in self.cleared]


class Alarms:
    """The alarm file of one checkpoint folder, and the keys that sign and check it."""

    def __init__(
        self,
        folder: Path,
        public_keys: dict[str, Ed25519PublicKey],
        signing_key: Ed25519PrivateKey | None,
        store: str,
    ) -> None:
        self.path = folder / FILE_NAME
        self.public_keys = public_keys
        self.signing_key = signing_key
        self.store = store

    @classmethod
    def beside(cls, checkpoints: Any) -> Alarms:
        """The alarms of a CheckpointStore's folder, with its keys."""
        return cls(
            checkpoints.folder, checkpoints.public_keys, checkpoints.signing_key, checkpoints.store
        )

    def raise_alarm(self, reason: str, endings: Sequence[Ending]) -> str:
        return self._append(
            {
                "kind": ALARM,
                "reason": reason[:MAX_REASON],
                "endings": [vars(e) for e in endings],
            }
        )

    def raise_once(self, reason: str) -> str | None:
        """An alarm for `reason` unless one for it already stands (a checkpointer refused
        every round would otherwise add a line a minute): its id, or None."""
        reason = reason[:MAX_REASON]
        if any(a.reason == reason for a in self.read().standing):
            return None
        return self.raise_alarm(reason, ())

    def clear(self, alarm_id: str) -> str:
        if alarm_id not in {a.id for a in self.read().standing}:
            raise KeyError(alarm_id)
        return self._append({"kind": CLEAR, "clears": alarm_id, "by": getpass.getuser()})

    def read(self) -> AlarmLog:
        found = AlarmLog()
        try:
            raw_lines = self.path.read_bytes().splitlines()
        except FileNotFoundError:
            return found
        for raw in raw_lines:
            if raw.strip():
                self._take(raw, found)
        return found

    def _take(self, raw: bytes, found: AlarmLog) -> None:
        doc = self._verified(raw)
        if doc is None:
            found.alarms.append(
                Alarm(line_id(raw), "", "a line in the alarm file Warden did not sign", (), False)
            )
        elif doc["kind"] == CLEAR:
            found.cleared.add(str(doc.get("clears")))
        else:
            endings = tuple(
                Ending(str(e["action"]), int(e["seq"]), e.get("tenant"), e.get("dataset"),
                       dict(e.get("details") or {}))
                for e in doc.get("endings") or []
            )  # fmt: skip
            found.alarms.append(Alarm(line_id(raw), str(doc["ts"]), str(doc["reason"]), endings))

    def _verified(self, raw: bytes) -> dict[str, Any] | None:
        try:
            doc = json.loads(raw)
            sig = base64.b64decode(doc.pop("sig"), validate=True)
            public = self.public_keys[doc["store"]]
            public.verify(sig, canonical_json(doc))
            if doc["kind"] not in (ALARM, CLEAR):
                return None
            return dict(doc)
        except (ValueError, TypeError, KeyError, AttributeError, InvalidSignature):
            return None

    def _append(self, body: dict[str, Any]) -> str:
        if self.signing_key is None:
            raise RuntimeError("this checkpoint folder has no signing key")
        doc = {"v": 1, "store": self.store, "ts": iso_utc(datetime.now(UTC)), **body}
        sig = base64.b64encode(self.signing_key.sign(canonical_json(doc))).decode("ascii")
        line = canonical_json({**doc, "sig": sig})
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        append_durably(self.path, line)
        return line_id(line)


__all__ = ["Alarm", "AlarmLog", "Alarms", "Ending", "line_id"]
