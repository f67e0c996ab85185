"""An experiment's numbers and report, and a model's metrics, are audited before they leave,
and refused (503) when they cannot be (found by a red-team review, round 14).

Found: `GET /v1/experiments/{name}` and `/report` (json, md, png) answered alice the arms'
KPIs (drawn from `latent_users`, evaluation-only data), guardrails and the shadow's overlap
with no audit record; so did `GET /v1/models/{ref}` (its metrics), its lineage and the list.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.experiments.helpers import hidden_models, started_lat
from warden.errors import AuditUnavailable

VIEWS = {
    "/v1/experiments/lat": "experiment.status",
    "/v1/experiments/lat/report": "experiment.report",
    "/v1/experiments/lat/report?format=md": "experiment.report",
    "/v1/experiments/lat/report?format=png": "experiment.report",
}


def _new(warden: Any, who: str, before: set[str]) -> list[dict[str, Any]]:
    return [e for e in warden.audit_events(actor=who) if e["id"] not in before]


def test_an_experiments_numbers_and_report_unaudited_are_refused(
    warden: Any, tmp_path: Path
) -> None:
    a, b = started_lat(warden, tmp_path)
    for path, action in VIEWS.items():
        before = {e["id"] for e in warden.audit_events()}
        got = warden.http.get(path, headers=warden.as_("alice"))
        assert got.status_code == 200, (path, got.text[:300])
        events = _new(warden, "alice", before)
        assert [(e["action"], e["decision"]) for e in events] == [(action, "allow")], path
        details = events[0]["details"]
        assert (details["experiment"], details["control"], details["challenger"]) == ("lat", a, b)
        if "report" in path:
            assert details["format"] == (path.rpartition("=")[2] if "=" in path else "json")


def test_a_hidden_experiments_view_is_refused_and_audited_as_missing(
    warden: Any, tmp_path: Path
) -> None:
    started_lat(warden, tmp_path)
    for path, action in VIEWS.items():
        before = {e["id"] for e in warden.audit_events()}
        got = warden.http.get(path, headers=warden.as_("mallory"))  # may not use the arms
        assert got.status_code == 404, got.text
        events = _new(warden, "mallory", before)
        assert [(e["action"], e["decision"]) for e in events] == [(action, "deny")], path


@pytest.mark.parametrize("path", [*VIEWS, "/v1/models/latent-a", "/v1/models/latent-a/lineage"])
def test_a_view_whose_audit_cannot_be_written_is_refused(
    warden: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, path: str
) -> None:
    started_lat(warden, tmp_path)

    def down(*_: Any, **__: Any) -> Any:
        raise AuditUnavailable("the audit store is unavailable; nothing was done")

    monkeypatch.setattr("warden.api.routes.experiments.record", down)
    monkeypatch.setattr("warden.api.routes.registry.record", down)
    got = warden.http.get(path, headers=warden.as_("alice"))
    assert (got.status_code, got.json()["error"]) == (503, "AuditUnavailable"), got.text
    assert "summary" not in got.text and "metrics" not in got.text


def test_a_models_metrics_unaudited_are_refused(warden: Any, tmp_path: Path) -> None:
    a, b = hidden_models(warden, tmp_path)
    shown = {
        f"/v1/models/{a}": ("model.show", [a]),
        f"/v1/models/{a}/lineage": ("model.show", [a]),
        "/v1/models?name=latent-b": ("model.list", [b]),
    }
    for path, (action, refs) in shown.items():
        before = {e["id"] for e in warden.audit_events()}
        got = warden.http.get(path, headers=warden.as_("alice"))
        assert got.status_code == 200 and "metrics" in got.text, (path, got.text[:300])
        events = _new(warden, "alice", before)
        assert [(e["action"], e["decision"]) for e in events] == [(action, "allow")], path
        assert events[0]["details"]["models"] == refs
    before = {e["id"] for e in warden.audit_events()}
    hidden = warden.http.get(f"/v1/models/{a}", headers=warden.as_("mallory"))
    assert hidden.status_code == 404
    events = _new(warden, "mallory", before)
    assert [(e["action"], e["decision"]) for e in events] == [("model.show", "deny")]
