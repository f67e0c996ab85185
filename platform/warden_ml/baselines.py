"""Ceiling and floor for the eval: an oracle, a popularity and a random scorer.

The oracle scores from the generator's latent model (``latent_users``, ``latent_pins``: the
evaluation-only datasets; the catalog and the policy keep them out of training) the exact
probability the generator gives each pin for the request:

* ``heldout_edge`` / ``next_pin`` (an engagement of user u): a slot of u's tastes uniformly,
  then a pin of that taste by popularity, or with probability ``event_noise`` any pin by
  popularity: P(p | u) = (1 - noise) * sum_s [taste(p) = t_s] / k * pop(p) / pop(t_s)
  + noise * pop(p) / pop(all), and 0 for a pin the user engaged in the training log: a gold
  pair lost all its training events, so its target is never one of them.
* ``cold_start`` (query: a pin with no engagement): the target is a warm pin of the query's
  home board, uniformly, or (when the board has none) a warm pin of the query's taste.

No scorer can beat this on average: it ranks by the distribution the targets were drawn
from. Popularity ranks pins by their training engagements; random by a seeded uniform draw.
Ties (equal probabilities are common: popularity weights are small integers) are broken
uniformly at random, seeded, so a scorer is never penalised for a tie the way
``metrics.target_ranks`` penalises a model's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from warden_ml.common import Reader, Spec, say
from warden_ml.data import Pins

BASELINES = ("oracle", "popularity", "random")
LATENT_ROLES = ("latent_users", "latent_pins")


@dataclass
class Latent:
    """The generator's latent model, aligned to the eval's pin rows."""

    users: np.ndarray  # (U,) user ids as the eval sees them (masked), sorted
    n_tastes: np.ndarray  # (U,)
    tastes: np.ndarray  # (U, 3) taste id per slot; only the first n_tastes count
    pin_taste: np.ndarray  # (N,) per pin row
    pin_pop: np.ndarray  # (N,) popularity weight per pin row (0: never engaged)
    pin_board: np.ndarray  # (N,) home board per pin row
    noise: float

    def user_rows(self, user_ids: np.ndarray) -> np.ndarray:
        pos = np.minimum(np.searchsorted(self.users, user_ids), self.users.shape[0] - 1)
        return np.where(self.users[pos] == user_ids, pos, -1)


def wants_oracle(spec: Spec) -> bool:
    """The oracle runs when the job was given the latent datasets (or asked explicitly)."""
    return bool(spec.p("oracle", all(role in spec.datasets for role in LATENT_ROLES)))


def read_latent(client: Reader, spec: Spec, pins: Pins) -> Latent:
    """Read the evaluation-only latent model (through the gateway, audited like any read)."""
    name_u, purpose_u = spec.dataset("latent_users", "evaluation")
    name_p, purpose_p = spec.dataset("latent_pins", "evaluation")
    users = client.read(
        name_u, purpose=purpose_u, columns=["user_id", "n_tastes", "taste_1", "taste_2", "taste_3"]
    ).sort("user_id")
    lp = client.read(name_p, purpose=purpose_p, columns=["pin_id", "taste", "popularity",
                                                         "event_noise"])  # fmt: skip
    name_b, purpose_b = spec.dataset("pins", "evaluation")
    boards = client.read(name_b, purpose=purpose_b, columns=["pin_id", "board_id"])
    say(f"read {name_u}, {name_p} ({purpose_p}): the latent model, for the oracle only")
    n = pins.ids.shape[0]
    taste = np.full(n, -1, dtype=np.int64)
    pop = np.zeros(n, dtype=np.float64)
    board = np.full(n, -1, dtype=np.int64)
    rows = pins.index(lp["pin_id"].to_numpy().astype(np.int64))
    ok = rows >= 0
    taste[rows[ok]] = lp["taste"].to_numpy()[ok]
    pop[rows[ok]] = lp["popularity"].to_numpy()[ok]
    brow = pins.index(boards["pin_id"].to_numpy().astype(np.int64))
    board[brow[brow >= 0]] = boards["board_id"].to_numpy()[brow >= 0]
    noise = float(lp["event_noise"][0]) if lp.height else 0.0
    return Latent(
        users=users["user_id"].to_numpy().astype(np.int64),
        n_tastes=users["n_tastes"].to_numpy().astype(np.int64),
        tastes=np.stack([users[f"taste_{j}"].to_numpy() for j in (1, 2, 3)], 1).astype(np.int64),
        pin_taste=taste,
        pin_pop=pop,
        pin_board=board,
        noise=noise,
    )


def _tie_break(scores: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Scores turned into their row-wise positions, equal scores ordered at random."""
    out = np.empty(scores.shape, dtype=np.float64)
    ar = np.arange(scores.shape[1], dtype=np.float64)
    for i in range(scores.shape[0]):
        order = np.lexsort((rng.random(scores.shape[1]), scores[i]))
        out[i, order] = ar
    return out


