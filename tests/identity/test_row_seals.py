"""The rows decisions trust are sealed (warden/db/sealed.py): someone with database write
access but not the deployment's key files edits one, and nothing is decided on it any more.

Found by a red-team review (an insider with an ordinary token and SQL on Warden's database):
renaming principals moved grants and admin rights (Casbin decides on names), a tenant marked
the installation's in SQL made its admin a platform admin, a sandbox row widened its job
token's scope or moved it to another launcher, a model row's report pointed at a raw dataset
file was served to a caller with no grants, and clearing a service account's keepers let
its owner approve its request alone. Each test is one of those writes, or a variant of it.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, text
from tests.access.conftest import Access, allow_browse
from tests.access.test_reviewed_changes import _service_account
from tests.experiments.helpers import register_artifact

from warden.db.sealed import RowTampered
from warden.db.session import unit_of_work
from warden.errors import NotFound
from warden.identity.models import Principal
from warden.identity.service import get_principal
from warden.jobs.models import Job
from warden.registry.models import Model
from warden.sandbox.models import Sandbox
from warden.sandbox.tokens import issue_job_token


def _sql(w: Any, *statements: str, **params: Any) -> None:
    with w.state.engine.begin() as conn:
        for statement in statements:
            conn.execute(text(statement), params)


def _one(w: Any, statement: str, **params: Any) -> Any:
    with w.state.engine.connect() as conn:
        return conn.execute(text(statement), params).first()


def _read(w: Any, who: str, dataset: str = "engagements", **body: Any) -> Any:
    return w.read(who, dataset, **{"purpose": "training", "limit": 3, **body})


def test_swapping_principal_names_moves_no_grants(warden: Any) -> None:
    assert _read(warden, "mallory").status_code == 404
    _sql(
        warden,
        "UPDATE principal SET name='alice-old' WHERE name='alice'",
        "UPDATE principal SET name='alice' WHERE name='mallory'",
    )
    assert _read(warden, "mallory").status_code == 401  # her token speaks for nobody now
    assert _read(warden, "alice").status_code == 401  # nor does alice's


def test_renaming_yourself_admin_gives_no_admin_rights(warden: Any) -> None:
    _sql(
        warden,
        "UPDATE principal SET name='admin-old' WHERE name='admin'",
        "UPDATE principal SET name='admin' WHERE name='mallory'",
    )
    answer = warden.http.get("/v1/audit/events", headers=warden.as_("mallory"))
    assert answer.status_code == 401, answer.text


@pytest.mark.parametrize(
    "change",
    [
        "disabled=FALSE",  # a principal disabled through the API, revived in SQL
        "kind='service'",
        "tenant_id=(SELECT id FROM tenant WHERE name='acme')||''",  # the same id, rewritten
        "owner_id='someone'",
        "seal=NULL",
    ],
)
def test_any_write_to_a_principal_row_locks_it_out(warden: Any, change: str) -> None:
    if change.startswith("disabled"):
        r = warden.http.post("/v1/principals/alice/disable", headers=warden.as_("admin"))
        assert r.status_code == 200, r.text
        assert _read(warden, "alice").status_code == 401
    else:
        assert _read(warden, "alice").status_code == 200
    _sql(warden, f"UPDATE principal SET {change} WHERE name='alice'")  # noqa: S608
    if change.startswith("tenant_id"):  # the same value written again changes no seal
        assert _read(warden, "alice").status_code == 200
        return
    assert _read(warden, "alice").status_code == 401


def test_clearing_a_service_accounts_keepers_in_sql_does_not_let_its_owner_approve(
    warden: Any,
) -> None:
    access = Access(warden)
    _service_account(access, "etl-bot", [], owner="sam")  # sam keeps it
    allow_browse(access.w, "etl-bot")
    req = access.ask("etl-bot", dataset="pins", purpose="analytics", duration="1d")
    assert access.review("sam", req["id"], "approve").status_code == 403
    _sql(warden, "UPDATE principal SET owner_id=NULL, created_by_id=NULL WHERE name='etl-bot'")
    answer = access.review("sam", req["id"], "approve")
    assert answer.status_code in (403, 503), (
        f"sam alone approved his own bot's request: {answer.text}"
    )
    assert (
        access.w.http.get(f"/v1/access/requests/{req['id']}", headers=access.w.as_("admin")).json()[
            "state"
        ]
        == "pending"
    )


def test_a_tenant_made_the_installations_in_sql_makes_no_platform_admin(warden: Any) -> None:
    r = warden.http.post(
        "/v1/tenants", json={"name": "globex", "admin": "gadmin"}, headers=warden.as_("admin")
    )
    assert r.status_code == 201, r.text
    warden.tokens["gadmin"] = r.json()["token"]
    _sql(warden, "UPDATE tenant SET installation=TRUE WHERE name='globex'")
    r = warden.http.post(
        "/v1/tenants", json={"name": "evil", "admin": "evil-admin"}, headers=warden.as_("gadmin")
    )
    assert r.status_code == 401, r.text


def test_a_renamed_tenant_speaks_for_nobody(warden: Any) -> None:
    _sql(warden, "UPDATE tenant SET name='acme2' WHERE name='acme'")
    assert _read(warden, "alice").status_code == 401


def _alices_sandbox(w: Any) -> tuple[str, str]:
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
        return sandbox.id, issue_job_token(db, sandbox)


def _job_read(w: Any, token: str, dataset: str, **body: Any) -> Any:
    return w.http.post(
        f"/v1/datasets/{dataset}/read", json=body, headers={"authorization": f"Bearer {token}"}
    )


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
    sid, token = _alices_sandbox(warden)
    assert _job_read(warden, token, "engagements", purpose="training", limit=3).status_code == 200
    _sql(warden, f"UPDATE sandbox SET {change} WHERE id=:i", i=sid)  # noqa: S608
    for dataset, purpose in [("latent_users", "evaluation"), ("engagements", "analytics"),
                             ("engagements", "training")]:  # fmt: skip
        answer = _job_read(warden, token, dataset, purpose=purpose, limit=3)
        assert answer.status_code == 401, (change, dataset, answer.text)


def _users_file(w: Any) -> str:
    with w.state.engine.connect() as conn:
        path = conn.execute(
            text(
                "SELECT v.path FROM dataset_version v JOIN dataset d ON d.id=v.dataset_id"
                " WHERE d.name='users' AND v.digest=d.current_version"
            )
        ).scalar_one()
    return str(Path("datasets") / path)


def test_a_model_row_pointed_at_a_raw_dataset_file_serves_nothing(
    warden: Any, tmp_path: Path
) -> None:
    source = tmp_path / "stack.pt"
    source.write_bytes(b"weights")
    ref = register_artifact(warden, "m", source, read=("pins",))
    _sql(
        warden,
        "UPDATE model SET lineage=:l, reports=:r, artifacts=:a WHERE name='m'",
        l=json.dumps({"datasets": [], "parents": []}),
        r=json.dumps(["u.parquet"]),
        a=json.dumps([{"name": "u.parquet", "path": _users_file(warden)}]),
    )
    for who in ("mallory", "alice", "admin"):
        got = warden.http.get(f"/v1/models/{ref}/reports/u.parquet", headers=warden.as_(who))
        assert got.status_code == 503, (who, got.status_code, got.text[:200])
        assert got.json()["error"] == "RowTampered"
    listed = warden.http.get("/v1/models", headers=warden.as_("alice"))
    assert listed.status_code == 503


def test_a_report_path_never_leaves_the_jobs_folder_even_when_sealed(
    warden: Any, tmp_path: Path
) -> None:
    """The second guard: a model Warden sealed (here registered with such a path) still
    serves no file outside the folder jobs leave their files in."""
    from warden.registry.service import report_path

    source = tmp_path / "stack.pt"
    source.write_bytes(b"weights")
    ref = register_artifact(warden, "m2", source, read=("pins",))
    with unit_of_work(warden.state.sessions) as db:  # a write through Warden: sealed
        row = db.scalars(select(Model).where(Model.name == "m2")).one()
        row.reports = ["u.parquet"]
        row.artifacts = [*row.artifacts, {"name": "u.parquet", "path": _users_file(warden)}]
    with warden.state.sessions() as db:
        row = db.scalars(select(Model).where(Model.name == "m2")).one()
        with pytest.raises(NotFound, match="no longer on disk"):
            report_path(row, "u.parquet", warden.state.settings.data_dir)
    got = warden.http.get(f"/v1/models/{ref}/reports/u.parquet", headers=warden.as_("alice"))
    assert got.status_code == 404, got.text


def test_a_model_with_its_lineage_emptied_in_sql_is_nobodys(warden: Any, tmp_path: Path) -> None:
    source = tmp_path / "stack.pt"
    source.write_bytes(b"weights")
    ref = register_artifact(warden, "latent", source, read=("latent_users",))
    assert warden.http.get(f"/v1/models/{ref}", headers=warden.as_("mallory")).status_code == 404
    _sql(
        warden,
        "UPDATE model SET lineage=:l WHERE name='latent'",
        l=json.dumps({"datasets": [], "parents": []}),
    )
    got = warden.http.get(f"/v1/models/{ref}", headers=warden.as_("mallory"))
    assert got.status_code == 503, got.text


def test_a_job_row_edited_in_sql_is_neither_shown_nor_run(warden: Any) -> None:
    from tests.sandbox.conftest import grant_sandbox_roles

    from warden.jobs.worker import JobWorker

    grant_sandbox_roles(warden)
    r = warden.http.post(
        "/v1/jobs",
        json={"kind": "train", "datasets": {"pins": "pins"}},
        headers=warden.as_("alice"),
    )
    assert r.status_code == 201, r.text
    job_id = r.json()["id"]
    # the command is the attacker's, the launcher someone with more rights
    spec = json.dumps({"command": ["sh", "-c", "cat /etc/passwd"]})
    _sql(warden, "UPDATE job SET spec=:s, launcher='erin' WHERE id=:i", s=spec, i=job_id)
    shown = warden.http.get(f"/v1/jobs/{job_id}", headers=warden.as_("alice"))
    assert shown.status_code == 503, shown.text
    worker = JobWorker(warden.state, None, worker_id="test")  # type: ignore[arg-type]
    with unit_of_work(warden.state.sessions) as db:
        job = db.get(Job, job_id)
        assert job is not None
        db.expunge(job)
    with pytest.raises(RowTampered):
        worker._launcher(job)


def test_warden_never_seals_a_principal_changed_past_it_in_passing(warden: Any) -> None:
    """alice's row renamed in SQL, then disabled through the API: the disable would seal the
    rename along with it; it is refused and nothing changes."""
    _sql(warden, "UPDATE principal SET kind='service' WHERE name='alice'")
    with pytest.raises(RowTampered), unit_of_work(warden.state.sessions) as db:
        row = db.scalars(select(Principal).where(Principal.name == "alice")).one()
        row.disabled = True
    with warden.state.engine.connect() as conn:
        stored = conn.execute(text("SELECT disabled FROM principal WHERE name='alice'")).scalar()
    assert not stored


def test_an_operator_reseals_what_they_looked_at_and_nothing_changed_since(
    warden: Any, operator_cli: Any
) -> None:
    _sql(warden, "UPDATE principal SET seal=NULL WHERE name IN ('alice', 'erin')")
    listed = operator_cli("data", "seal", "--check")
    assert listed.exit_code == 1 and "principal" in listed.output, listed.output
    shown = dict(re.findall(r"principal \S+ (\w+) \[([0-9a-f]{16})\]", listed.output))
    assert set(shown) == {"alice", "erin"} and 'kind: "person"' in listed.output
    assert _read(warden, "alice").status_code == 401
    # erin's row changes after the operator looked: her digest no longer matches; nothing sealed
    _sql(warden, "UPDATE principal SET kind='service' WHERE name='erin'")
    stale = operator_cli("data", "seal", "--accept", shown["alice"], "--accept", shown["erin"])
    assert stale.exit_code != 0 and shown["erin"] in stale.output, stale.output
    assert _read(warden, "alice").status_code == 401
    sealed = operator_cli("data", "seal", "--accept", shown["alice"], "--actor", "ops")
    assert sealed.exit_code == 0 and "sealed 1 principal" in sealed.output, sealed.output
    (event,) = warden.audit_events(action="rows.sealed")
    assert event["actor"] == "ops" and list(event["details"]["rows"]) == ["principal"]
    assert _read(warden, "alice").status_code == 200
    assert _read(warden, "erin", purpose="analytics").status_code == 401  # still unsealed


# Found by a second red-team round, against the seals themselves.


def _sandbox(w: Any, who: str, datasets: list[str], purpose: str, status: str = "running") -> str:
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


def _token(w: Any, sandbox_id: str) -> str:
    with unit_of_work(w.state.sessions) as db:
        sb = db.get(Sandbox, sandbox_id)
        return issue_job_token(db, sb)


def _job_read(w: Any, token: str, dataset: str, **body: Any) -> Any:
    return w.http.post(
        f"/v1/datasets/{dataset}/read", json=body, headers={"authorization": f"Bearer {token}"}
    )


def test_job_token_moved_to_another_persons_sandbox_speaks_for_nobody(warden: Any) -> None:
    """mallory (no grants) holds her own sandbox's job token (it is in her container's env);
    she points its row at alice's sandbox: it should not read as alice."""
    mine = _sandbox(warden, "mallory", ["engagements"], "training")
    token = _token(warden, mine)
    assert _job_read(warden, token, "engagements", purpose="training", limit=3).status_code in (
        403, 404)  # fmt: skip
    # alice's sandbox has ENDED; its status (unsealed) is set back to running as well
    alices = _sandbox(warden, "alice", ["engagements"], "training", status="succeeded")
    _sql(warden, "UPDATE sandbox SET status='running' WHERE id=:i", i=alices)
    _sql(warden, "UPDATE job_token SET sandbox_id=:a WHERE sandbox_id=:m", a=alices, m=mine)
    got = _job_read(warden, token, "engagements", purpose="training", limit=3)
    assert got.status_code in (401, 503), f"mallory's token read as alice: {got.status_code}"


