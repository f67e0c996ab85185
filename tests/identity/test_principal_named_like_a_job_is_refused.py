"""A principal named like a job is refused (red team 15b, low).

The attack (an admin with `sys:principals`): a job acts, is audited and has its lineage read
as `job-<sandbox id>` (`registry.lineage_for` lists the reads whose actor is that name). A
person named `job-<id of someone's job>` (names were free) read under that actor: the audit
log showed the job reading what the person read, and the job's model counted it in its
lineage. Now no principal may take a name starting with `job-`.
"""

from __future__ import annotations

import pytest
from tests.conftest import WardenHarness
from tests.sealed_rows import sandbox_of


@pytest.mark.parametrize("kind", ["person", "service"])
def test_a_principal_named_like_a_job_is_refused(warden: WardenHarness, kind: str) -> None:
    sandbox = sandbox_of(warden, "alice", ["pins"], "training")
    for name in (f"job-{sandbox}", "job-later"):
        got = warden.http.post(
            "/v1/principals", json={"name": name, "kind": kind}, headers=warden.as_("admin")
        )
        assert got.status_code == 422, got.text
        assert "jobs'" in got.json()["detail"]
    fine = warden.http.post(
        "/v1/principals", json={"name": "jobber", "kind": kind}, headers=warden.as_("admin")
    )
    assert fine.status_code in (201, 202), fine.text
