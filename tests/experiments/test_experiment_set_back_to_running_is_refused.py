"""An experiment stopped or decided, set back to running in SQL, serves and decides nothing
(red team 15, finding 2, medium; red team 14 left `state` unsealed).

Attack (an ML engineer with write access to the database): her challenger was refused by the
pre-registered rule; `UPDATE experiment SET state='running'` serves it to half the users
again, and after more simulated traffic (`simulate` reseals the results of a running
experiment) a second `decide` promotes it: the rule decided twice, no second person. A
stopped experiment set back to running serves again too. Variant: the row written back whole
to its running self (seal and all, copied before the decision).

Now an experiment's state, decision and end are sealed (an edited one is refused, 503), and
each stop, decision and rollback is held to the log (identity/revocations.py): a row whose
state is not the one the log names last is refused (503), seal or no seal.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select, update

from tests.conftest import WardenHarness
from tests.experiments.helpers import pin_ids
from tests.experiments.test_online import GUARDS, _results, _start, register_stack
from tests.sealed_rows import rolled_back
from warden.experiments.models import Experiment


def _snapshot(warden: WardenHarness, name: str) -> dict[str, Any]:
    table = Experiment.__table__
    with warden.state.engine.connect() as conn:
        found = conn.execute(select(table).where(table.c.name == name)).mappings().first()
    assert found is not None
    return dict(found)


def _write(warden: WardenHarness, which: str, /, **values: Any) -> None:
    with warden.state.engine.begin() as conn:
        conn.execute(update(Experiment).where(Experiment.name == which).values(**values))


def _serve(warden: WardenHarness, name: str) -> int:
    body = {"experiment": name, "user": "u-1", "history": pin_ids(warden)[:3], "k": 3}
    return warden.http.post("/v1/recommend", json=body, headers=warden.as_("alice")).status_code


def _post(warden: WardenHarness, path: str) -> int:
    return warden.http.post(path, headers=warden.as_("alice")).status_code


def test_a_refused_experiment_set_back_to_running_in_sql_is_refused(
    warden: WardenHarness,
) -> None:
    a, b = register_stack(warden, "ra", 1), register_stack(warden, "rb", 2)
    assert _start(warden, "e1", a, b).status_code == 201
    _results(warden, "e1", challenger_clicks=3, p95_ms=GUARDS["p95_ms"] * 2)
    running = _snapshot(warden, "e1")
    decided = warden.http.post("/v1/experiments/e1/decide", headers=warden.as_("alice"))
    assert decided.json()["state"] == "refused", decided.text

    _write(warden, "e1", state="running")  # edited: the seal breaks
    assert _serve(warden, "e1") == 503
    assert _post(warden, "/v1/experiments/e1/decide") == 503

    _write(warden, "e1", **running)  # written back whole: the seal holds, the log does not
    assert _serve(warden, "e1") == 503
    assert _post(warden, "/v1/experiments/e1/decide") == 503
    sim = warden.http.post(
        "/v1/experiments/e1/simulate", json={"requests": 2, "seed": 1}, headers=warden.as_("alice")
    )
    assert sim.status_code == 503, sim.text


def test_a_stopped_experiment_written_back_to_running_in_sql_is_refused(
    warden: WardenHarness,
) -> None:
    a, b = register_stack(warden, "sa", 1), register_stack(warden, "sb", 2)
    assert _start(warden, "e2", a, b).status_code == 201
    assert _serve(warden, "e2") == 200
    running = _snapshot(warden, "e2")
    assert _post(warden, "/v1/experiments/e2/stop") == 200
    assert _serve(warden, "e2") == 409

    _write(warden, "e2", **running)
    assert _serve(warden, "e2") == 503
    (found,) = rolled_back(warden)  # and `audit verify` says so
    assert "experiment e2 was stopped" in found["detail"], found
    _write(warden, "e2", state="running", seal=_snapshot(warden, "e2")["seal"])
    assert _serve(warden, "e2") == 503


def test_results_written_back_to_an_earlier_copy_in_sql_are_refused(
    warden: WardenHarness,
) -> None:
    """Variant: the runner keeps the simulations she likes. Her row copied (sealed) after a
    run, written back after a run that hurt the challenger: the seal holds, and without the
    log the rule would decide on cherry-picked traffic. Each simulation's results are named
    in its `experiment.simulate` event (a digest), held to the log like the state."""
    a, b = register_stack(warden, "pa", 1), register_stack(warden, "pb", 2)
    assert _start(warden, "e3", a, b).status_code == 201

    def simulate(seed: int) -> int:
        body = {"requests": 4, "seed": seed}
        r = warden.http.post("/v1/experiments/e3/simulate", json=body, headers=warden.as_("alice"))
        return r.status_code

    assert simulate(1) == 200
    liked = _snapshot(warden, "e3")
    assert simulate(2) == 200
    _write(warden, "e3", **liked)
    assert _post(warden, "/v1/experiments/e3/decide") == 503
    assert simulate(3) == 503
