"""policies/access.csv as a table: who may break glass, who sees every request, who reviews."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from warden.policy.engine import PolicySnapshot
from warden.policy.rules import read_csv

POLICIES = Path(__file__).resolve().parents[2] / "policies"
NOW = datetime(2026, 12, 1, tzinfo=UTC)
LINKS = [
    ("g", ("alice", "role:ml_engineer", "acme")),
    ("g", ("erin", "role:analyst_eu", "acme")),
    ("g", ("sam", "role:steward", "acme")),
    ("g", ("olga", "role:owner", "acme")),
    ("g", ("aud", "role:auditor", "acme")),
    ("g", ("admin", "role:admin", "acme")),
]


@pytest.fixture(scope="module")
def snapshot() -> PolicySnapshot:
    rules = read_csv([POLICIES / "seed.csv", POLICIES / "access.csv"])
    return PolicySnapshot([*rules, *LINKS], model_text=(POLICIES / "model.conf").read_text())


@pytest.mark.parametrize(
    ("who", "obj", "act", "expected"),
    [
        ("alice", "sys:break_glass", "manage", True),
        ("admin", "sys:break_glass", "manage", True),
        ("erin", "sys:break_glass", "manage", False),
        ("sam", "sys:break_glass", "manage", False),
        ("mallory", "sys:break_glass", "manage", False),
        ("aud", "sys:access", "read", True),
        ("aud", "sys:access", "manage", False),
        ("admin", "sys:access", "manage", True),
        ("alice", "sys:access", "read", False),
        ("sam", "engagements", "review", True),
        ("olga", "users", "review", True),
        ("alice", "users", "review", False),
        ("admin", "users", "review", False),  # admins review only what they own
        ("sam", "users", "read", False),  # reviewing is not reading
    ],
)
def test_access_rights(
    snapshot: PolicySnapshot, who: str, obj: str, act: str, expected: bool
) -> None:
    assert snapshot.can(who, "acme", obj, act, NOW) is expected