@pytest.mark.parametrize("where", ["raw-dataset", "absolute"])
def test_worker_never_copies_a_file_a_model_row_points_at_in_sql(
    warden: Any, tmp_path: Path, where: str
) -> None:
    """alice queues an infer job on her model (checked at launch). Before a worker claims it
    she points the model's artifact at the raw users file (or a key file): the worker copies
    it into her sandbox's /out/inputs."""
    from tests.sandbox.conftest import grant_sandbox_roles

    from warden.jobs.worker import JobWorker

    grant_sandbox_roles(warden)
    source = tmp_path / "stack.pt"
    source.write_bytes(b"weights")
    ref = register_artifact(warden, "m", source, read=("pins",))
    r = warden.http.post(
        "/v1/jobs",
        json={"kind": "train", "datasets": {"pins": "pins"}, "model_in": ref},
        headers=warden.as_("alice"),
    )
    assert r.status_code == 201, r.text
    job_id = r.json()["id"]
    if where == "raw-dataset":
        secret, stored = Path(warden.settings.data_dir) / _users_file(warden), _users_file(warden)
    else:  # any file the Warden process may read, e.g. a key file outside the data folder
        secret = tmp_path / "keys" / "chain.key"
        secret.parent.mkdir()
        secret.write_bytes(b"the-chain-key")
        stored = str(secret)
    _sql(warden, "UPDATE model SET artifacts=:a WHERE name='m'",
         a=json.dumps([{"name": "stack.pt", "path": stored}]))  # fmt: skip
    worker = JobWorker(warden.state, None, worker_id="test")  # type: ignore[arg-type]
    with unit_of_work(warden.state.sessions) as db:
        job = db.get(Job, job_id)
        db.expunge(job)
    out = tmp_path / "out"
    out.mkdir()
    try:
        worker._prepare(job, out)
    except (RowTampered, NotFound):  # refused: the secure outcome
        return
    copied = list((out / "inputs").rglob("*"))
    leaked = [p for p in copied if p.is_file() and p.read_bytes() == secret.read_bytes()]
    assert not leaked, f"raw users file copied into the sandbox: {leaked}"


