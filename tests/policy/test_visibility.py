"""One visibility rule: a dataset the caller may not know about answers exactly like a name that
does not exist, on every route that names it; the `browse` right reveals it, never its data."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import WardenHarness

HIDDEN = "pins"  # mallory holds no role, so no right at all on pins


def add_rules(warden: WardenHarness, *rules: tuple[str, tuple[str, ...]]) -> None:
    from warden.db.session import unit_of_work
    from warden.identity.service import Caller, get_principal
    from warden.policy.changes import apply_change

    with unit_of_work(warden.state.sessions) as db:
        admin = get_principal(db, "admin")
        apply_change(db, Caller("admin", "person", "acme", admin.id), add=list(rules))
    warden.state.policy.reload()


def p(*fields: str) -> tuple[str, tuple[str, ...]]:
    return ("p", (*fields, "allow", "", ""))


def probes(warden: WardenHarness, dataset: str) -> dict[str, Any]:
    """Every route that names a dataset, as mallory."""
    mallory = warden.as_("mallory")
    http = warden.http
    return {
        "read": http.post(
            f"/v1/datasets/{dataset}/read", json={"purpose": "analytics"}, headers=mallory
        ),
        "show": http.get(f"/v1/datasets/{dataset}", headers=mallory),
        "check": http.post(
            "/v1/policy/check",
            json={"subject": "mallory", "dataset": dataset, "purpose": "analytics"},
            headers=mallory,
        ),
        "job": http.post(
            "/v1/jobs",
            json={"kind": "eval", "datasets": {"d": dataset}, "purpose": "analytics"},
            headers=mallory,
        ),
        "request": http.post(
            "/v1/access/requests",
            json={
                "dataset": dataset,
                "purpose": "analytics",
                "columns": ["pin_id", "no_such_column"],
                "duration": "1d",
                "justification": "curious",
            },
            headers=mallory,
        ),
        "settings": http.get(f"/v1/access/settings/{dataset}", headers=mallory),
        "sandbox": http.post(
            "/v1/sandboxes",
            json={
                "segment": "ml",
                "command": ["true"],
                "datasets": [dataset],
                "purpose": "analytics",
            },
            headers=mallory,
        ),
    }


@pytest.fixture
def mallory_runs_ml(warden: WardenHarness, monkeypatch: pytest.MonkeyPatch) -> WardenHarness:
    """mallory may launch ML sandboxes and jobs: only visibility stands between her and pins."""
    add_rules(warden, p("mallory", "acme", "sandbox:ml", "*", "*", "manage"))
    return warden


def test_a_hidden_dataset_answers_like_a_missing_one_on_every_route(
    mallory_runs_ml: WardenHarness,
) -> None:
    hidden, missing = probes(mallory_runs_ml, HIDDEN), probes(mallory_runs_ml, "no_such_set")
    for route in hidden:
        got, want = hidden[route], missing[route]
        assert got.status_code == want.status_code == 404, (route, got.text, want.text)
        assert got.json() == {
            "error": "NotFound",
            "detail": want.json()["detail"].replace("no_such_set", HIDDEN),
        }, route
    assert "pin_id" not in str(hidden["request"].json())  # no column name leaks
    listed = mallory_runs_ml.http.get("/v1/datasets", headers=mallory_runs_ml.as_("mallory")).json()
    assert listed["datasets"] == []


def test_hidden_refusals_are_audited(mallory_runs_ml: WardenHarness) -> None:
    probes(mallory_runs_ml, HIDDEN)
    for action in ("dataset.read", "job.create", "sandbox.launch"):
        [event] = mallory_runs_ml.audit_events(action=action, actor="mallory")
        assert event["decision"] == "deny" and "NotFound" in event["reason"], action


def test_browse_reveals_that_a_dataset_exists_but_none_of_its_data(
    mallory_runs_ml: WardenHarness,
) -> None:
    add_rules(mallory_runs_ml, p("mallory", "acme", HIDDEN, "*", "*", "browse"))
    seen = probes(mallory_runs_ml, HIDDEN)
    assert seen["show"].status_code == 200 and seen["show"].json()["name"] == HIDDEN
    assert seen["check"].status_code == 200
    assert {c["effect"] for c in seen["check"].json()["columns"]} == {"deny"}
    for route in ("read", "job", "sandbox"):
        assert seen[route].status_code == 403, (route, seen[route].text)
        assert "no column of 'pins' may be read" in seen[route].json()["detail"]


def test_stewards_and_owners_see_what_they_review(warden: WardenHarness) -> None:
    add_rules(warden, ("g", ("mallory", "role:steward", "acme")))
    shown = warden.http.get(f"/v1/datasets/{HIDDEN}", headers=warden.as_("mallory"))
    assert shown.status_code == 200
    read = warden.read("mallory", HIDDEN, purpose="analytics")
    assert read.status_code == 403  # reviewing a dataset is not reading it


def test_the_seed_lets_working_roles_discover_the_catalog(warden: WardenHarness) -> None:
    """erin (analyst_eu) reads only engagements, but may know pins exists and ask for it."""
    shown = warden.http.get(f"/v1/datasets/{HIDDEN}", headers=warden.as_("erin"))
    assert shown.status_code == 200
    assert warden.read("erin", HIDDEN, purpose="analytics").status_code == 403
