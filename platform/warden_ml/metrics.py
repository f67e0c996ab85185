"""Ranking metrics and confidence intervals (no scipy: the ML image does not carry it)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

# Two-sided 95% Student-t quantiles by degrees of freedom.
_T95 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306,
        9: 2.262, 10: 2.228, 15: 2.131, 20: 2.086, 30: 2.042}  # fmt: skip


def target_ranks(scores: np.ndarray, target_col: np.ndarray) -> np.ndarray:
    """0-based rank of each row's target among its candidates (ties count against it:
    a candidate scoring equal to the target ranks ahead of it, so ties never flatter)."""
    target_score = scores[np.arange(scores.shape[0]), target_col]
    better_or_equal = (scores >= target_score[:, None]).sum(axis=1) - 1
    return better_or_equal.astype(np.int64)


def recall_at_k(ranks: np.ndarray, k: int = 10) -> float:
    return float(np.mean(ranks < k)) if ranks.size else float("nan")


def mrr(ranks: np.ndarray) -> float:
    return float(np.mean(1.0 / (ranks + 1))) if ranks.size else float("nan")


def ndcg_at_k(ranks: np.ndarray, k: int = 10) -> float:
    """One relevant item per query: DCG = 1/log2(rank+2) inside the top k; IDCG = 1."""
    if not ranks.size:
        return float("nan")
    gains = np.where(ranks < k, 1.0 / np.log2(ranks + 2.0), 0.0)
    return float(np.mean(gains))


def all_metrics(ranks: np.ndarray, k: int = 10) -> dict[str, float]:
    return {
        f"recall@{k}": recall_at_k(ranks, k),
        "mrr": mrr(ranks),
        f"ndcg@{k}": ndcg_at_k(ranks, k),
        "n": int(ranks.size),
    }


def t95(df: int) -> float:
    if df <= 0:
        return float("nan")
    keys = sorted(_T95)
    for key in keys:
        if df <= key:
            return _T95[key]
    return 1.96


def mean_ci(values: Sequence[float]) -> dict[str, float]:
    """Mean and 95% t-interval over seeds (half-width NaN with one seed)."""
    x = np.asarray([v for v in values if not math.isnan(v)], dtype=np.float64)
    if x.size == 0:
        return {"mean": float("nan"), "ci95": float("nan"), "n_seeds": 0}
    half = float(t95(x.size - 1) * x.std(ddof=1) / math.sqrt(x.size)) if x.size > 1 else math.nan
    return {"mean": float(x.mean()), "ci95": half, "n_seeds": int(x.size), "values": x.tolist()}


def percentile(samples: Sequence[float], q: float) -> float:
    return float(np.percentile(np.asarray(samples, dtype=np.float64), q))
