"""`normalise_json` gives what a JSON column gives back; its shortcut for lists of text (no
JSON round trip) gives exactly what the round trip gives."""

from __future__ import annotations

import enum
import json
from typing import Any

import pytest

from warden.audit.chain import normalise_json


class Colour(enum.StrEnum):
    RED = "red"


@pytest.mark.parametrize(
    "value",
    [[], (), ["a", "é", "\ud800", ""], ("x", "y"), [Colour.RED], ["a", 1], [None], {"a": (1,)}],
)
def test_the_same_as_a_json_round_trip(value: Any) -> None:
    got = normalise_json(value)
    expected = json.loads(json.dumps(value))
    assert got == expected
    assert [type(v) for v in got] == [type(v) for v in expected]
    assert type(got) is type(expected)


def test_what_json_cannot_hold_is_still_refused() -> None:
    with pytest.raises(ValueError):
        normalise_json([float("nan")])
    with pytest.raises(TypeError):
        normalise_json([{1, 2}])
