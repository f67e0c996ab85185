"""A small answer is looked for in the first rows of a decoded file before the whole of it
(gateway/planner._first_rows): whichever way it is found, it is the first `limit` rows of
the whole answer, masked the same, whether the filters keep many rows, few, or none."""

from __future__ import annotations

import io
from typing import Any

import polars as pl
import pytest

import warden.gateway.planner as planner

COLUMNS = ["user_id", "pin_id", "action", "ts"]
CASES = {
    "no filter": [],
    "most rows": [{"column": "action", "op": "ne", "value": "hide"}],
    "only later rows": None,  # pins none of the file's first rows has (see _later_pins)
    "no row": [{"column": "pin_id", "op": "lt", "value": -1}],
}


def _read(warden: Any, **body: Any) -> pl.DataFrame:
    r = warden.read("alice", "engagements", purpose="training", columns=COLUMNS, **body)
    assert r.status_code == 200, r.text
    return pl.read_ipc_stream(io.BytesIO(r.content))


@pytest.mark.parametrize("case", CASES)
def test_a_limited_read_is_the_first_rows_of_the_whole_answer(warden: Any, case: str) -> None:
    where = CASES[case] or _later_pins(_read(warden))
    whole = _read(warden, where=where)
    for limit in (0, 1, 5, 100):
        assert _read(warden, where=where, limit=limit).equals(whole.head(limit))
    shard = {"rank": 1, "world": 3}
    sharded = _read(warden, where=where, shard=shard)
    assert _read(warden, where=where, shard=shard, limit=5).equals(sharded.head(5))


def _later_pins(unfiltered: pl.DataFrame) -> list[dict[str, Any]]:
    """A filter none of the first rows a limit of 5 looks at passes, and 5 later rows do."""
    first = planner.FIRST_ROWS_PER_ROW * 5
    early = set(unfiltered["pin_id"].head(first))
    later = [p for p in unfiltered["pin_id"][first:] if p not in early][:5]
    assert len(later) == 5
    return [{"column": "pin_id", "op": "in", "value": later}]


def test_a_filter_on_a_masked_identifier_compares_pseudonyms_in_the_first_rows(
    warden: Any,
) -> None:
    whole = _read(warden)
    pseudonym = whole["user_id"][3]
    where = [{"column": "user_id", "op": "eq", "value": pseudonym}]
    expected = whole.filter(pl.col("user_id") == pseudonym)
    assert _read(warden, where=where, limit=2).equals(expected.head(2))


def test_the_first_rows_alone_answer_when_they_hold_the_limit(
    warden: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    answers: list[pl.DataFrame | None] = []
    first_rows = planner._first_rows

    def seen(plan: planner.Plan) -> pl.DataFrame | None:
        answers.append(first_rows(plan))
        return answers[-1]

    monkeypatch.setattr(planner, "_first_rows", seen)
    _read(warden, limit=5)
    _read(warden, where=_later_pins(_read(warden)), limit=5)
    assert answers[0] is not None and answers[0].height == 5
    assert answers[2] is None  # too few in the first rows: the whole file was read


def test_a_read_of_columns_only_takes_its_first_rows_without_a_query(
    warden: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    plans: list[planner.Plan] = []
    first_rows = planner._first_rows

    def seen(plan: planner.Plan) -> pl.DataFrame | None:
        plans.append(plan)
        return first_rows(plan)

    monkeypatch.setattr(planner, "_first_rows", seen)
    whole = _read(warden)
    limited = _read(warden, limit=7)
    plain = plans[-1]
    assert plain.plain and plain.decoded is not None
    assert limited.equals(whole.head(7))  # masked the same, after the columns were picked
    by_query = plain.shape(plain.decoded.lazy()).collect()
    assert first_rows(plain).equals(by_query)  # type: ignore[union-attr]
    _read(warden, where=[{"column": "action", "op": "ne", "value": "hide"}], limit=7)
    _read(warden, shard={"rank": 0, "world": 2}, limit=7)
    assert not plans[-2].plain and not plans[-1].plain
