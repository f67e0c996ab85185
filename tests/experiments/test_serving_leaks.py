"""Serving and experiments show what a model is and what it learned only to people who may
use it: the registry's rule, `registry.serving.authorize` on its lineage (found by a red-team
review).

Found: an experiment's status and report (its arms' model refs, owner, KPI numbers computed
from the generator's latent model) are shown to anyone in the tenant; `/v1/recommend`
refusals name a model's hidden lineage datasets (the registry answers a plain 404); and a
reader restricted to some rows and columns of a lineage dataset gets recommendations
learned from all of them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.experiments.helpers import (
    hidden_models,
    pin_ids,
    register_artifact,
    register_with_report,
)
from tests.experiments.test_online import GUARDS, register_stack


def test_an_experiment_is_not_shown_to_who_may_not_use_its_models(
    warden: Any, tmp_path: Path
) -> None:
    a, b = hidden_models(warden, tmp_path)
    for ref in (a, b):  # the registry hides both from mallory
        assert (
            warden.http.get(f"/v1/models/{ref}", headers=warden.as_("mallory")).status_code == 404
        )
    body = {"name": "lat", "control": a, "challenger": b, "mde": 0.1, "guardrails": GUARDS}
    started = warden.http.post("/v1/experiments", json=body, headers=warden.as_("alice"))
    assert started.status_code == 201, started.text
    for path in ("/v1/experiments/lat", "/v1/experiments/lat/report"):
        got = warden.http.get(path, headers=warden.as_("mallory"))
        # mallory holds no role at all: the experiment (its models' refs, its owner, its
        # numbers from the latent model) is no more hers than the models are
        assert got.status_code == 404, (path, got.status_code, got.text[:300])
        assert a not in got.text and b not in got.text


def test_a_recommend_refusal_names_no_hidden_lineage(warden: Any, tmp_path: Path) -> None:
    source = tmp_path / "stack.pt"
    source.write_bytes(b"weights")
    ref = register_artifact(warden, "oracle-fit", source, read=("latent_users", "pins"))
    assert warden.http.get(f"/v1/models/{ref}", headers=warden.as_("mallory")).status_code == 404
    history = pin_ids(warden)[:3]
    hidden = warden.http.post(
        "/v1/recommend",
        json={"model": ref, "user": "u-1", "history": history, "k": 3},
        headers=warden.as_("mallory"),
    )
    missing = warden.http.post(
        "/v1/recommend",
        json={"model": "no-such-model", "user": "u-1", "history": history, "k": 3},
        headers=warden.as_("mallory"),
    )
    assert hidden.status_code == 404 and missing.status_code == 404
    # as GET /v1/models/{ref} answers: the lineage's names are not the caller's to learn (nor,
    # from a different message, that the model exists)
    assert "latent_users" not in hidden.text, hidden.text


def test_a_row_filtered_reader_gets_no_recommendations_learned_from_rows_she_may_not_read(
    warden: Any,
) -> None:
    """erin (analyst_eu) reads engagements for analytics only where region = EU and never
    dwell_ms; a model trained on every row and column of engagements is not hers to query.
    (Her inference right on pins comes from the ml_engineer-free rule added below.)"""
    ref = register_stack(warden, "all-regions", 0)
    from warden.db.session import unit_of_work
    from warden.identity.service import Caller, get_principal
    from warden.policy.changes import apply_change

    with unit_of_work(warden.state.sessions) as db:
        admin = get_principal(db, "admin")
        rule = ("p", ("role:analyst_eu", "acme", "pins", "*", "inference", "read", "allow", "", ""))
        apply_change(db, Caller("admin", "person", "acme", admin.id), add=[rule],
                     reason="test setup", action="policy.bootstrap")  # fmt: skip
    warden.state.policy.ensure_fresh()
    filtered = warden.http.post(
        "/v1/policy/check",
        json={"subject": "erin", "dataset": "engagements", "purpose": "analytics"},
        headers=warden.as_("erin"),
    ).json()
    assert filtered["row_filters"] and "deny" in {c["effect"] for c in filtered["columns"]}
    got = warden.http.post(
        "/v1/recommend",
        json={"model": ref, "user": "u-1", "history": pin_ids(warden)[:3], "k": 3},
        headers=warden.as_("erin"),
    )
    assert got.status_code in (403, 404), got.text  # served: 200 with pins


def test_a_report_built_from_a_column_you_are_denied_is_not_yours_to_read(
    warden: Any, tmp_path: Path
) -> None:
    """erin is denied engagements.dwell_ms outright (and sees EU rows only); a model whose
    job read every column and row of engagements (alice may, for training) is not hers to
    read: its report may hold exactly what she is denied. `authorize_use` asks whether she
    may read *some* column of each lineage dataset, so the denied column and the row filter
    count for nothing."""
    text = '{"dwell_ms_by_region": {"US": 8123, "APAC": 5311}}'
    ref = register_with_report(
        warden, tmp_path, "dwell-model", ("engagements",), "report.json", text
    )
    denied = warden.read("erin", "engagements", purpose="analytics", columns=["dwell_ms"])
    assert denied.status_code == 403, denied.text
    got = warden.http.get(f"/v1/models/{ref}/reports/report.json", headers=warden.as_("erin"))
    assert got.status_code == 404, got.text  # served: the US and APAC dwell times
