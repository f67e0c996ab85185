"""A model's launcher is held to what they saw when they built it, as anyone else is.

Red team 22b (an ML engineer's token, a grant approved by a steward and later revoked): who
may use a model is held to what its builder read, but the check was skipped when the caller
*is* the builder. So alice, whose job read `pins.merchant` raw under a right that then ended
(a grant revoked, here a deny added), kept reading the model built on it (its metrics and
reports, serving it, building on it) with rights that now show her no merchant at all, while
mallory with exactly those rights is refused: the revocation took the data from her but not
what was computed from it. A narrowed launcher must get the 403 the decision already words
("may no longer use model …: a grant ended or a rule changed")."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import WardenHarness
from tests.conftest import db_url as db_url  # both backends: no job runs here (no Docker)
from tests.registry.test_builder_narrowed_after_the_build_is_refused import (
    _alice_model_from_pins,
    _deny,
)


def test_a_launcher_whose_right_ended_may_no_longer_use_the_model(
    warden: WardenHarness, tmp_path: Path
) -> None:
    ref = _alice_model_from_pins(warden, tmp_path)  # her job saw merchant raw at launch
    assert warden.http.get(f"/v1/models/{ref}", headers=warden.as_("alice")).status_code == 200
    _deny(warden, "alice", "merchant")  # her right to merchant ends after the build
    for path in ("{}", "{}/lineage"):
        got = warden.http.get("/v1/models/" + path.format(ref), headers=warden.as_("alice"))
        assert got.status_code == 403, f"alice, denied merchant now, still uses {ref}: {got.text}"
        assert "may no longer use model" in got.json()["detail"]
    listed = warden.http.get("/v1/models", headers=warden.as_("alice")).json()["models"]
    assert ref not in [m["ref"] for m in listed]


def test_a_launcher_whose_right_ended_may_no_longer_read_the_jobs_log(
    warden: WardenHarness, tmp_path: Path
) -> None:
    """The same for the job's log, which may carry the rows it read: its launcher read it
    whatever their rights had become."""
    ref = _alice_model_from_pins(warden, tmp_path)
    job_id = warden.http.get(f"/v1/models/{ref}", headers=warden.as_("alice")).json()["job_id"]
    log = Path(warden.settings.data_dir) / "jobs" / job_id / "logs.txt"
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text("worker: started\nmerchant=ACME-1734\n")
    logs = f"/v1/jobs/{job_id}/logs"
    assert warden.http.get(logs, headers=warden.as_("alice")).status_code == 200
    _deny(warden, "alice", "merchant")
    got = warden.http.get(logs, headers=warden.as_("alice"))
    assert got.status_code == 403, f"alice, denied merchant now, still reads the log: {got.text}"
    assert "ACME-1734" not in got.text


def test_a_launcher_whose_right_ended_is_not_shown_the_jobs_last_line(
    warden: WardenHarness, tmp_path: Path
) -> None:
    """The same for a failed job's last line (`last_line`: up to 500 characters of what the
    workload printed last, a row it read among them), shown in the job's listing, its page
    and a cancel's answer to the launcher without asking whether their rights still cover it."""
    from warden.db.session import unit_of_work
    from warden.jobs.models import Job

    ref = _alice_model_from_pins(warden, tmp_path)
    job_id = warden.http.get(f"/v1/models/{ref}", headers=warden.as_("alice")).json()["job_id"]
    with unit_of_work(warden.state.sessions) as db:
        db.get_one(Job, job_id).last_line = "ValueError: bad merchant 'ACME-1734'"
    shown = warden.http.get(f"/v1/jobs/{job_id}", headers=warden.as_("alice")).json()
    assert "ACME-1734" in shown["last_line"]  # to its launcher, while her rights cover it
    _deny(warden, "alice", "merchant")
    one = warden.http.get(f"/v1/jobs/{job_id}", headers=warden.as_("alice"))
    listed = warden.http.get("/v1/jobs", headers=warden.as_("alice"))
    assert one.status_code == listed.status_code == 200, (one.text, listed.text)
    for answer in (one.text, listed.text):
        assert "ACME-1734" not in answer, f"alice, denied merchant now, is shown {answer}"


def test_a_launcher_is_held_to_what_the_jobs_reads_showed_for_its_log(
    warden: WardenHarness,
) -> None:
    """Red team 16c's case for the log: alice's job read merchant under a right given after
    its launch (the launch records merchant denied) and taken away after the read. Her rights
    now are her launch's, but the log holds what the read showed: the launcher is held to the
    job's audited reads too (`registry.job_built_with`), not to the launch alone."""
    from tests.registry.test_right_held_only_while_the_job_ran_is_counted import (
        read_merchant_while_allowed,
    )

    _, job_id = read_merchant_while_allowed(warden, "pins-late")
    log = Path(warden.settings.data_dir) / "jobs" / job_id / "logs.txt"
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text("merchant=ACME-1734\n")
    got = warden.http.get(f"/v1/jobs/{job_id}/logs", headers=warden.as_("alice"))
    assert got.status_code == 403, f"alice, denied merchant again, reads: {got.text}"
