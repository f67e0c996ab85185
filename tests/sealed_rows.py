"""Writing Warden's database past Warden, as an insider with SQL access would: the helpers the
sealed-row tests share (tests/*/test_sealed_*.py, tests/identity/test_row_seals.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import text

from warden.db.session import unit_of_work
from warden.identity.caller import plain_digest
from warden.identity.service import get_principal
from warden.sandbox.gateway_socket import SocketGate
from warden.sandbox.models import Sandbox
from warden.sandbox.tokens import issue_job_token

# Which sandbox each job token was issued for: the gateway socket it is handed to (a job
# token speaks only there, never over TCP), whatever its row says later.
_SOCKET_OF: dict[str, str] = {}


def sql(w: Any, *statements: str, **params: Any) -> None:
    with w.state.engine.begin() as conn:
        for statement in statements:
            conn.execute(text(statement), params)


def one(w: Any, statement: str, **params: Any) -> Any:
    with w.state.engine.connect() as conn:
        return conn.execute(text(statement), params).first()


def read(w: Any, who: str, dataset: str = "engagements", **body: Any) -> Any:
    return w.read(who, dataset, **{"purpose": "training", "limit": 3, **body})


def alices_sandbox(w: Any) -> tuple[str, str]:
    """alice's own ML sandbox (engagements, training): its token is in her container's env."""
    with unit_of_work(w.state.sessions) as db:
        alice = get_principal(db, "alice")
        sandbox = Sandbox(
            tenant_id=alice.tenant_id, tenant="acme", launcher_id=alice.id, launcher="alice",
            segment="ml", status="running", image="warden-ml",
            image_digest="sha256:" + "0" * 64, command=["python"], datasets=["engagements"],
            purpose="training", network="none", limits={}, instance="test",
        )  # fmt: skip
        db.add(sandbox)
        db.flush()
        sandbox_id, token = sandbox.id, issue_job_token(db, sandbox)
    _SOCKET_OF[token] = sandbox_id
    return sandbox_id, token


def on_its_socket(w: Any, token: str) -> Any:
    return on_socket(w, _SOCKET_OF[token], token)


def on_socket(w: Any, sandbox_id: str, token: str) -> Any:
    """A client of a sandbox's gateway socket serving `token` (its gate, in process, so it
    answers even once the sandbox ended and its unix socket is gone)."""
    from fastapi.testclient import TestClient

    return TestClient(SocketGate(w.app, sandbox_id, plain_digest(token)))


def job_read(w: Any, token: str, dataset: str, **body: Any) -> Any:
    """A read with a job token on its own sandbox's gateway socket."""
    return on_its_socket(w, token).post(
        f"/v1/datasets/{dataset}/read", json=body, headers={"authorization": f"Bearer {token}"}
    )


def users_file(w: Any) -> str:
    with w.state.engine.connect() as conn:
        path = conn.execute(
            text(
                "SELECT v.path FROM dataset_version v JOIN dataset d ON d.id=v.dataset_id"
                " WHERE d.name='users' AND v.digest=d.current_version"
            )
        ).scalar_one()
    return str(Path("datasets") / path)


def sandbox_of(w: Any, who: str, datasets: list[str], purpose: str, status: str = "running") -> str:
    with unit_of_work(w.state.sessions) as db:
        p = get_principal(db, who)
        sb = Sandbox(
            tenant_id=p.tenant_id, tenant="acme", launcher_id=p.id, launcher=who,
            segment="ml", status=status, image="warden-ml",
            image_digest="sha256:" + "0" * 64, command=["python"], datasets=datasets,
            purpose=purpose, network="none", limits={}, instance="test",
        )  # fmt: skip
        db.add(sb)
        db.flush()
        return sb.id


def job_token_of(w: Any, sandbox_id: str) -> str:
    with unit_of_work(w.state.sessions) as db:
        sb = db.get(Sandbox, sandbox_id)
        token = issue_job_token(db, sb)
    _SOCKET_OF[token] = sandbox_id
    return token


def rolled_back(w: Any) -> list[dict[str, Any]]:
    answer = w.http.post("/v1/audit/verify", headers=w.as_("admin"))
    assert answer.status_code == 200, answer.text
    return [f for f in answer.json()["findings"] if f["kind"] == "rolled_back"]


def edit_request(w: Any, request_id: str, assignments: str, **params: Any) -> None:
    sql(w, f"UPDATE access_request SET {assignments} WHERE id=:i", i=request_id, **params)  # noqa: S608


def finished_job(
    db: Any,
    *,
    kind: str,
    step: str,
    name: str,
    datasets: list[str],
    purpose: str,
    launcher: str = "alice",
) -> Any:
    """A succeeded job of `launcher`'s in acme, written as the worker leaves one (flushed)."""
    from warden.identity.service import get_tenant
    from warden.jobs.models import Job

    person = get_principal(db, launcher)
    job = Job(
        tenant_id=get_tenant(db, "acme").id, tenant="acme", launcher_id=person.id,
        launcher=launcher, kind=kind, step=step, name=name, spec={}, datasets=datasets,
        purpose=purpose, state="succeeded",
    )  # fmt: skip
    db.add(job)
    db.flush()
    return job


def live_token_id(w: Any, who: str) -> str:
    """The id of `who`'s live API token."""
    found = one(
        w,
        "SELECT t.id FROM api_token t JOIN principal p ON p.id=t.principal_id"
        " WHERE p.name=:who AND t.revoked_at IS NULL",
        who=who,
    )
    return str(found[0])


def revoke_through_the_api(w: Any, who: str) -> tuple[str, str]:
    """Revoke `who`'s live token as admin, through the API: (its id, its seal before), for a
    test that then writes the row back as it was."""
    token_id = live_token_id(w, who)
    before = str(one(w, "SELECT seal FROM api_token WHERE id=:i", i=token_id)[0])
    r = w.http.post(f"/v1/principals/{who}/tokens/{token_id}/revoke", headers=w.as_("admin"))
    assert r.status_code == 200, r.text
    return token_id, before


def audit_columns(w: Any) -> list[str]:
    """The columns of the table Warden's `audit_event` names now, in their order."""
    if w.settings.database_url.startswith("sqlite"):
        with w.state.engine.connect() as conn:
            return [r[1] for r in conn.exec_driver_sql("PRAGMA table_info(audit_event)")]
    names = "SELECT column_name FROM information_schema.columns WHERE table_name = 'audit_event'"
    with w.state.engine.connect() as conn:
        return [r[0] for r in conn.exec_driver_sql(names + " ORDER BY ordinal_position")]
