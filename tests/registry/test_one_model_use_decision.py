"""Every place that asks "may this caller use model M" gets one answer, from one function
(`policy.reads.authorize_model`): the registry (show, lineage, list), a job's `model_in`,
experiment start and status, and `/v1/recommend`.

The three copies it replaced disagreed on a tampered lineage (a parent model deleted in SQL):
the registry answered 404, an experiment 404 or 503 depending on where the walk broke, a job
503. Now a tampered lineage is 503 everywhere, a refused launcher (who knows the model exists)
is told 403, and anyone else gets the 404 a missing model gets.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import delete, select

from tests.conftest import WardenHarness
from tests.conftest import db_url as db_url  # both backends: no job runs here (no Docker)
from tests.experiments.helpers import pin_ids, reads_pins, register_artifact
from tests.experiments.test_online import GUARDS
from tests.sandbox.conftest import grant_sandbox_roles
from warden.db.session import unit_of_work
from warden.errors import Unavailable
from warden.identity.service import Caller, get_principal
from warden.policy import reads
from warden.policy.changes import apply_change
from warden.registry.models import Model

Ask = Callable[[WardenHarness, str, str], Any]


def _show(w: WardenHarness, who: str, ref: str) -> Any:
    return w.http.get(f"/v1/models/{ref}", headers=w.as_(who))


def _lineage(w: WardenHarness, who: str, ref: str) -> Any:
    return w.http.get(f"/v1/models/{ref}/lineage", headers=w.as_(who))


def _job(w: WardenHarness, who: str, ref: str) -> Any:
    body = {"kind": "infer", "datasets": {"pins": "pins"}, "model_in": ref}
    return w.http.post("/v1/jobs", json=body, headers=w.as_(who))


def _experiment(w: WardenHarness, who: str, ref: str) -> Any:
    body = {"name": "one", "control": ref, "challenger": "plain", "mde": 0.1, "guardrails": GUARDS}
    return w.http.post("/v1/experiments", json=body, headers=w.as_(who))


def _recommend(w: WardenHarness, who: str, ref: str) -> Any:
    body = {"user": "u1", "history": pin_ids(w)[:2], "k": 3, "model": ref}
    return w.http.post("/v1/recommend", json=body, headers=w.as_(who))


CALLERS: dict[str, Ask] = {
    "registry show": _show,
    "registry lineage": _lineage,
    "job model_in": _job,
    "experiment start": _experiment,
    "recommend": _recommend,
}


def _model(w: WardenHarness, tmp_path: Path, name: str, read: tuple[str, ...]) -> str:
    source = tmp_path / f"{name}.pt"
    source.write_bytes(b"weights")
    register_artifact(w, name, source, read=read)
    with unit_of_work(w.state.sessions) as db:
        model_id = db.scalar(select(Model.id).where(Model.name == name))
    assert model_id is not None
    return model_id


def _on_a_parent(w: WardenHarness, parent_id: str) -> str:
    """alice's model `child` from pins, built on `parent_id` (as a fine-tune job would be)."""
    with unit_of_work(w.state.sessions) as db:
        model = db.scalars(select(Model).where(Model.name == "plain")).one()
        child = Model(
            tenant_id=model.tenant_id, tenant="acme", name="child", version=1,
            job_id=model.job_id, launcher="alice", kind="train", step="swap", metrics={},
            artifacts=list(model.artifacts), reports=[],
            lineage={"datasets": [{"name": "pins", "versions": []}],
                     "parents": [{"id": parent_id, "ref": "latent-fit@1", "job": None}]},
        )  # fmt: skip
        db.add(child)
        db.flush()
        return child.id


def _add(w: WardenHarness, *rule: str) -> None:
    with unit_of_work(w.state.sessions) as db:
        admin = Caller("admin", "person", "acme", get_principal(db, "admin").id)
        apply_change(db, admin, add=[("p", rule)], reason="test setup", action="policy.bootstrap")
    w.state.policy.reload()


