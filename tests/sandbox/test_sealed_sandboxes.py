"""A job token speaks only for the sandbox Warden wrote (warden/db/sealed.py): its scope,
launcher and segment, and the token's own row, edited in SQL, read nothing; an ended sandbox
set back to running reads nothing either (identity/revocations.py), and `verify` says so."""

from __future__ import annotations

from typing import Any

import pytest

from tests.sealed_rows import (
    alices_sandbox,
    job_read,
    job_token_of,
    rolled_back,
    sandbox_of,
    sql,
)
from warden.db.session import unit_of_work
from warden.identity.service import get_principal
from warden.sandbox.models import Sandbox


@pytest.mark.parametrize(
    "change",
    [
        "datasets='[\"latent_users\"]', purpose='evaluation'",  # a wider scope
        "launcher='erin', purpose='analytics'",  # another person's rights
        "launcher_id=(SELECT id FROM principal WHERE name='erin'), launcher='erin'",
        "segment='app-dev'",
    ],
)
def test_a_job_token_speaks_only_for_the_sandbox_warden_wrote(warden: Any, change: str) -> None:
    sid, token = alices_sandbox(warden)
    assert job_read(warden, token, "engagements", purpose="training", limit=3).status_code == 200
    sql(warden, f"UPDATE sandbox SET {change} WHERE id=:i", i=sid)  # noqa: S608
    for dataset, purpose in [("latent_users", "evaluation"), ("engagements", "analytics"),
                             ("engagements", "training")]:  # fmt: skip
        answer = job_read(warden, token, dataset, purpose=purpose, limit=3)
        assert answer.status_code == 401, (change, dataset, answer.text)


def test_job_token_moved_to_another_persons_sandbox_speaks_for_nobody(warden: Any) -> None:
    """mallory (no grants) holds her own sandbox's job token (it is in her container's env);
    she points its row at alice's sandbox: it should not read as alice."""
    mine = sandbox_of(warden, "mallory", ["engagements"], "training")
    token = job_token_of(warden, mine)
    assert job_read(warden, token, "engagements", purpose="training", limit=3).status_code in (
        403, 404)  # fmt: skip
    # alice's sandbox has ENDED; its status (unsealed) is set back to running as well
    alices = sandbox_of(warden, "alice", ["engagements"], "training", status="succeeded")
    sql(warden, "UPDATE sandbox SET status='running' WHERE id=:i", i=alices)
    sql(warden, "UPDATE job_token SET sandbox_id=:a WHERE sandbox_id=:m", a=alices, m=mine)
    got = job_read(warden, token, "engagements", purpose="training", limit=3)
    assert got.status_code in (401, 503), f"mallory's token read as alice: {got.status_code}"


def test_an_ended_sandbox_made_live_again_reads_nothing(warden: Any) -> None:
    """A sandbox's status moves on every heartbeat, so it is not sealed: set back to running
    in SQL, its job token would read again. The log saw it end: refused, and reported."""
    from warden.audit.service import append
    from warden.sandbox.runtime import _exit_event

    sid, token = alices_sandbox(warden)
    with unit_of_work(warden.state.sessions) as db:
        row = db.get_one(Sandbox, sid)
        row.status = "succeeded"
        append(db, _exit_event(row, "allow", duration_s=1.0))
    assert job_read(warden, token, "engagements", purpose="training", limit=3).status_code == 401
    assert not rolled_back(warden)
    sql(warden, "UPDATE sandbox SET status='running' WHERE id=:i", i=sid)
    assert job_read(warden, token, "engagements", purpose="training", limit=3).status_code == 401
    (found,) = rolled_back(warden)
    assert f"sandbox {sid} ended" in found["detail"]


def test_an_exec_into_a_container_pointed_elsewhere_in_sql_is_refused(warden: Any) -> None:
    """Sweep of red team 14: `container_id` decides which container an exec runs in; alice's
    app-dev sandbox pointed in SQL at an ML job's container execs into nothing (503)."""
    with unit_of_work(warden.state.sessions) as db:
        alice = get_principal(db, "alice")
        row = Sandbox(
            tenant_id=alice.tenant_id, tenant="acme", launcher_id=alice.id, launcher="alice",
            segment="app-dev", status="running", image="warden-app",
            image_digest="sha256:" + "0" * 64, command=["sh"], datasets=[], purpose=None,
            network="allowlist", limits={}, instance="test", container_id="c-alice",
        )  # fmt: skip
        db.add(row)
        db.flush()
        sid = row.id
    sql(warden, "UPDATE sandbox SET container_id='c-ml-job' WHERE id=:i", i=sid)
    body = {"command": ["cat", "/data/x"]}
    r = warden.http.post(f"/v1/sandboxes/{sid}/exec", json=body, headers=warden.as_("alice"))
    assert r.status_code == 503, r.text
