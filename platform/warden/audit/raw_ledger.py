"""The raw places the checkpoints anchor, in a signed list beside them.

A read that returned identifiers unmasked is checkpointed at once (audit/anchor.py), but a
checkpoint names only the chain's head: a process started after it learnt the read from the log
alone, where someone who writes the database can write over its reader, dataset or action, or
delete its row, before any process that knows it checks that reader (policy/raw_reads.py). So
the committing process also appends the places it anchors to `raw-reads.jsonl` beside the
checkpoints: one line per commit naming each (tenant, reader, dataset, column, purpose) the list
lacks, with the event that first showed it, signed with the checkpoint key. Every process
sharing the folder reads the list at start and what was appended whenever the file changed, and
counts every place it names whatever the log's rows say now. Lines are numbered from 1: a line
no checkpoint key signed, a number out of turn, or the file replaced or cut below what was read
refuses (fail closed, as an unsigned alarm does). Cutting its end needs write access to the
folder, which must be append-only storage the database's writers cannot reach.
"""

from __future__ import annotations

import base64
import json
import os
import threading
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from cryptography.exceptions import InvalidSignature

from warden.audit.chain import canonical_json, iso_utc
from warden.core.filesystem import append_durably
from warden.errors import AuditUnavailable

FILE_NAME = "raw-reads.jsonl"
KIND = "raw_reads"  # so no alarm or checkpoint line (signed with the same key) passes for one

# (tenant, reader, dataset, column, purpose) of a read that returned the column unmasked
RawPlace = tuple[str, str, str, str, str]


class RawLedger:
    """The raw-read list of one checkpoint folder (a CheckpointStore's), as this process read it."""

    def __init__(self, checkpoints: Any) -> None:
        self.checkpoints = checkpoints
        self.path = checkpoints.folder / FILE_NAME
        self.places: dict[RawPlace, str] = {}  # every place listed, with its event's id
        self._lock = threading.Lock()
        self._n = 0  # lines read
        self._read_to = 0  # bytes read (whole lines)
        self._inode: int | None = None

    def catch_up(self) -> None:
        """Read the lines appended since the last look (one `stat` when none was).
        AuditUnavailable when the list was tampered with."""
        with self._lock:
            try:
                self._catch_up_locked()
            except OSError as exc:  # unreadable: what it lists cannot be counted (fail closed)
                raise _tampered(f"cannot be read ({type(exc).__name__})") from exc

    def of(self, readers: set[str] | None) -> dict[RawPlace, str]:
        with self._lock:
            return {p: i for p, i in self.places.items() if readers is None or p[1] in readers}

    def append(self, places: Mapping[RawPlace, str]) -> None:
        """List the places the list lacks, in one signed line, under the folder's lock."""
        signing = self.checkpoints.signing_key
        if signing is None:
            raise RuntimeError("this checkpoint folder has no signing key")
        with self.checkpoints.locked(), self._lock:
            self._catch_up_locked()
            new = sorted((*p, i) for p, i in places.items() if p not in self.places)
            if not new:
                return
            doc = {"v": 1, "kind": KIND, "store": self.checkpoints.store, "n": self._n + 1,
                   "ts": iso_utc(datetime.now(UTC)), "places": [list(p) for p in new]}  # fmt: skip
            sig = base64.b64encode(signing.sign(canonical_json(doc))).decode("ascii")
            append_durably(self.path, canonical_json({**doc, "sig": sig}))
            self._catch_up_locked()

    def _catch_up_locked(self) -> None:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            if self._inode is not None:
                raise _tampered("is gone") from None
            return
        if self._inode is not None and (st.st_ino != self._inode or st.st_size < self._read_to):
            raise _tampered("was replaced or cut short")
        if self._inode is not None and st.st_size == self._read_to:
            return
        with self.path.open("rb") as handle:
            handle.seek(self._read_to)
            data = handle.read()
        whole = data[: data.rfind(b"\n") + 1]  # a line still being written waits
        for raw in whole.splitlines():
            self._take(raw)
        self._inode, self._read_to = st.st_ino, self._read_to + len(whole)

    def _take(self, raw: bytes) -> None:
        try:
            doc = json.loads(raw)
            sig = base64.b64decode(doc.pop("sig"), validate=True)
            self.checkpoints.public_keys[doc["store"]].verify(sig, canonical_json(doc))
            if doc["kind"] != KIND or doc["n"] != self._n + 1:
                raise ValueError(f"line {doc['n']} where {self._n + 1} was due")
            listed = dict(_entry(p) for p in doc["places"])
        except (ValueError, TypeError, KeyError, AttributeError, IndexError, InvalidSignature):
            raise _tampered(f"holds a line Warden did not sign after line {self._n}") from None
        self._n += 1
        for place, event_id in listed.items():
            self.places.setdefault(place, event_id)


def _entry(fields: Any) -> tuple[RawPlace, str]:
    if not isinstance(fields, list) or not all(isinstance(f, str) for f in fields):
        raise TypeError("not a list of names")
    t, r, d, c, p, event_id = fields
    return (t, r, d, c, p), event_id


def _tampered(what: str) -> AuditUnavailable:
    return AuditUnavailable(
        f"the raw-read list {FILE_NAME} beside the audit checkpoints {what}; nothing is decided"
        " until an operator restores it"
    )


__all__ = ["FILE_NAME", "RawLedger", "RawPlace"]
