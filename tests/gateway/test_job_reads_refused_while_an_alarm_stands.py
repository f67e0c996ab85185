"""A job's socket refuses reads while an audit alarm stands, as every API request does (red
team 21).

The attack (an insider of acme with SQL on the database, not the key files nor the checkpoint
folder): red team 20 made a checkpoint refused for tampering raise the signed alarm, so every
process answers 503 rather than serve into a tail no checkpoint will protect. But the alarm was
looked at on an API token's authentication only; a job token is checked on its sandbox's
socket by another path, which read the log's endings and nothing else. So alice's running job
(or `warden worker`'s jobs) went on reading through the alarm, each read appended to the tail
the insider means to cut once the chain is made whole again.

What must hold: a job's read is refused (503) while an alarm stands, as any request is.
"""

from __future__ import annotations

from typing import Any

from tests.sealed_rows import alices_sandbox, job_read, sql


def _read(warden: Any, token: str) -> Any:
    return job_read(warden, token, "engagements", purpose="training", columns=["action"], limit=3)


def test_a_job_read_is_refused_while_an_alarm_stands(warden: Any) -> None:
    _, token = alices_sandbox(warden)
    checkpointer = warden.process.checkpointer
    assert not checkpointer.checkpoint_now().findings
    first = _read(warden, token)
    assert first.status_code == 200, first.text
    sql(warden, "UPDATE audit_event SET reason = 'tidied' WHERE id = :i",
        i=first.headers["x-warden-audit-event"])  # fmt: skip
    assert checkpointer.round().findings  # refused: the alarm is raised
    later = _read(warden, token)
    assert later.status_code == 503, f"the job read ({later.status_code}) while an alarm stood"
    assert "alarm" in later.json()["detail"], later.text
