"""A principal named like one of the audit log's system actors is refused (red team 16a, low).

Warden audits what it does itself as `warden`, its access workflow's own steps (a public
grant made at once) as `system`, and an unauthenticated caller as `anonymous`. An admin could
create a person by any of those names, whose every act was then recorded under the name an
auditor reads as the system's (or no one's): filtering by actor mixed them, and the name
alone no longer told a person from Warden. Now such names are refused, as `job-...` is.
"""

from __future__ import annotations

import pytest
from tests.conftest import WardenHarness


@pytest.mark.parametrize("name", ["warden", "system", "anonymous"])
@pytest.mark.parametrize("kind", ["person", "service"])
def test_a_principal_named_like_a_system_actor_is_refused(
    warden: WardenHarness, name: str, kind: str
) -> None:
    got = warden.http.post(
        "/v1/principals", json={"name": name, "kind": kind}, headers=warden.as_("admin")
    )
    assert got.status_code == 422, got.text
    assert got.json()["error"] == "Unprocessable"
    assert "system actors" in got.json()["detail"]
    fine = warden.http.post(
        "/v1/principals", json={"name": f"{name}2", "kind": kind}, headers=warden.as_("admin")
    )
    assert fine.status_code in (201, 202), fine.text