def test_serving_default_model_with_lineage_edited_is_refused(warden: Any, tmp_path: Path) -> None:
    """The tenant's serving default is read with db.get(Model) and no check: a lineage emptied
    in SQL lets anyone be served from it."""
    from warden.experiments.models import ServingDefault

    source = tmp_path / "stack.pt"
    source.write_bytes(b"weights")
    register_artifact(warden, "dflt", source, read=("pins", "engagements"))
    with unit_of_work(warden.state.sessions) as db:
        from warden.registry.models import Model

        m = db.scalars(select(Model).where(Model.name == "dflt")).one()
        db.add(ServingDefault(tenant_id=m.tenant_id, model_id=m.id, set_by="alice",
                              reason="promoted"))  # fmt: skip
    body = {"user": "u-1", "history": [1, 2], "k": 3}
    before = warden.http.post("/v1/recommend", json=body, headers=warden.as_("mallory"))
    assert before.status_code in (403, 404), before.text
    _sql(warden, "UPDATE model SET lineage=:l WHERE name='dflt'",
         l=json.dumps({"datasets": [], "parents": []}))  # fmt: skip
    after = warden.http.post("/v1/recommend", json=body, headers=warden.as_("mallory"))
    assert after.status_code == 503, f"mallory passed the decision: {after.text}"


