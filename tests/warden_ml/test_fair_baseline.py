"""The fair baseline: the generic tower trains until its validation loss stops improving,
with at least the domain path's budget; both arms' curves and budgets reach the report."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from warden_ml.budget import Budget, EarlyStopping, Phase, domain_path_budget
from warden_ml.cli import run_step
from warden_ml.common import Spec, load_model
from warden_ml.evaluate import training_budgets
from warden_ml.train import _generic_budget

TINY = {"batch": 32, "stack_steps": 0, "threads": 1, "dim": 32, "depth": 1, "mlp": 64,
        "val_pins": 64}  # fmt: skip


def test_early_stopping_waits_patience_checks_and_keeps_the_best_weights() -> None:
    model = torch.nn.Linear(2, 1)
    stop = EarlyStopping(patience=2, min_delta=0.01)
    with torch.no_grad():
        model.weight.fill_(1.0)
    assert not stop.update(1.0, 10, model)  # best so far
    with torch.no_grad():
        model.weight.fill_(2.0)
    assert not stop.update(0.995, 20, model)  # better, but by less than min_delta
    assert stop.update(1.2, 30, model)  # second check without improvement: stop
    stop.restore(model)
    assert stop.best_step == 10 and torch.all(model.weight == 1.0)


def test_a_budget_stops_at_the_first_limit_reached() -> None:
    phase = Phase("p", "o")
    assert Budget(steps=2).reached(phase) is None
    phase.step(100, 1.0)
    phase.step(100, 1.0)
    assert Budget(steps=2).reached(phase) == "budget (steps)"
    assert Budget(steps=5, examples=150).reached(phase) == "budget (examples)"
    assert Budget(cpu_s=0.0).reached(phase) == "budget (CPU-seconds)"
    assert Budget().reached(phase) is None
    record = phase.finish()
    assert record["steps"] == 2 and record["examples"] == 200 and record["cpu_s"] >= 0


def test_the_default_budget_is_at_least_the_whole_domain_path() -> None:
    budget = _generic_budget(Spec())
    domain = domain_path_budget()
    assert domain == {"steps": 400, "examples": 400 * 256}
    assert budget.steps is not None and budget.steps >= domain["steps"]
    assert budget.examples is not None and budget.examples >= domain["examples"]
    assert budget.cpu_s is None  # never cut short by CPU time unless asked


def test_the_generic_tower_stops_when_validation_stops_improving(
    graph_reader, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    # an improvement of 100 nats is never seen: the second check ends training
    params = {**TINY, "eval_every": 1, "patience": 1, "min_delta": 100.0, "budget_steps": 50}
    m = run_step("train-generic", Spec(seed=1, params=params), tmp_path / "g", graph_reader)
    assert m["steps"] == 2 and m["stopped_by"].startswith("early stopping")
    assert m["best_val_step"] == 1
    blob = load_model(tmp_path / "g/generic_tower.pt")
    [phase] = blob["training"]["phases"]
    assert phase["name"] == "generic tower" and phase["examples"] == 2 * 32
    assert phase["curve"]["val_step"] == [1, 2] and len(phase["curve"]["val_loss"]) == 2
    assert blob["training"]["budget"]["steps"] == 50


def test_the_budget_ends_training_that_keeps_improving(graph_reader, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    params = {**TINY, "eval_every": 1, "patience": 1000, "budget_examples": 96}
    m = run_step("train-generic", Spec(seed=1, params=params), tmp_path / "g", graph_reader)
    assert m["steps"] == 3 and m["stopped_by"] == "budget (examples)"
    assert m["examples"] == 96 and m["budget"]["examples"] == 96


def test_the_report_compares_the_generic_tower_with_the_whole_domain_path() -> None:
    def phase(name: str, steps: int, examples: int, cpu: float) -> dict:  # type: ignore[type-arg]
        return {"name": name, "steps": steps, "examples": examples, "cpu_s": cpu,
                "stopped_by": "fixed steps"}  # fmt: skip

    a = {"phases": [phase("domain tower", 200, 51200, 20.0), phase("align", 100, 25600, 5.0),
                    phase("post", 100, 25600, 5.0)]}  # fmt: skip
    b1 = {"phases": [phase("generic tower", 300, 76800, 300.0), phase("stack", 200, 1, 9.0)],
          "budget": {"steps": 400}}  # fmt: skip
    b2 = {"phases": [phase("generic tower", 500, 128000, 500.0), phase("stack", 200, 1, 9.0)]}
    out = training_budgets({"A": [a, a], "B": [b1, b2]})
    assert out["steps"] == {"A_domain_path": 400, "B_generic_tower": 400, "B_over_A": 1.0}
    assert out["examples"]["A_domain_path"] == 102400
    assert out["cpu_s"]["B_over_A"] == pytest.approx(400 / 30)
    assert out["B_stopped_by"] == ["fixed steps", "fixed steps"]
    assert out["B_budget"] == {"steps": 400}
    assert out["B_still_improving"] == [False, False]
    b1["phases"][0]["best_val_step"] = 300  # its best check was its last: still improving
    b2["phases"][0]["best_val_step"] = 250
    assert training_budgets({"A": [a], "B": [b1, b2]})["B_still_improving"] == [True, False]


def test_the_report_says_whether_the_swap_clears_the_bar() -> None:
    from warden_ml.report import _verdict

    def bar(a: float, b: float, ca: float = 0.01, cb: float = 0.01) -> str:
        rel = (a - b) / abs(b) if b else float("nan")
        return _verdict({"share_A_stack": a, "share_B_stack": b, "share_A_stack_ci95": ca,
                         "share_B_stack_ci95": cb, "share_gain_points_stack": a - b,
                         "share_gain_relative_stack": rel})[0]  # fmt: skip

    assert "**met**" in bar(0.5, 0.3)
    assert "NOT met" in bar(0.35, 0.3)  # only 17% more
    assert "NOT met" in bar(
        0.0, -0.003, 0.0, 0.12
    )  # the demo run's stacks: A no better than random
    noisy = bar(0.01, -0.003, 0.0, 0.12)
    assert "NOT met" in noisy and "noise" in noisy
    assert "NOT met" in bar(0.5, 0.3, float("nan"), float("nan"))  # one seed: no interval
    assert "NOT met" in bar(-0.1, -0.2)  # "more" than a negative share is not a win
    assert "not measurable" in bar(0.1, 0.0)
