"""Showing a job's log or a model's report to anyone (its launcher, or a second person who
may read all of its data) is audited before the first byte, and refused if it cannot be
(found by a red-team review, round 13).

Found: alice's training job printed rows it read to its log, and its report carries numbers
computed from them. ada (admin and ML engineer) read the log (`GET /v1/jobs/{id}/logs`), bob
(a second ML engineer) the report (`GET /v1/models/{ref}/reports/report.json`): 200, the data
in full, and no audit event named them with the job or the model. No Docker: the job's log and
report are written where a job leaves them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.access.conftest import bootstrap_people
from tests.experiments.helpers import register_with_report
from warden.db.session import unit_of_work
from warden.errors import AuditUnavailable, Unavailable
from warden.policy import reads
from warden.registry.models import Model

ROWS = '{"user_id": "a91f0c", "pin_id": 1734, "dwell_ms": 8123}\n' * 3


def _alices_job(warden: Any, tmp_path: Path) -> tuple[str, str]:
    """A model of alice's (its report.json) and its job (its log), both holding data rows."""
    bootstrap_people(warden, {"bob": ["ml_engineer"], "ada": ["admin", "ml_engineer"]})
    ref = register_with_report(
        warden, tmp_path, "alice-model", ("pins", "engagements"), "report.json", ROWS
    )
    with unit_of_work(warden.state.sessions) as db:
        job_id = db.query(Model).filter(Model.name == "alice-model").one().job_id
    log = Path(warden.settings.data_dir) / "jobs" / job_id / "logs.txt"
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text("worker: started\n" + ROWS)
    return ref, job_id


def test_viewing_someone_elses_job_log_and_report_is_audited(warden: Any, tmp_path: Path) -> None:
    ref, job_id = _alices_job(warden, tmp_path)
    before = {e["id"] for e in warden.audit_events()}
    got_log = warden.http.get(f"/v1/jobs/{job_id}/logs", headers=warden.as_("ada"))
    got_report = warden.http.get(f"/v1/models/{ref}/reports/report.json", headers=warden.as_("bob"))
    shown = [r for r in (got_log, got_report) if r.status_code == 200 and "dwell_ms" in r.text]
    assert len(shown) == 2, (got_log.status_code, got_log.text[:200], got_report.status_code)
    after = [
        e for who in ("ada", "bob") for e in warden.audit_events(actor=who) if e["id"] not in before
    ]
    mentions = [e for e in after if job_id in json.dumps(e) or "alice-model" in json.dumps(e)]
    assert len(mentions) >= len(shown), (
        f"ada and bob saw {len(shown)} outputs of alice's job (log, report: data rows) "
        f"and the audit log records none of it: {[e['action'] for e in after]}"
    )
    seen = {(e["action"], e["actor"], e["decision"]) for e in mentions}
    assert seen == {("job.logs", "ada", "allow"), ("model.report", "bob", "allow")}, seen


def test_a_refused_view_is_audited_in_the_same_shape(warden: Any, tmp_path: Path) -> None:
    """mallory (no role) is refused both: each refusal is one event of the same action."""
    ref, job_id = _alices_job(warden, tmp_path)
    before = {e["id"] for e in warden.audit_events()}
    log = warden.http.get(f"/v1/jobs/{job_id}/logs", headers=warden.as_("mallory"))
    report = warden.http.get(f"/v1/models/{ref}/reports/report.json", headers=warden.as_("mallory"))
    assert (log.status_code, report.status_code) == (404, 404), (log.text, report.text)
    events = [e for e in warden.audit_events(actor="mallory") if e["id"] not in before]
    assert sorted((e["action"], e["decision"]) for e in events) == [
        ("job.logs", "deny"),
        ("model.report", "deny"),
    ], events
    assert "dwell_ms" not in log.text + report.text


@pytest.mark.parametrize("route", ["log", "report"])
def test_no_output_is_shown_unaudited(
    warden: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, route: str
) -> None:
    """The audit store down: 503, and not one byte of the log or the report."""
    ref, job_id = _alices_job(warden, tmp_path)

    def down(*_: Any, **__: Any) -> Any:
        raise AuditUnavailable("the audit store is unavailable; nothing was done")

    monkeypatch.setattr("warden.jobs.service.record", down)
    monkeypatch.setattr("warden.api.routes.registry.record", down)
    path = f"/v1/jobs/{job_id}/logs" if route == "log" else f"/v1/models/{ref}/reports/report.json"
    got = warden.http.get(path, headers=warden.as_("ada"))
    assert (got.status_code, got.json()["error"]) == (503, "AuditUnavailable"), got.text
    assert "dwell_ms" not in got.text


def test_a_log_whose_decision_cannot_be_made_is_503_not_a_refusal(
    warden: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When the read decision behind a job's log cannot be made (a tampered row, a policy
    store that does not answer), ada is told so (503), as every model-use decision says it;
    it once read as "may not see this log" (403), which hides a fault as a refusal."""
    _ref, job_id = _alices_job(warden, tmp_path)

    def cannot_decide(*_: Any, **__: Any) -> None:
        raise Unavailable("the policy store did not answer (test)")

    monkeypatch.setattr(reads, "authorize_use", cannot_decide)
    got = warden.http.get(f"/v1/jobs/{job_id}/logs", headers=warden.as_("ada"))
    assert got.status_code == 503, (got.status_code, got.text[:200])
    assert "dwell_ms" not in got.text