def test_infer_outputs_never_classified_from_a_parent_edited_in_sql(
    warden: Any, tmp_path: Path
) -> None:
    """An inference job's output dataset is classified from its parents' lineage, read with
    db.get(Model) and no check: a parent whose lineage lost `engagements` between launch and
    registration yields an output that no longer carries engagements' class and purposes."""
    import polars as pl
    from tests.sandbox.conftest import grant_sandbox_roles

    from warden.jobs.outputs import register_outputs

    grant_sandbox_roles(warden)
    source = tmp_path / "stack.pt"
    source.write_bytes(b"weights")
    ref = register_artifact(warden, "par", source, read=("pins", "engagements"))
    r = warden.http.post(
        "/v1/jobs",
        json={"kind": "infer", "datasets": {"pins": "pins"}, "model_in": ref},
        headers=warden.as_("alice"),
    )
    assert r.status_code == 201, r.text
    job_id = r.json()["id"]
    _sql(warden, "UPDATE model SET lineage=:l WHERE name='par'",
         l=json.dumps({"datasets": [{"name": "pins", "versions": []}], "parents": []}))  # fmt: skip
    rel = f"jobs/{job_id}/artifacts/scores.parquet"
    out = Path(warden.settings.data_dir) / rel
    out.parent.mkdir(parents=True, exist_ok=True)
    pl.DataFrame({"score": [0.1, 0.2]}).write_parquet(out)
    with unit_of_work(warden.state.sessions) as db:
        job = db.get(Job, job_id)
        model_id = job.model_in[0]
        lineage = {"parents": [{"id": model_id, "ref": ref}]}
        try:
            got = register_outputs(warden.state, db, job, [{"name": "scores.parquet", "path": rel}],
                                   lineage)  # fmt: skip
        except RowTampered:  # refused: the secure outcome
            return
    inputs = [i["name"] for i in got[0]["inputs"]]
    assert "engagements" in inputs, f"output laundered: inputs {inputs}, {got[0]['classification']}"


