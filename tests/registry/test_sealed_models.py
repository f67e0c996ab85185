"""Model, job, experiment and serving-default rows are sealed (warden/db/sealed.py): a model's
files pointed at a raw dataset or a key file, its lineage emptied, a queued job's launcher
or command edited, experiment results forged or a serving default inserted in SQL decide
nothing; a model's files are served and copied only from the jobs folder with their
SHA-256, and a model id resolves only within the caller's tenant (red-team rounds 1-3)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from tests.experiments.helpers import register_artifact
from tests.sealed_rows import (
    one,
    sql,
    users_file,
)
from warden.db.sealed import RowTampered
from warden.db.session import unit_of_work
from warden.errors import NotFound
from warden.identity.service import get_principal
from warden.jobs.models import Job
from warden.registry.models import Model


def test_a_model_row_pointed_at_a_raw_dataset_file_serves_nothing(
    warden: Any, tmp_path: Path
) -> None:
    source = tmp_path / "stack.pt"
    source.write_bytes(b"weights")
    ref = register_artifact(warden, "m", source, read=("pins",))
    sql(
        warden,
        "UPDATE model SET lineage=:l, reports=:r, artifacts=:a WHERE name='m'",
        l=json.dumps({"datasets": [], "parents": []}),
        r=json.dumps(["u.parquet"]),
        a=json.dumps([{"name": "u.parquet", "path": users_file(warden)}]),
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
        row.artifacts = [*row.artifacts, {"name": "u.parquet", "path": users_file(warden)}]
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
    sql(
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
    sql(warden, "UPDATE job SET spec=:s, launcher='erin' WHERE id=:i", s=spec, i=job_id)
    shown = warden.http.get(f"/v1/jobs/{job_id}", headers=warden.as_("alice"))
    assert shown.status_code == 503, shown.text
    worker = JobWorker(warden.state, None, worker_id="test")  # type: ignore[arg-type]
    with unit_of_work(warden.state.sessions) as db:
        job = db.get(Job, job_id)
        assert job is not None
        db.expunge(job)
    with pytest.raises(RowTampered):
        worker._launcher(job)


def _queued_on_a_model(
    w: Any, tmp_path: Path, name: str, read: tuple[str, ...], kind: str
) -> tuple[str, str]:
    """alice queues a `kind` job on pins with model NAME@1 (built from `read`): (job id, ref)."""
    from tests.sandbox.conftest import grant_sandbox_roles

    grant_sandbox_roles(w)
    source = tmp_path / "stack.pt"
    source.write_bytes(b"weights")
    ref = register_artifact(w, name, source, read=read)
    body = {"kind": kind, "datasets": {"pins": "pins"}, "model_in": ref}
    r = w.http.post("/v1/jobs", json=body, headers=w.as_("alice"))
    assert r.status_code == 201, r.text
    return str(r.json()["id"]), ref


@pytest.mark.parametrize("where", ["raw-dataset", "absolute"])
def test_worker_never_copies_a_file_a_model_row_points_at_in_sql(
    warden: Any, tmp_path: Path, where: str
) -> None:
    """alice queues an infer job on her model (checked at launch). Before a worker claims it
    she points the model's artifact at the raw users file (or a key file): the worker copies
    it into her sandbox's /out/inputs."""
    from warden.jobs.worker import JobWorker

    job_id, _ = _queued_on_a_model(warden, tmp_path, "m", ("pins",), "train")
    if where == "raw-dataset":
        secret, stored = Path(warden.settings.data_dir) / users_file(warden), users_file(warden)
    else:  # any file the Warden process may read, e.g. a key file outside the data folder
        secret = tmp_path / "keys" / "chain.key"
        secret.parent.mkdir()
        secret.write_bytes(b"the-chain-key")
        stored = str(secret)
    sql(warden, "UPDATE model SET artifacts=:a WHERE name='m'",
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
    sql(warden, "UPDATE model SET lineage=:l WHERE name='dflt'",
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

    from warden.jobs.outputs import register_outputs

    job_id, ref = _queued_on_a_model(warden, tmp_path, "par", ("pins", "engagements"), "infer")
    sql(warden, "UPDATE model SET lineage=:l WHERE name='par'",
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


def test_experiment_results_written_in_sql_promote_nothing(warden: Any) -> None:
    from tests.experiments.test_online import _start, register_stack

    a, b = register_stack(warden, "ctl", 1), register_stack(warden, "chl", 2)
    assert _start(warden, "ab", a, b).status_code == 201
    arm = {"n": 200, "clicks": 600.0, "clicks_sq": 1900.0, "saves": 0.0, "saves_sq": 0.0,
           "errors": 0, "cpu_s": 0.0002, "latencies_ms": [1.0] * 200}  # fmt: skip
    losing = {**arm, "clicks": 200.0, "clicks_sq": 300.0}
    results = json.dumps({"arms": {"control": losing, "challenger": arm}, "shadow": []})
    sql(warden, "UPDATE experiment SET results=:r WHERE name='ab'", r=results)
    decided = warden.http.post("/v1/experiments/ab/decide", headers=warden.as_("alice"))
    assert decided.status_code == 503, decided.text
    plain = {"user": "u-9", "history": [1, 2, 3], "k": 3}
    served = warden.http.post("/v1/recommend", json=plain, headers=warden.as_("alice"))
    assert served.status_code == 404, served.text  # no default was set


def test_a_serving_default_written_in_sql_is_not_served(warden: Any) -> None:
    from tests.experiments.helpers import pin_ids
    from tests.experiments.test_online import register_stack

    register_stack(warden, "chl", 2)
    tenant = one(warden, "SELECT id FROM tenant WHERE name='acme'")[0]
    model = one(warden, "SELECT id FROM model WHERE name='chl'")[0]
    sql(
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
