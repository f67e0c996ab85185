"""A simulated user population, inside the platform (never in a sandbox or a training job).

It reads the generator's latent model (`latent_users`, `latent_pins`) and the engagement log
through the governed read path (`gateway.service.governed_read`, purpose `evaluation`,
audited like any read, user ids pseudonymised as for anyone), then plays requests: a user
drawn uniformly, their last engagements as the request's history, the experiment's answer,
and clicks and saves drawn from the generator's own probability of each shown pin for that
user (`warden_ml.baselines.oracle_scores`), so the KPI is something the arms cause.

Click model, per shown pin at position i (0-based): relevance r = N * P(pin | user) (1 for a
pin as likely as uniform); P(click) = min(0.95, 0.02 * r) / log2(i + 2); P(save | click) =
min(0.9, 0.05 * r). The taste graph is generated; the images are real (scikit-learn digits).
"""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import polars as pl
from sqlalchemy.orm import Session

from warden.audit.outcomes import by
from warden.audit.service import append
from warden.core.platform import Platform
from warden.errors import Unprocessable, WardenError
from warden.experiments import service
from warden.experiments.models import Experiment
from warden.gateway.arrow import ArrowStream
from warden.gateway.service import governed_read
from warden.identity.service import Caller

ROLES = ("pins", "engagements", "latent_users", "latent_pins")


class GovernedReader:
    """`warden_ml`'s Reader over the governed read path, in-process, as the caller."""

    def __init__(self, platform: Platform, caller: Caller) -> None:
        self.platform, self.caller = platform, caller

    def read(
        self, dataset: str, *, purpose: str, columns: Sequence[str] | None = None
    ) -> pl.DataFrame:
        body = json.dumps({"purpose": purpose, "columns": list(columns) if columns else None})
        result = governed_read(self.platform, self.caller, dataset, body.encode())
        if not isinstance(result.body, ArrowStream):
            too_large = f"{dataset!r} is too large to simulate users from in-process"
            result.body.finish(complete=False, reason=too_large)  # its intent is in the log
            raise Unprocessable(too_large)
        return pl.read_ipc_stream(b"".join(result.body))  # the bytes a caller would get


class Population:
    def __init__(self, reader: GovernedReader, max_len: int = 8) -> None:
        from warden_ml.baselines import read_latent
        from warden_ml.common import Spec
        from warden_ml.data import Histories, read_engagements, read_pins

        spec = Spec(datasets={r: r for r in ROLES}, purpose="evaluation")
        self.pins = read_pins(reader, spec, "evaluation", with_digits=False)
        self.hist = Histories.build(read_engagements(reader, spec, "evaluation"), self.pins)
        self.latent = read_latent(reader, spec, self.pins)
        self.max_len = max_len
        users = self.latent.users
        self.users = users[np.isin(users, self.hist.users)]
        self.n = self.pins.ids.shape[0]

    def request(self, rng: np.random.Generator) -> tuple[int, list[int]]:
        user = int(self.users[rng.integers(0, self.users.shape[0])])
        pos = int(np.searchsorted(self.hist.users, user))
        rows = self.hist.last(pos, self.max_len)
        return user, [int(self.pins.ids[r]) for r in rows]

    def relevance(self, user: int, shown: Sequence[int]) -> np.ndarray:
        from warden_ml.baselines import oracle_scores

        req = {"user": np.array([user], dtype=np.int64), "query": np.zeros(1, np.int64)}
        p = oracle_scores(self.latent, "heldout_edge", req, np.ones(self.n, bool))[0]
        total = p.sum() or 1.0
        rows = self.pins.index(np.asarray(shown, dtype=np.int64))
        return np.where(rows >= 0, p[np.maximum(rows, 0)] / total * self.n, 0.0)

    def react(self, user: int, shown: Sequence[int], rng: np.random.Generator) -> tuple[int, int]:
        r = self.relevance(user, shown)
        bias = 1.0 / np.log2(np.arange(len(shown)) + 2.0)
        clicked = rng.random(len(shown)) < np.minimum(0.95, 0.02 * r) * bias
        saved = clicked & (rng.random(len(shown)) < np.minimum(0.9, 0.05 * r))
        return int(clicked.sum()), int(saved.sum())


def run(
    platform: Platform,
    db: Session,
    caller: Caller,
    row: Experiment,
    requests: int,
    seed: int,
    k: int,
) -> dict[str, Any]:
    """Play `requests` simulated requests through the experiment; count their outcomes."""
    population = Population(GovernedReader(platform, caller))
    rng = np.random.default_rng([seed, 104729])
    pseudonym = f"sim-{row.id[:8]}-{{}}"
    done: dict[str, Any] = {"requests": 0, "errors": 0}
    results = copy.deepcopy(dict(row.results or {}))
    for _ in range(requests):
        user, history = population.request(rng)
        key = pseudonym.format(user & 0xFFFFFFFFFFFF)
        try:
            arm, answer, shadow = service.serve(platform, db, caller, row, key, history, k)
        except WardenError:
            service.add_outcome(results, service.arm_of(row, key), 0, 0, None, None)
            done["errors"] += 1
            continue
        clicks, saves = population.react(user, answer.pins, rng)
        overlap = None
        if shadow is not None:
            overlap = len(set(shadow) & set(answer.pins)) / max(len(answer.pins), 1)
        service.add_outcome(results, arm, clicks, saves, answer, overlap)
        done["requests"] += 1
    row.results = results
    done["summary"] = _finite(service.summary(row))
    # the results it left, held to the log (experiments/repository.py): an earlier copy
    # written back in SQL decides nothing
    details = {**service.ended(row), "requests": done["requests"], "errors": done["errors"]}
    append(db, by(caller, "experiment.simulate", "allow", details=details))
    return done


def _finite(x: Any) -> Any:
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, dict):
        return {k: _finite(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_finite(v) for v in x]
    return x
