"""Ceiling and floor: the oracle (the generator's latent model), popularity and random."""

from __future__ import annotations

import math

import numpy as np
import pytest

from warden_ml.baselines import read_latent, share_of_gap, wants_oracle
from warden_ml.common import Spec
from warden_ml.data import Histories, read_engagements, read_gold, read_pins
from warden_ml.evaluate import _aggregate, _baselines, build_requests, sample_candidates

LATENT = {"latent_users": "latent_users", "latent_pins": "latent_pins"}


def _baseline_metrics(reader, seed: int) -> dict:  # type: ignore[no-untyped-def]
    spec = Spec(seed=seed, datasets=dict(LATENT))
    pins = read_pins(reader, spec, "evaluation", with_digits=False)
    gold = read_gold(reader, spec, "evaluation")
    hist = Histories.build(read_engagements(reader, spec, "evaluation"), pins)
    reqs = build_requests(gold, hist, pins.index, 8, 600)
    n = pins.ids.shape[0]
    rng = np.random.default_rng(seed)
    cands = {s: sample_candidates(r["query"], r["target"], n, 100, rng) for s, r in reqs.items()}
    latent = read_latent(reader, spec, pins)
    engaged = np.bincount(hist.items, minlength=n)
    return _baselines(reqs, cands, n, engaged, latent, 10, seed, hist)


@pytest.fixture(scope="module")
def baselines(taste_graph: list) -> dict:  # type: ignore[type-arg]
    from pathlib import Path

    from tests.warden_ml.conftest import ParquetReader

    return _baseline_metrics(ParquetReader(Path(taste_graph[0].path).parent), seed=0)


def test_oracle_beats_popularity_beats_random_on_held_out_edges(baselines: dict) -> None:  # type: ignore[type-arg]
    full = {name: baselines[name]["heldout_edge"]["full"] for name in baselines}
    for metric in ("recall@10", "mrr", "ndcg@10"):
        assert full["oracle"][metric] > full["popularity"][metric] > full["random"][metric]
    # by clear margins, not noise: the oracle well above popularity, which is above chance
    assert full["oracle"]["recall@10"] > 1.5 * full["popularity"]["recall@10"]
    assert full["random"]["recall@10"] < 0.02
    sampled = {name: baselines[name]["heldout_edge"]["sampled"] for name in baselines}
    assert sampled["oracle"]["recall@10"] > sampled["popularity"]["recall@10"]
    assert sampled["popularity"]["recall@10"] > sampled["random"]["recall@10"]
    # the next engagement is drawn the same way: the oracle leads there too
    nxt = {name: baselines[name]["next_pin"]["full"]["recall@10"] for name in baselines}
    assert nxt["oracle"] > nxt["popularity"] > nxt["random"]
    cold = {name: baselines[name]["cold_start"]["full"]["recall@10"] for name in baselines}
    assert cold["oracle"] > max(cold["popularity"], cold["random"])


def test_baselines_are_deterministic_per_seed(baselines: dict, graph_reader) -> None:  # type: ignore[no-untyped-def,type-arg]
    again = _baseline_metrics(graph_reader, seed=0)
    assert again == baselines


def test_share_of_gap_arithmetic() -> None:
    assert share_of_gap(0.5, 1.0, 0.0) == 0.5
    assert share_of_gap(0.02, 0.10, 0.00) == pytest.approx(0.2)
    assert share_of_gap(0.06, 0.10, 0.02) == pytest.approx(0.5)
    assert share_of_gap(0.10, 0.10, 0.02) == pytest.approx(1.0)
    assert share_of_gap(0.02, 0.10, 0.02) == 0.0
    assert share_of_gap(0.01, 0.10, 0.02) == pytest.approx(-0.125)  # worse than random
    # no gap to close (or no oracle): undefined, never a division by zero
    assert math.isnan(share_of_gap(0.5, 0.2, 0.2))
    assert math.isnan(share_of_gap(0.5, math.nan, 0.1))


def test_every_model_metric_is_reported_as_a_share_of_the_gap() -> None:
    per_seed_vals = [0.03, 0.05]  # two seeds of arm A, against a 0.02..0.10 gap
    node = {"recall@10": 0.0, "mrr": 0.0, "ndcg@10": 0.0, "n": 10}
    baselines = {
        "oracle": {
            "heldout_edge": {"full": {**node, "recall@10": 0.10, "mrr": 0.2, "ndcg@10": 0.1}}
        },
        "random": {"heldout_edge": {"full": {**node, "recall@10": 0.02}}},
    }
    per_seed = {
        "A": [{"stack": {"heldout_edge": {"full": {**node, "recall@10": v}}}, "tower": {}}
              for v in per_seed_vals],
        "B": [],
    }  # fmt: skip
    q = _aggregate(per_seed, 10, baselines)
    share = q["A"]["stack"]["heldout_edge"]["full"]["share_of_gap"]["recall@10"]
    assert share["values"] == pytest.approx([0.125, 0.375])
    assert share["mean"] == pytest.approx(0.25)
    assert share["ci95"] > 0
    assert q["baselines"]["oracle"]["heldout_edge"]["full"]["share_of_gap"]["recall@10"][
        "mean"
    ] == pytest.approx(1.0)
    assert q["baselines"]["random"]["heldout_edge"]["full"]["recall@10"]["mean"] == 0.02


def test_the_oracle_runs_only_when_the_latent_datasets_are_given() -> None:
    assert wants_oracle(Spec(datasets=dict(LATENT)))
    assert not wants_oracle(Spec(datasets={"pins": "pins", "gold": "gold"}))
    assert not wants_oracle(Spec(datasets=dict(LATENT), params={"oracle": False}))


def test_the_oracle_never_ranks_a_pin_the_user_already_engaged() -> None:
    from warden_ml.baselines import Latent, oracle_scores

    latent = Latent(users=np.array([7]), n_tastes=np.array([1]), tastes=np.array([[0, 0, 0]]),
                    pin_taste=np.array([0, 0, 1]), pin_pop=np.array([5.0, 1.0, 1.0]),
                    pin_board=np.array([0, 0, 1]), noise=0.1)  # fmt: skip
    req = {"user": np.array([7]), "query": np.array([2]), "target": np.array([1])}
    warm = np.ones(3, dtype=bool)
    fresh = oracle_scores(latent, "heldout_edge", req, warm)
    # P(p|u) = 0.9 * pop/pop(taste 0) + 0.1 * pop/pop(all), for the user's one taste
    assert fresh[0] == pytest.approx([0.9 * 5 / 6 + 0.1 * 5 / 7, 0.9 / 6 + 0.1 / 7, 0.1 / 7])
    seen = np.array([[True, False, False]])
    assert oracle_scores(latent, "heldout_edge", req, warm, seen)[0, 0] == 0.0