@pytest.fixture
def models(warden: WardenHarness, tmp_path: Path) -> dict[str, str]:
    """alice's `plain` (pins), `latent-fit` (pins, latent_users) and `child` (pins, on
    latent-fit); alice and erin run ML jobs; erin reads pins and nothing of latent_users."""
    grant_sandbox_roles(warden)
    reads_pins(warden, "erin")
    _add(warden, "erin", "acme", "sandbox:ml", "*", "*", "manage", "allow", "", "")
    plain = _model(warden, tmp_path, "plain", ("pins",))
    parent = _model(warden, tmp_path, "latent-fit", ("pins", "latent_users"))
    return {"plain": plain, "latent-fit": parent, "child": _on_a_parent(warden, parent)}


@pytest.mark.parametrize("ask", CALLERS.values(), ids=CALLERS.keys())
def test_a_tampered_lineage_is_503_for_everyone_at_every_caller(
    warden: WardenHarness, models: dict[str, str], ask: Ask
) -> None:
    child = models["child"]
    assert _show(warden, "alice", child).status_code == 200
    assert _show(warden, "erin", child).status_code == 404  # latent_users is not erin's
    with warden.state.engine.begin() as conn:  # the parent deleted past Warden
        conn.execute(delete(Model).where(Model.id == models["latent-fit"]))
    for who in ("alice", "erin"):
        got = ask(warden, who, child)
        assert got.status_code == 503, (who, got.text[:300])
    listed = warden.http.get("/v1/models", headers=warden.as_("erin"))
    assert listed.status_code == 503, listed.text[:300]


@pytest.mark.parametrize("ask", CALLERS.values(), ids=CALLERS.keys())
def test_a_refused_launcher_is_told_403_and_anyone_else_404_at_every_caller(
    warden: WardenHarness, models: dict[str, str], ask: Ask
) -> None:
    fit = models["latent-fit"]
    assert ask(warden, "erin", fit).status_code == 404  # hidden: as a missing one, word for word
    missing = ask(warden, "erin", "no-such-model")
    hidden = ask(warden, "erin", "latent-fit@1")
    assert (hidden.status_code, hidden.json()["detail"]) == (404, "no model 'latent-fit@1'")
    assert missing.status_code == 404 and missing.json()["detail"] == "no model 'no-such-model'"
    _add(
        warden, "alice", "acme", "latent_users", "*", "*", "read", "deny", "", ""
    )  # the launcher's rights narrowed after the build
    refused = ask(warden, "alice", "latent-fit@1")
    assert refused.status_code == 403, refused.text[:300]
    assert "may no longer use model 'latent-fit@1'" in refused.json()["detail"]
    assert "latent_users" not in refused.text


def test_every_caller_asks_the_one_decision(
    warden: WardenHarness, models: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A caller with its own copy of the decision would answer without asking it."""
    arms = {"control": "latent-fit@1", "challenger": "plain", "mde": 0.1, "guardrails": GUARDS}
    started = warden.http.post(
        "/v1/experiments", json={"name": "on", **arms}, headers=warden.as_("alice")
    )
    assert started.status_code == 201, started.text

    def asked(*_: Any, **__: Any) -> None:
        raise Unavailable("decided by policy.reads.authorize_model")

    monkeypatch.setattr(reads, "authorize_model", asked)
    answers = {name: ask(warden, "alice", "plain") for name, ask in CALLERS.items()}
    answers["registry list"] = warden.http.get("/v1/models", headers=warden.as_("alice"))
    answers["experiment status"] = warden.http.get(
        "/v1/experiments/on", headers=warden.as_("alice")
    )
    body = {"user": "u1", "history": pin_ids(warden)[:2], "experiment": "on"}
    answers["recommend through an experiment"] = warden.http.post(
        "/v1/recommend", json=body, headers=warden.as_("alice")
    )
    for name, got in answers.items():
        assert got.status_code == 503, (name, got.text[:300])
        assert "decided by policy.reads.authorize_model" in got.text, (name, got.text[:300])
