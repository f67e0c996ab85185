"""A tenant's serving default moved back in SQL serves nothing (red team 15, finding 1,
medium).

Attack (an ML engineer with write access to the database): experiment e1 promoted `b` over
`a`, then e2 promoted `c` over `b`; the serving default is the newest `serving_default` row,
newest by its unsealed `created_at`. `DELETE` the newest row, or move an older row's
`created_at` past it (every row keeps a valid seal), and every `/v1/recommend` without a
model serves `b` again: a default no decision set, with no second person and nothing in the
log saying so. The same for an experiment's rollback undone by deleting the rollback's row.

Now each change of the default is held to the log (`experiment.decide` promoting and
`experiment.rollback` name the row they set, checkpointed at once like a revocation): the
default is the row the log names last for the tenant, and a newest row that is not it is
refused (503), whether the row was deleted, reordered or written back.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import delete, select, update

from tests.conftest import WardenHarness
from tests.experiments.helpers import pin_ids
from tests.experiments.test_online import _results, _start, register_stack
from tests.sealed_rows import rolled_back
from warden.experiments.models import ServingDefault


def _promote(warden: WardenHarness, name: str, control: str, challenger: str) -> None:
    assert _start(warden, name, control, challenger).status_code == 201
    _results(warden, name, challenger_clicks=3, p95_ms=1.0)
    decided = warden.http.post(f"/v1/experiments/{name}/decide", headers=warden.as_("alice"))
    assert decided.json()["state"] == "promoted", decided.text


def _served(warden: WardenHarness) -> tuple[int, str | None]:
    body = {"user": "u-9", "history": pin_ids(warden)[:3], "k": 3}
    answer = warden.http.post("/v1/recommend", json=body, headers=warden.as_("alice"))
    return answer.status_code, answer.json().get("model")


def _rows(warden: WardenHarness) -> list[dict[str, object]]:
    table = ServingDefault.__table__
    with warden.state.engine.connect() as conn:
        found = conn.execute(select(table).order_by(table.c.created_at)).mappings()
        return [dict(r) for r in found]


@pytest.fixture
def promoted_twice(warden: WardenHarness) -> tuple[str, str, str]:
    a, b, c = (register_stack(warden, n, s) for n, s in (("sa", 1), ("sb", 2), ("sc", 3)))
    _promote(warden, "e1", a, b)
    _promote(warden, "e2", b, c)
    assert _served(warden) == (200, c)
    return a, b, c


def test_the_newest_serving_default_deleted_in_sql_is_refused(
    warden: WardenHarness, promoted_twice: tuple[str, str, str]
) -> None:
    assert not rolled_back(warden)
    newest = _rows(warden)[-1]
    with warden.state.engine.begin() as conn:
        conn.execute(delete(ServingDefault).where(ServingDefault.id == newest["id"]))
    status, model = _served(warden)
    assert status == 503 and model is None, (status, model)
    (found,) = rolled_back(warden)  # and `audit verify` says so
    assert "serving default" in found["detail"], found


def test_an_older_serving_default_moved_ahead_in_sql_is_refused(
    warden: WardenHarness, promoted_twice: tuple[str, str, str]
) -> None:
    older = _rows(warden)[0]
    ahead = datetime.now(UTC) + timedelta(days=1)
    with warden.state.engine.begin() as conn:
        conn.execute(
            update(ServingDefault).where(ServingDefault.id == older["id"]).values(created_at=ahead)
        )
    status, model = _served(warden)
    assert status == 503 and model is None, (status, model)


def test_a_rollback_undone_in_sql_is_refused(
    warden: WardenHarness, promoted_twice: tuple[str, str, str]
) -> None:
    _, b, _ = promoted_twice
    back = warden.http.post("/v1/experiments/e2/rollback", headers=warden.as_("alice"))
    assert back.status_code == 200, back.text
    assert _served(warden) == (200, b)
    rollback = _rows(warden)[-1]
    with warden.state.engine.begin() as conn:
        conn.execute(delete(ServingDefault).where(ServingDefault.id == rollback["id"]))
    status, model = _served(warden)
    assert status == 503 and model is None, (status, model)
    # and the experiment cannot be rolled back again on the row the log says is gone
    again = warden.http.post("/v1/experiments/e2/rollback", headers=warden.as_("alice"))
    assert again.status_code in (409, 503), again.text
