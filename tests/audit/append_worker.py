"""Appends N audit events from its own process: `append_worker.py DB_URL ACTOR N`."""

from __future__ import annotations

import sys

from warden.audit.service import AuditRecord, record
from warden.db.session import make_engine, make_sessionmaker


def main() -> None:
    url, actor, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    engine = make_engine(url)
    sessions = make_sessionmaker(engine)
    for i in range(count):
        record(
            sessions,
            AuditRecord(action="read", decision="allow", actor=f"{actor}-{i}", actor_kind="job"),
        )
    engine.dispose()


if __name__ == "__main__":
    main()
