"""Records a process owes the log: a streamed read's completion whose append failed after its
bytes had left (the log's head locked past the busy timeout, the query cancelled). Nothing
can take the bytes back, so the record is kept and written before the process serves another
read; a read is refused (503) while it cannot be. Else one failed append, which someone with
SQL can cause at will, kept a read's rows, bytes and digest out of the log, and `verify` saw
only an open intent, the note a server killed mid-stream leaves.
"""

from __future__ import annotations

import threading

from sqlalchemy.orm import Session, sessionmaker

from warden.audit.service import AuditRecord, record


class OwedRecords:
    """One process's unwritten records, oldest first (lost only with the process)."""

    def __init__(self) -> None:
        self._records: list[AuditRecord] = []
        self._lock = threading.Lock()

    def owe(self, rec: AuditRecord) -> None:
        with self._lock:
            self._records.append(rec)

    def settle(self, sessions: sessionmaker[Session]) -> None:
        """Write what is owed, in order; AuditUnavailable (the rest kept) if the log refuses."""
        if not self._records:  # a read's whole cost when nothing is owed
            return
        with self._lock:
            while self._records:
                record(sessions, self._records[0])
                self._records.pop(0)

    def __len__(self) -> int:
        return len(self._records)