def _verify(w: Any) -> list[dict[str, Any]]:
    answer = w.http.post("/v1/audit/verify", headers=w.as_("admin"))
    assert answer.status_code == 200, answer.text
    return [f for f in answer.json()["findings"] if f["kind"] == "rolled_back"]


def test_a_disabled_principal_written_back_whole_stays_disabled(warden: Any) -> None:
    """Its earlier row, seal and all, is Warden's own: the row alone cannot tell. The keyed,
    checkpointed log can: each process refuses what it says was disabled
    (identity/revocations.py), and `verify` reports the row."""
    old_seal = _one(warden, "SELECT seal FROM principal WHERE name='alice'")[0]
    r = warden.http.post("/v1/principals/alice/disable", headers=warden.as_("admin"))
    assert r.status_code == 200, r.text
    assert not _verify(warden)
    _sql(warden, "UPDATE principal SET disabled=FALSE, seal=:s WHERE name='alice'", s=old_seal)
    assert _read(warden, "alice").status_code == 401
    (found,) = _verify(warden)
    assert "principal alice was disabled" in found["detail"]


def test_a_revoked_token_written_back_whole_stays_revoked(warden: Any) -> None:
    tid, seal = _one(
        warden,
        "SELECT t.id, t.seal FROM api_token t JOIN principal p ON p.id=t.principal_id"
        " WHERE p.name='alice' AND t.revoked_at IS NULL",
    )
    r = warden.http.post(f"/v1/principals/alice/tokens/{tid}/revoke", headers=warden.as_("admin"))
    assert r.status_code == 200, r.text
    assert not _verify(warden)
    _sql(
        warden,
        "UPDATE api_token SET revoked_at=NULL, revoked_by=NULL, seal=:s WHERE id=:i",
        s=seal,
        i=tid,
    )
    answer = _read(warden, "alice")
    assert answer.status_code == 401 and "revoked" in answer.text
    (found,) = _verify(warden)
    assert f"token {tid} was revoked" in found["detail"]