def seen_by_user(users: np.ndarray, hist: Any, n_pins: int) -> np.ndarray:
    """(Q, N) True where the request's user engaged the pin in the training log."""
    out = np.zeros((users.shape[0], n_pins), dtype=bool)
    pos = np.minimum(np.searchsorted(hist.users, users), max(hist.users.shape[0] - 1, 0))
    for i, (u, p) in enumerate(zip(users, pos, strict=True)):
        if hist.users.shape[0] and hist.users[p] == u:
            out[i, hist.items[hist.start[p] : hist.start[p] + hist.count[p]]] = True
    return out


def oracle_scores(
    latent: Latent,
    slice_name: str,
    req: dict[str, np.ndarray],
    warm: np.ndarray,
    seen: np.ndarray | None = None,
) -> np.ndarray:
    """(Q, N) generator probabilities (up to a per-row constant) of each pin being the target."""
    n_taste = int(max(latent.pin_taste.max(initial=0), latent.tastes.max(initial=0))) + 1
    if slice_name == "cold_start":
        q = req["query"]
        same_board = latent.pin_board[None, :] == latent.pin_board[q][:, None]
        same_taste = latent.pin_taste[None, :] == latent.pin_taste[q][:, None]
        on_board = (same_board & warm[None, :]).any(axis=1, keepdims=True)
        return np.where(on_board, same_board & warm[None, :], same_taste & warm[None, :]).astype(
            np.float64
        )
    taste_pop = np.bincount(
        np.maximum(latent.pin_taste, 0), weights=latent.pin_pop, minlength=n_taste
    )
    total = float(latent.pin_pop.sum()) or 1.0
    rows = latent.user_rows(req["user"])
    weight = np.zeros((rows.shape[0], n_taste), dtype=np.float64)
    for s in range(3):
        active = (rows >= 0) & (latent.n_tastes[np.maximum(rows, 0)] > s)
        t = latent.tastes[np.maximum(rows, 0), s]
        share = np.where(active, 1.0 / np.maximum(latent.n_tastes[np.maximum(rows, 0)], 1), 0.0)
        np.add.at(weight, (np.arange(rows.shape[0]), t), share)
    per_taste = (1.0 - latent.noise) * weight / np.maximum(taste_pop, 1e-12)[None, :]
    taste_of = np.maximum(latent.pin_taste, 0)
    scores = latent.pin_pop[None, :] * (per_taste[:, taste_of] + latent.noise / total)
    return scores if seen is None else np.where(seen, 0.0, scores)


def baseline_scores(
    name: str,
    slice_name: str,
    req: dict[str, np.ndarray],
    n_pins: int,
    engaged: np.ndarray,
    latent: Latent | None,
    rng: np.random.Generator,
    seen: np.ndarray | None = None,
) -> np.ndarray | None:
    """(Q, N) scores of one baseline on one slice (ties already broken); None if it cannot run.

    ``engaged`` counts each pin's training engagements (what popularity ranks by, and what
    makes a pin warm for the cold-start oracle); ``seen`` marks each request's user's
    training pins (the oracle never ranks them: a gold pair has no training events).
    """
    q = req["query"].shape[0]
    if name == "random":
        return rng.random((q, n_pins))
    if name == "popularity":
        return _tie_break(np.broadcast_to(engaged.astype(np.float64), (q, n_pins)), rng)
    if name == "oracle":
        if latent is None:
            return None
        return _tie_break(oracle_scores(latent, slice_name, req, engaged > 0, seen), rng)
    raise ValueError(f"unknown baseline {name!r}")


def share_of_gap(model: float, oracle: float, random: float) -> float:
    """The share of the oracle-minus-random gap a model closes (1 = the oracle, 0 = random)."""
    gap = oracle - random
    if not np.isfinite(gap) or gap <= 0 or not np.isfinite(model):
        return float("nan")
    return float((model - random) / gap)


def gap_shares(
    node: dict[str, Any], baselines: dict[str, Any], metrics: tuple[str, ...]
) -> dict[str, float]:
    """share_of_gap for each metric of one model node (means), against the baselines' nodes."""
    out: dict[str, float] = {}
    for m in metrics:
        try:
            out[m] = share_of_gap(
                float(node[m]["mean"]),
                float(baselines["oracle"][m]["mean"]),
                float(baselines["random"][m]["mean"]),
            )
        except (KeyError, TypeError):
            out[m] = float("nan")
    return out
