"""A data sandbox's log is its launcher's only while their rights cover what it read.

Red team 22b (an ML engineer's token, a grant later revoked): a job's log is held to what its
launcher saw, but the same output is the sandbox's log (`/v1/sandboxes/{id}/logs`: what the
workload printed), which its launcher read whatever their rights had become. alice's sandbox
read `pins.merchant` raw while she held the right and printed it; the right ended (here a
deny added) and she still read the rows there, while the job's log refused them."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import WardenHarness
from tests.conftest import db_url as db_url  # both backends: no container runs here
from tests.registry.test_builder_narrowed_after_the_build_is_refused import _deny
from tests.sealed_rows import job_read, job_token_of, sandbox_of


def test_a_sandbox_log_is_refused_to_a_launcher_whose_right_ended(warden: WardenHarness) -> None:
    sandbox = sandbox_of(warden, "alice", ["pins"], "training")
    got = job_read(warden, job_token_of(warden, sandbox), "pins", purpose="training", limit=3)
    assert got.status_code == 200, got.text
    log = Path(warden.settings.data_dir) / "sandboxes" / sandbox / "logs.txt"  # type: ignore[attr-defined]
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text("merchant=ACME-1734\n")
    logs = f"/v1/sandboxes/{sandbox}/logs"
    assert warden.http.get(logs, headers=warden.as_("alice")).status_code == 200
    _deny(warden, "alice", "merchant")
    refused = warden.http.get(logs, headers=warden.as_("alice"))
    assert refused.status_code == 403, f"alice, denied merchant now, reads: {refused.text}"
    assert "ACME-1734" not in refused.text