def test_a_changes_beneficiaries_cleared_in_sql_let_no_beneficiary_approve(warden: Any) -> None:
    """The admin mints a token for ada (a reviewer): held until someone else approves. With
    the change's beneficiary list cleared in SQL, ada would approve the token that lets the
    admin act as her; the change row no longer matches its seal, so nothing is decided."""
    access = Access(warden)
    minted = access.http.post(
        "/v1/principals/ada/tokens", json={"label": "as ada"}, headers=access.as_("admin")
    )
    assert minted.status_code == 202, minted.text
    change_id = minted.json()["change_id"]
    url = f"/v1/policy/changes/{change_id}/approve"
    assert access.http.post(url, json={}, headers=access.as_("ada")).status_code == 403
    _sql(warden, "UPDATE reviewed_change SET beneficiary_ids='[]' WHERE id=:i", i=change_id)
    answer = access.http.post(url, json={}, headers=access.as_("ada"))
    assert answer.status_code == 503, answer.text
    state = _one(warden, "SELECT state FROM reviewed_change WHERE id=:i", i=change_id)[0]
    assert state == "pending"


def test_an_ended_sandbox_made_live_again_reads_nothing(warden: Any) -> None:
    """A sandbox's status moves on every heartbeat, so it is not sealed: set back to running
    in SQL, its job token would read again. The log saw it end: refused, and reported."""
    from warden.audit.service import append
    from warden.sandbox.runtime import _exit_event

    sid, token = _alices_sandbox(warden)
    with unit_of_work(warden.state.sessions) as db:
        row = db.get_one(Sandbox, sid)
        row.status = "succeeded"
        append(db, _exit_event(row, "allow", duration_s=1.0))
    assert _job_read(warden, token, "engagements", purpose="training", limit=3).status_code == 401
    assert not _verify(warden)
    _sql(warden, "UPDATE sandbox SET status='running' WHERE id=:i", i=sid)
    assert _job_read(warden, token, "engagements", purpose="training", limit=3).status_code == 401
    (found,) = _verify(warden)
    assert f"sandbox {sid} ended" in found["detail"]


# Found by a third red-team round: access requests and grants, experiments, serving defaults.


def _edit_request(w: Any, request_id: str, assignments: str, **params: Any) -> None:
    _sql(w, f"UPDATE access_request SET {assignments} WHERE id=:i", i=request_id, **params)  # noqa: S608


@pytest.mark.parametrize(
    "assignments",
    [
        "requester='sam'",  # the grant would be written for the name: sam's own, approved by sam
        "duration_s=315360000",  # ten years, past the dataset's terms
        "columns='[\"*\"]'",
        "dataset='users'",
        "purpose='training'",
    ],
)
def test_a_request_edited_in_sql_is_never_granted(warden: Any, assignments: str) -> None:
    access = Access(warden)
    reads = [("sam", "pins", "analytics"), ("alice", "pins", "analytics")]
    assert all(_read(warden, w, d, purpose=p).status_code != 200 for w, d, p in reads)
    req = access.ask("alice", dataset="pins", purpose="analytics", duration="1d")
    _edit_request(warden, req["id"], assignments)
    answer = access.review("sam", req["id"], "approve", "ok")
    assert answer.status_code == 503 and answer.json()["error"] == "RowTampered", answer.text
    for who, dataset, purpose in reads:
        assert _read(warden, who, dataset, purpose=purpose).status_code != 200, (who, dataset)


def test_a_grant_is_held_to_the_terms_as_they_are_when_it_is_made(warden: Any) -> None:
    """Narrowed after the request (a shorter maximum duration, applied at once): the last
    approval is refused (409) and nothing is granted; the request stays pending."""
    access = Access(warden)
    req = access.ask("alice", dataset="pins", purpose="analytics", duration="3d")
    narrowed = access.http.put(
        "/v1/access/settings/pins", json={"max_duration": "1d"}, headers=access.as_("admin")
    )
    assert narrowed.status_code == 200, narrowed.text
    answer = access.review("sam", req["id"], "approve", "ok")
    assert answer.status_code == 409 and "over the maximum" in answer.text, answer.text
    assert _read(warden, "alice", "pins", purpose="analytics").status_code != 200
    shown = access.get("alice", f"/requests/{req['id']}").json()
    assert shown["state"] == "pending"


