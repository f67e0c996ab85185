"""What counts as widening, as a table: only a change provably narrowing item by item applies
without review; everything else (a no-op included) is widening."""

from __future__ import annotations

import pytest

from warden.policy.changes import assess
from warden.policy.rules import Rule, split_line

STORED = [
    "p, role:analyst_eu, acme, engagements, *, analytics, read, allow, ,",
    "p, role:analyst_eu, acme, engagements, dwell_ms, *, *, deny, ,",
    "p2, role:analyst_eu, acme, engagements, region, eq, EU",
    "g, role:eu_lead, role:analyst_eu, acme",
    "p, role:ml_engineer, acme, pins, *, training, read, allow, ,",
    "g, erin, role:analyst_eu, acme",
    "g, alice, role:ml_engineer, acme",
    "g, lena, role:eu_lead, acme",
]


def rule(line: str) -> Rule:
    tokens = split_line(line)
    return tokens[0], tuple(tokens[1:])


RULES = [rule(line) for line in STORED]


@pytest.mark.parametrize(
    ("add", "remove", "widening", "subjects"),
    [
        # adding an allow (for a role the proposer holds, or anyone) widens
        (["p, role:admin, acme, users, *, *, read, allow, ,"], [], 1, {"role:admin"}),
        (["p, role:admin, acme, users, user_id, *, mask, allow, ,"], [], 1, {"role:admin"}),
        (["p, rita, acme, pins, *, *, review, allow, ,"], [], 1, {"rita"}),
        # a role link, person→role or role→role, widens
        (["g, role:admin, role:ml_engineer, acme"], [], 1, {"role:admin"}),
        (["g, mallory, role:steward, acme"], [], 1, {"mallory"}),
        # a no-op (an allow already stored) is not provably narrowing
        (["p, role:ml_engineer, acme, pins, *, training, read, allow, ,"], [], 1, None),
        # denies and row filters only narrow
        (["p, alice, acme, pins, *, *, *, deny, ,"], [], 0, set()),
        (["p2, role:ml_engineer, acme, pins, board_id, eq, b1"], [], 0, set()),
        # removing an allow narrows; removing a deny or a row filter widens
        ([], ["p, role:ml_engineer, acme, pins, *, training, read, allow, ,"], 0, set()),
        ([], ["p, role:analyst_eu, acme, engagements, dwell_ms, *, *, deny, ,"], 1, None),
        ([], ["p2, role:analyst_eu, acme, engagements, region, eq, EU"], 1, {"role:analyst_eu"}),
        # unlinking a plain role narrows; unlinking one that restricts (itself or through the
        # roles it inherits) could widen
        ([], ["g, alice, role:ml_engineer, acme"], 0, set()),
        ([], ["g, erin, role:analyst_eu, acme"], 1, {"erin"}),
        ([], ["g, lena, role:eu_lead, acme"], 1, {"lena"}),
        # one widening item makes the whole change widening
        (
            ["p, alice, acme, pins, *, *, *, deny, ,", "g, mallory, role:ml_engineer, acme"],
            ["p, role:ml_engineer, acme, pins, *, training, read, allow, ,"],
            1,
            {"mallory"},
        ),
    ],
)
def test_widening_is_decided_conservatively(
    add: list[str], remove: list[str], widening: int, subjects: set[str] | None
) -> None:
    found = assess(RULES, [rule(x) for x in add], [rule(x) for x in remove])
    assert len(found.widening) == widening, found.widening
    assert found.is_widening is (widening > 0)
    if subjects is not None:
        assert set(found.subjects) == subjects


def test_an_unlink_in_another_tenant_does_not_borrow_its_restrictions() -> None:
    other = [rule("p2, role:analyst_eu, globex, engagements, region, eq, EU")]
    found = assess(other, [], [rule("g, erin, role:analyst_eu, acme")])
    assert not found.is_widening
