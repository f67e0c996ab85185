"""Durations: seconds, short spans or ISO-8601; one minute to ten years."""

from __future__ import annotations

import pytest

from warden.access.schemas import format_duration, parse_duration


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (3600, 3600),
        ("90m", 5400),
        ("12h", 43200),
        ("7d", 604800),
        ("2w", 1209600),
        ("P2D", 172800),
        ("PT36H", 129600),
    ],
)
def test_parse_duration(value: object, seconds: int) -> None:
    assert parse_duration(value) == seconds


@pytest.mark.parametrize(
    "value", [59, "0d", "forever", "7 days", "P", "P-1D", True, 1.5, None, "99999w"]
)
def test_bad_durations(value: object) -> None:
    with pytest.raises(ValueError):
        parse_duration(value)


def test_format_duration_uses_the_largest_exact_unit() -> None:
    assert [format_duration(s) for s in (604800, 5400, 7200, 61)] == ["7d", "90m", "2h", "61s"]