def test_a_grant_edited_in_sql_cannot_be_revoked_around(warden: Any) -> None:
    access = Access(warden)
    req = access.ask("alice", dataset="pins", purpose="analytics", duration="1d")
    grant = access.approve("sam", req["id"])["grant_id"]
    _sql(warden, "UPDATE access_grant SET principal='erin' WHERE id=:i", i=grant)
    answer = access.post("admin", f"/grants/{grant}/revoke", {"reason": "done"})
    assert answer.status_code == 503, answer.text


def test_experiment_results_written_in_sql_promote_nothing(warden: Any) -> None:
    from tests.experiments.test_online import _start, register_stack

    a, b = register_stack(warden, "ctl", 1), register_stack(warden, "chl", 2)
    assert _start(warden, "ab", a, b).status_code == 201
    arm = {"n": 200, "clicks": 600.0, "clicks_sq": 1900.0, "saves": 0.0, "saves_sq": 0.0,
           "errors": 0, "cpu_s": 0.0002, "latencies_ms": [1.0] * 200}  # fmt: skip
    losing = {**arm, "clicks": 200.0, "clicks_sq": 300.0}
    results = json.dumps({"arms": {"control": losing, "challenger": arm}, "shadow": []})
    _sql(warden, "UPDATE experiment SET results=:r WHERE name='ab'", r=results)
    decided = warden.http.post("/v1/experiments/ab/decide", headers=warden.as_("alice"))
    assert decided.status_code == 503, decided.text
    plain = {"user": "u-9", "history": [1, 2, 3], "k": 3}
    served = warden.http.post("/v1/recommend", json=plain, headers=warden.as_("alice"))
    assert served.status_code == 404, served.text  # no default was set


def test_a_serving_default_written_in_sql_is_not_served(warden: Any) -> None:
    from tests.experiments.helpers import pin_ids
    from tests.experiments.test_online import register_stack

    register_stack(warden, "chl", 2)
    tenant = _one(warden, "SELECT id FROM tenant WHERE name='acme'")[0]
    model = _one(warden, "SELECT id FROM model WHERE name='chl'")[0]
    _sql(
        warden,
        "INSERT INTO serving_default (id, tenant_id, model_id, previous_id, experiment_id,"
        " set_by, reason, created_at) VALUES ('sd-forged', :t, :m, NULL, NULL, 'alice',"
        " 'promoted by experiment ab', :now)",
        t=tenant,
        m=model,
        now=datetime.now(UTC) + timedelta(days=1),
    )
    plain = {"user": "u-9", "history": pin_ids(warden)[:3], "k": 3}
    served = warden.http.post("/v1/recommend", json=plain, headers=warden.as_("alice"))
    assert served.status_code == 503, served.text


def test_another_tenants_model_is_never_this_tenants(warden: Any) -> None:
    """Even through a row Warden sealed (a serving default pointing at another tenant's model,
    or a parent model id): a model id resolves only within the caller's tenant."""
    from warden.experiments.models import ServingDefault
    from warden.identity.models import Tenant
    from warden.registry import service as registry
    from warden.registry.models import Model

    with unit_of_work(warden.state.sessions) as db:
        beta = Tenant(name="beta")
        db.add(beta)
        db.flush()
        alice = get_principal(db, "alice")
        job = Job(tenant_id=beta.id, tenant="beta", launcher_id=alice.id, launcher="alice",
                  kind="train", step="swap", name="secret", spec={}, datasets=["pins"],
                  purpose="training", state="succeeded")  # fmt: skip
        db.add(job)
        db.flush()
        model = Model(tenant_id=beta.id, tenant="beta", name="betasecret", version=1,
                      job_id=job.id, launcher="alice", kind="train", step="swap", metrics={},
                      artifacts=[], reports=[],
                      lineage={"datasets": [], "parents": []})  # fmt: skip
        db.add(model)
        db.flush()
        acme = get_principal(db, "alice").tenant_id
        assert registry.get_model(db, model.id, acme) is None
        assert registry.get_model(db, model.id, beta.id) is not None
        db.add(ServingDefault(tenant_id=acme, model_id=model.id, set_by="alice", reason="x"))
    plain = {"user": "u-9", "history": [1, 2, 3], "k": 3}
    served = warden.http.post("/v1/recommend", json=plain, headers=warden.as_("alice"))
    assert served.status_code == 404, served.text
