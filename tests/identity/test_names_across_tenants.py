"""Names across tenants: what one tenant's admin learns, by creating something, of the names
another tenant uses (found by a red-team review, round 14).

Found: gadmin (globex's first admin) asked `POST /v1/principals {"name": "alice"}` and was
answered 409 "rules already name 'alice'…" (a check over every tenant's rules), while a free
name answered 201: he enumerated acme's people and service accounts.

Principal names stay unique across the installation (revocations, alarms and the rollback
check know a principal by name), so a name another tenant holds is still refused: that it is
taken is learnt by trying (docs/audit.md, "Known open"). What is guaranteed here: the refusal
is one sentence whatever holds the name (a person, a service account, only rules), names no
tenant, and the holding tenant's auditors see the attempt. Every other name (tenant, dataset,
workspace, model, experiment) is the tenant's own: taken elsewhere answers as free.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl
import pytest
from tests.experiments.helpers import started_lat
from tests.sandbox.conftest import DEVELOPER, grant_sandbox_roles

from warden.catalog.models import Dataset
from warden.catalog.service import ColumnInfo, register
from warden.db.session import unit_of_work
from warden.identity.service import Caller, get_principal, get_tenant
from warden.policy.changes import apply_change
from warden.registry.service import next_version


@pytest.fixture
def globex(warden: Any) -> Any:
    r = warden.http.post(
        "/v1/tenants", json={"name": "globex", "admin": "gadmin"}, headers=warden.as_("admin")
    )
    assert r.status_code == 201, r.text
    warden.tokens["gadmin"] = r.json()["token"]
    return warden


def _as_words(response: Any, name: str) -> tuple[int, str]:
    return response.status_code, response.text.replace(name, "NAME")


def _acme_holds_a_person_a_service_account_and_a_rule_only_name(w: Any) -> None:
    made = w.http.post(
        "/v1/principals", json={"name": "etl-prod", "kind": "service"}, headers=w.as_("admin")
    )
    assert made.status_code == 201, made.text
    with unit_of_work(w.state.sessions) as db:
        admin = get_principal(db, "admin")
        actor = Caller("admin", "person", "acme", admin.id)
        apply_change(db, actor, add=[("g", ("ghost", "role:ml_engineer", "acme"))], reason="t")
    w.state.policy.ensure_fresh()


def test_a_name_another_tenant_holds_is_refused_without_saying_whose(globex: Any) -> None:
    w = globex
    _acme_holds_a_person_a_service_account_and_a_rule_only_name(w)
    answers = {}
    for name in ("alice", "etl-prod", "ghost"):
        got = w.http.post("/v1/principals", json={"name": name}, headers=w.as_("gadmin"))
        assert got.status_code == 409, got.text
        detail = got.json()["detail"]
        for hint in ("acme", "rule", "person", "service", "exist", "tenant"):
            assert hint not in detail, (name, detail)
        answers[name] = _as_words(got, name)
    assert len(set(answers.values())) == 1, answers  # whatever holds it: the same words
    # acme's auditors see each attempt (by whom and from where is globex's to know) ...
    probes = w.audit_events(action="principal.name_refused")
    assert sorted((e["tenant"], e["details"]["name"]) for e in probes) == [
        ("acme", "alice"),
        ("acme", "etl-prod"),
        ("acme", "ghost"),
    ]
    assert {e["actor"] for e in probes} == {"warden"}
    # ... and globex's its admin's refusals, once each
    seen = w.http.get(
        "/v1/audit/events",
        params={"actor": "gadmin", "action": "principal.create"},
        headers=w.as_("gadmin"),
    )
    refused = seen.json()["events"]
    assert sorted(e["details"]["name"] for e in refused if e["decision"] == "deny") == [
        "alice",
        "etl-prod",
        "ghost",
    ]


def test_a_name_held_in_the_callers_own_tenant_says_why(globex: Any) -> None:
    w = globex
    _acme_holds_a_person_a_service_account_and_a_rule_only_name(w)
    own = w.http.post("/v1/principals", json={"name": "gadmin"}, headers=w.as_("gadmin"))
    assert own.status_code == 409 and "already exists" in own.json()["detail"], own.text
    rules = w.http.post("/v1/principals", json={"name": "ghost"}, headers=w.as_("admin"))
    assert rules.status_code == 409 and "rules already name" in rules.json()["detail"]
    assert w.audit_events(action="principal.name_refused") == []  # nothing held elsewhere
    free = w.http.post("/v1/principals", json={"name": "zq-nobody-7"}, headers=w.as_("gadmin"))
    assert free.status_code == 201, free.text


def test_creating_a_tenant_as_a_tenant_admin_is_refused_alike_for_any_name(globex: Any) -> None:
    w = globex
    asks = {"acme": "x-one", "zq-free": "x-two"}
    got = {
        name: _as_words(
            w.http.post(
                "/v1/tenants", json={"name": name, "admin": admin}, headers=w.as_("gadmin")
            ),
            name,
        )
        for name, admin in asks.items()
    }
    assert got["acme"][0] == 403 and got["acme"] == got["zq-free"], got


def test_a_workspace_name_another_tenant_uses_is_free(globex: Any) -> None:
    w = globex
    grant_sandbox_roles(w)
    made = w.http.post("/v1/workspaces", json={"name": "shared-w"}, headers=w.as_(DEVELOPER))
    assert made.status_code == 201, made.text
    taken = w.http.post("/v1/workspaces", json={"name": "shared-w"}, headers=w.as_("gadmin"))
    free = w.http.post("/v1/workspaces", json={"name": "zq-free"}, headers=w.as_("gadmin"))
    assert taken.status_code == free.status_code, (taken.text, free.text)
    assert "already" not in taken.text


def test_an_experiment_name_another_tenant_uses_answers_as_a_free_one(
    globex: Any, tmp_path: Path
) -> None:
    w = globex
    a, b = started_lat(w, tmp_path)  # acme's "lat", alice's
    answers = {}
    for name in ("lat", "zq-free"):
        body = {"name": name, "control": a, "challenger": b, "mde": 0.1}
        got = w.http.post("/v1/experiments", json=body, headers=w.as_("gadmin"))
        answers[name] = _as_words(got, name)
        assert got.status_code in (403, 404, 422), got.text
    assert answers["lat"] == answers["zq-free"], answers
    for name in ("lat", "zq-free"):  # nor does showing one
        got = w.http.get(f"/v1/experiments/{name}", headers=w.as_("gadmin"))
        answers[name] = _as_words(got, name)
    assert answers["lat"] == answers["zq-free"] and answers["lat"][0] == 404, answers


def test_a_model_and_a_dataset_name_another_tenant_uses_are_the_tenants_own(
    globex: Any, tmp_path: Path
) -> None:
    w = globex
    a, _ = started_lat(w, tmp_path)
    shown = {
        name: _as_words(w.http.get(f"/v1/models/{name}", headers=w.as_("gadmin")), name)
        for name in (a, "zq-free@1")
    }
    assert shown[a] == shown["zq-free@1"] and shown[a][0] == 404, shown
    source = tmp_path / "engagements.parquet"
    pl.DataFrame({"n": [1, 2, 3]}).write_parquet(source)
    with unit_of_work(w.state.sessions) as db:
        globex_tenant = get_tenant(db, "globex")
        assert next_version(db, globex_tenant.id, "latent-a") == 1  # acme's versions not counted
        acme_before = db.query(Dataset).filter_by(name="engagements").one().current_version
        dataset, _ = register(
            db,
            datasets_dir=w.state.settings.datasets_dir,
            tenant=globex_tenant,
            owner=get_principal(db, "gadmin"),
            name="engagements",  # acme's too
            source=source,
            columns=[ColumnInfo("n", "Int64", "public")],
            identifier_columns=[],
            allowed_purposes=["training"],
        )
        assert dataset.tenant_id == globex_tenant.id
    with unit_of_work(w.state.sessions) as db:
        rows = db.query(Dataset).filter_by(name="engagements").all()
        acme = [r for r in rows if r.tenant_id != globex_tenant.id]
        assert len(rows) == 2 and acme[0].current_version == acme_before
    mine = w.http.get("/v1/datasets/engagements", headers=w.as_("alice"))
    assert mine.status_code == 200 and mine.json()["version"] == acme_before, mine.text[:300]
