"""Who may launch what: Casbin per segment and tenant, the profile's bounds, data grants.
Every refusal happens before a container exists, so these need no Docker Engine."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import WardenHarness
from tests.sandbox.conftest import DEVELOPER, grant_sandbox_roles


class NoEngine:
    """A driver that fails the test if anything reaches the backend."""

    name = "none"

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"a refused launch reached the driver ({name})")


@pytest.fixture
def api(warden: WardenHarness) -> Iterator[WardenHarness]:
    from warden.sandbox.runtime import SandboxRuntime

    grant_sandbox_roles(warden)
    warden.process.sandboxes = SandboxRuntime(
        warden.state,
        warden.app,
        driver=NoEngine(),  # type: ignore[arg-type]
    )
    yield warden


def launch(api: WardenHarness, who: str, **body: Any) -> Any:
    body.setdefault("command", ["true"])
    return api.http.post("/v1/sandboxes", json=body, headers=api.as_(who))


@pytest.mark.parametrize(
    ("who", "segment", "body", "status", "detail"),
    [
        ("mallory", "ml", {}, 403, "may not launch sandboxes in the 'ml' segment"),
        ("erin", "ml", {}, 403, "may not launch sandboxes in the 'ml' segment"),
        ("alice", "app-dev", {}, 403, "may not launch sandboxes in the 'app-dev' segment"),
        (DEVELOPER, "ml", {}, 403, "may not launch sandboxes in the 'ml' segment"),
        ("alice", "gpu", {}, 404, "no segment 'gpu'"),
        ("alice", "ml", {"timeout": 10**6}, 403, "timeout"),
        ("alice", "ml", {"memory": "64g"}, 403, "memory"),
        ("alice", "ml", {"cpus": 64}, 403, "cpus"),
        ("alice", "ml", {"env": {"LD_PRELOAD": "/tmp/x.so"}}, 403, "LD_PRELOAD"),
        ("alice", "ml", {"env": {"WARDEN_TOKEN": "wjt_x"}}, 403, "WARDEN_TOKEN"),
        ("alice", "ml", {"interactive": True}, 403, "interactive"),
        ("alice", "ml", {"datasets": ["pins"]}, 422, "datasets and a purpose"),
        ("alice", "ml", {"datasets": ["pins"], "purpose": "fun"}, 422, "unknown purpose"),
        (
            "alice",
            "ml",
            {"datasets": ["gold"], "purpose": "training"},
            403,
            "no column of 'gold' may be read",
        ),
        ("alice", "ml", {"datasets": ["nope"], "purpose": "training"}, 404, "no dataset"),
        ("mallory", "ml", {"datasets": ["pins"], "purpose": "training"}, 403, "may not launch"),
        (DEVELOPER, "app-dev", {"datasets": ["pins"], "purpose": "training"}, 403, "never gets"),
        ("alice", "ml", {"command": []}, 422, "a command is required"),
    ],
)
def test_refused_launches_create_nothing_and_are_audited(
    api: WardenHarness, who: str, segment: str, body: dict, status: int, detail: str
) -> None:
    response = launch(api, who, segment=segment, **body)
    assert response.status_code == status, response.text
    assert detail in response.json()["detail"]
    denied = api.audit_events(action="sandbox.launch", decision="deny", actor=who)
    assert len(denied) == 1 and detail in denied[0]["reason"]


def test_other_tenants_rules_do_not_let_anyone_launch(api: WardenHarness) -> None:
    from warden.db.session import unit_of_work
    from warden.identity.service import Caller, get_principal
    from warden.policy.changes import apply_change

    with unit_of_work(api.state.sessions) as db:
        admin = get_principal(db, "admin")
        rule = ("p", ("mallory", "globex", "sandbox:ml", "*", "*", "manage", "allow", "", ""))
        apply_change(db, Caller("admin", "person", "acme", admin.id), add=[rule])
    assert launch(api, "mallory", segment="ml").status_code == 403


def test_job_tokens_cannot_manage_sandboxes(api: WardenHarness) -> None:
    from warden.identity.service import Caller
    from warden.sandbox import service
    from warden.sandbox.profiles import LaunchRequest

    job = Caller("job-x", "job", "acme", "p", on_behalf_of="alice", job_id="x", segment="ml")
    runtime = api.process.sandboxes
    with pytest.raises(Exception, match="jobs cannot manage sandboxes"):
        service.launch(runtime, job, LaunchRequest(segment="ml", command=["true"]))


def test_unknown_sandbox_is_not_found(api: WardenHarness) -> None:
    response = api.http.get("/v1/sandboxes/abcdef012345", headers=api.as_("alice"))
    assert response.status_code == 404
    assert response.json()["error"] == "NotFound"


def test_listing_everyone_needs_admin(api: WardenHarness) -> None:
    mine = api.http.get("/v1/sandboxes", headers=api.as_("alice"))
    assert mine.status_code == 200 and mine.json() == {"sandboxes": []}
    everyone = api.http.get("/v1/sandboxes?all=true", headers=api.as_("alice"))
    assert everyone.status_code == 403
    assert api.http.get("/v1/sandboxes?all=true", headers=api.as_("admin")).status_code == 200
