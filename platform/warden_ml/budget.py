"""Training phases as records (curve, steps, examples, CPU-seconds), budgets, early stopping.

Every model artifact carries ``training``: ``{"phases": [...], "budget": {...}}`` so the eval
can put both arms' curves and budgets side by side. An *example* is one training example of
the phase's own objective: an image (two augmented views) for SimCLR, a graph pair for the
contrastive domain tower, a (history, next pin) window for next-pin training.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field
from typing import Any

from torch import nn

# The domain path's defaults (train-domain, then swap's align and post-train), at batch 256.
DOMAIN_PATH_DEFAULTS = {"domain": (200, 256), "align": (100, 256), "post": (100, 256)}


def domain_path_budget() -> dict[str, int]:
    """Steps and examples of the domain path at its default parameters."""
    steps = sum(s for s, _ in DOMAIN_PATH_DEFAULTS.values())
    examples = sum(s * b for s, b in DOMAIN_PATH_DEFAULTS.values())
    return {"steps": steps, "examples": examples}


@dataclass
class Budget:
    """The most a phase may spend; None = unbounded. Stops at the first one reached."""

    steps: int | None = None
    examples: int | None = None
    cpu_s: float | None = None
    basis: str = ""

    def reached(self, phase: Phase) -> str | None:
        if self.steps is not None and phase.steps >= self.steps:
            return "budget (steps)"
        if self.examples is not None and phase.examples >= self.examples:
            return "budget (examples)"
        if self.cpu_s is not None and phase.cpu_s() >= self.cpu_s:
            return "budget (CPU-seconds)"
        return None

    def record(self) -> dict[str, Any]:
        return {"steps": self.steps, "examples": self.examples, "cpu_s": self.cpu_s,
                "basis": self.basis}  # fmt: skip


@dataclass
class Phase:
    """One training phase: counts, CPU time and its loss curve (train, and val if any)."""

    name: str
    objective: str
    steps: int = 0
    examples: int = 0
    stopped_by: str = "fixed steps"
    curve: dict[str, list[float]] = field(
        default_factory=lambda: {
            k: []
            for k in ("step", "examples", "train_loss", "val_step", "val_examples", "val_loss")
        }  # fmt: skip
    )
    _cpu0: float = field(default_factory=time.process_time)
    _wall0: float = field(default_factory=time.perf_counter)
    _cpu: float | None = None
    _wall: float | None = None

    def cpu_s(self) -> float:
        return self._cpu if self._cpu is not None else time.process_time() - self._cpu0

    def step(self, n_examples: int, loss: float, log_every: int = 1) -> None:
        self.steps += 1
        self.examples += n_examples
        if self.steps % log_every == 0 or self.steps == 1:
            self.curve["step"].append(self.steps)
            self.curve["examples"].append(self.examples)
            self.curve["train_loss"].append(round(float(loss), 5))

    def validated(self, loss: float) -> None:
        self.curve["val_step"].append(self.steps)
        self.curve["val_examples"].append(self.examples)
        self.curve["val_loss"].append(round(float(loss), 5))

    def finish(self, stopped_by: str | None = None) -> dict[str, Any]:
        if self._cpu is None:
            self._cpu = time.process_time() - self._cpu0
            self._wall = time.perf_counter() - self._wall0
        if stopped_by:
            self.stopped_by = stopped_by
        return self.record()

    def record(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "objective": self.objective,
            "steps": self.steps,
            "examples": self.examples,
            "cpu_s": round(self.cpu_s(), 3),
            "wall_s": round(self._wall if self._wall is not None else 0.0, 3),
            "stopped_by": self.stopped_by,
            "curve": {k: list(v) for k, v in self.curve.items()},
        }


class EarlyStopping:
    """Stop when the validation loss has not improved by ``min_delta`` for ``patience``
    evaluations in a row; keeps the best weights so they can be restored."""

    def __init__(self, patience: int, min_delta: float = 1e-3) -> None:
        self.patience = patience
        self.min_delta = min_delta
        self.best = math.inf
        self.best_step = 0
        self.bad = 0
        self.best_state: dict[str, Any] | None = None

    def update(self, loss: float, step: int, model: nn.Module) -> bool:
        """Record one validation loss; True when training should stop."""
        if loss < self.best - self.min_delta:
            self.best, self.best_step, self.bad = loss, step, 0
            self.best_state = copy.deepcopy(model.state_dict())
        else:
            self.bad += 1
        return self.bad >= self.patience

    def restore(self, model: nn.Module) -> None:
        if self.best_state is not None:
            model.load_state_dict(self.best_state)
