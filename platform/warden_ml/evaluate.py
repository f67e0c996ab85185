"""The eval step: model A against baseline B on the gold slices, plus serving cost.

Quality: every arm, and the ceiling and floor (``baselines``: an oracle on the generator's
latent model, popularity, random), is scored on the same requests, the same candidate sets
and the same k; every model metric is also reported as the share of the oracle-minus-random
gap it closes. The full catalog is the headline; sampled candidates are secondary.
For each gold row the request is the user's last engagements before the gold timestamp
with the query pin appended; two candidate sets are ranked: ``sampled`` (the target plus
``n_candidates - 1`` random pins, seeded, identical across arms) and ``full`` (the whole
catalog). Ties count against the target. Two scorers: ``stack`` (the sequence model's
user state against projected pin embeddings) and ``tower`` (query-pin tower embedding
against candidate tower embeddings, i.e. the encoder alone). Metrics are averaged over
the models given per arm (one per training seed) with 95% t-intervals.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch

from warden_ml import PROVENANCE
from warden_ml.baselines import (
    BASELINES,
    Latent,
    baseline_scores,
    read_latent,
    seen_by_user,
    share_of_gap,
    wants_oracle,
)
from warden_ml.common import (
    Reader,
    Spec,
    Timer,
    load_model,
    say,
    seed_everything,
    write_json,
    write_metrics,
)
from warden_ml.data import (
    Histories,
    gather_items,
    pad_window,
    read_engagements,
    read_gold,
    read_pins,
)
from warden_ml.metrics import all_metrics, mean_ci, target_ranks
from warden_ml.models import Stack, flops, n_params, stack_from_blob
from warden_ml.report import SLICES, plots, render_markdown
from warden_ml.serving import Server, measure


def _paths(model_in: Any, arm: str) -> list[str]:
    value = model_in.get(arm) if isinstance(model_in, dict) else None
    if value is None:
        raise ValueError(f'eval needs model_in = {{"A": [...], "B": [...]}}; missing {arm!r}')
    return [str(v) for v in (value if isinstance(value, list) else [value])]


def build_requests(
    gold: pl.DataFrame, hist: Histories, pins_index: Any, max_len: int, per_slice: int
) -> dict[str, dict[str, np.ndarray]]:
    out: dict[str, dict[str, np.ndarray]] = {}
    for name in SLICES:
        rows = gold.filter(pl.col("slice") == name).head(per_slice)
        q = pins_index(rows["query_pin_id"].to_numpy().astype(np.int64))
        t = pins_index(rows["target_pin_id"].to_numpy().astype(np.int64))
        users = rows["user_id"].to_numpy().astype(np.int64)
        ts = rows["ts"].cast(pl.Int64).to_numpy()
        keep = (q >= 0) & (t >= 0) & (q != t)
        windows = [
            pad_window(np.append(hist.before(int(u), int(s), max_len - 1), qq), max_len)
            for u, s, qq, ok in zip(users, ts, q, keep, strict=True)
            if ok
        ]
        out[name] = {
            "windows": np.stack(windows) if windows else np.zeros((0, max_len), np.int64),
            "query": q[keep],
            "target": t[keep],
            "user": users[keep],
        }
    return out


def sample_candidates(
    query: np.ndarray, target: np.ndarray, n_pins: int, n_cand: int, rng: np.random.Generator
) -> np.ndarray:
    """(Q, n_cand) rows: column 0 the target, the rest uniform pins other than the target
    and the query (with replacement across columns; identical for every arm)."""
    draws = rng.integers(0, n_pins - 2, (query.shape[0], n_cand - 1))
    lo = np.minimum(query, target)[:, None]
    hi = np.maximum(query, target)[:, None]
    draws = draws + (draws >= lo)
    draws = draws + (draws >= hi)
    return np.concatenate([target[:, None], draws], axis=1)


@torch.no_grad()
def encode_all(fn: Any, images: torch.Tensor) -> torch.Tensor:
    return torch.cat([fn(images[i : i + 1024]) for i in range(0, len(images), 1024)])


@torch.no_grad()
def score_stack(
    stack: Stack, table: torch.Tensor, windows: np.ndarray, pin_ids: np.ndarray | None = None
) -> np.ndarray:
    """(Q, N) the stack's scores: user state . pin embedding, plus the item prior."""
    scores = []
    w = torch.from_numpy(windows)
    bias = stack.prior.for_pins(pin_ids) if pin_ids is not None else torch.zeros(len(table))
    keys = stack.keys(table)
    for i in range(0, w.shape[0], 512):
        items, pad = gather_items(table, w[i : i + 512])
        scores.append(stack.user_state(items, pad) @ keys.T + bias)
    return torch.cat(scores).numpy() if scores else np.zeros((0, len(table)), np.float32)


@torch.no_grad()
def score_tower(emb: torch.Tensor, query: np.ndarray) -> np.ndarray:
    return (emb[torch.from_numpy(query)] @ emb.T).numpy()


def rank_metrics(
    scores: np.ndarray,
    req: dict[str, np.ndarray],
    cands: np.ndarray,
    k: int,
    seen: np.ndarray | None = None,
) -> dict[str, dict[str, float]]:
    """Full catalog (never the query pin, nor a pin the user engaged in training when
    ``seen`` marks them) and sampled candidates."""
    full = scores.copy()
    if seen is not None:
        full[seen] = -np.inf
    full[np.arange(full.shape[0]), req["query"]] = -np.inf
    sampled = np.take_along_axis(scores, cands, axis=1)
    return {
        "full": all_metrics(target_ranks(full, req["target"]), k),
        "sampled": all_metrics(target_ranks(sampled, np.zeros(len(cands), np.int64)), k),
    }


def evaluate(spec: Spec, out: Path, client: Reader) -> dict[str, Any]:
    timer = Timer()
    seed_everything(spec.seed, spec.p("threads", None))
    k = int(spec.p("k", 10))
    n_cand = int(spec.p("n_candidates", 100))
    price = float(spec.p("price_per_cpu_hour", 0.05))
    names = {"A": str(spec.p("name_a", "A")), "B": str(spec.p("name_b", "B"))}
    arms = {arm: _paths(spec.model_in, arm) for arm in ("A", "B")}
    stacks = {arm: [stack_from_blob(load_model(p)) for p in paths] for arm, paths in arms.items()}
    max_len = stacks["A"][0].seq.max_len
    pins = read_pins(client, spec, "evaluation", with_digits=False)
    gold = read_gold(client, spec, "evaluation")
    hist = Histories.build(read_engagements(client, spec, "evaluation"), pins)
    reqs = build_requests(gold, hist, pins.index, max_len, int(spec.p("max_queries", 2000)))
    rng = np.random.default_rng(spec.seed)
    n = pins.images.shape[0]
    cands = {s: sample_candidates(r["query"], r["target"], n, n_cand, rng) for s, r in reqs.items()}
    say("requests: " + ", ".join(f"{s} {len(r['query'])}" for s, r in reqs.items()))
    latent = read_latent(client, spec, pins) if wants_oracle(spec) else None
    engaged = np.bincount(hist.items, minlength=n)
    baselines = _baselines(reqs, cands, n, engaged, latent, k, spec.seed, hist)
    # every scorer, the models included, skips the pins the request's user engaged in training
    seen = {s: seen_by_user(r["user"], hist, n) for s, r in reqs.items() if s != "cold_start"}

    # quality[arm][scorer][candset][slice][metric] -> per-seed values
    per_seed: dict[str, list[dict[str, Any]]] = {"A": [], "B": []}
    top_lists: dict[str, np.ndarray] = {}
    for arm in ("A", "B"):
        for i, stack in enumerate(stacks[arm]):
            result: dict[str, Any] = {"stack": {}, "tower": {}}
            table = encode_all(stack.encode, pins.images)
            temb = encode_all(stack.tower, pins.images)
            for s, req in reqs.items():
                if not len(req["query"]):
                    continue
                st = score_stack(stack, table, req["windows"], pins.ids)
                result["stack"][s] = rank_metrics(st, req, cands[s], k, seen.get(s))
                tower_scores = score_tower(temb, req["query"])
                result["tower"][s] = rank_metrics(tower_scores, req, cands[s], k, seen.get(s))
                if i == 0:
                    if s in seen:
                        st[seen[s]] = -np.inf
                    st[np.arange(st.shape[0]), req["query"]] = -np.inf
                    top_lists[f"{arm}:{s}"] = np.argsort(-st, axis=1, kind="stable")[:, :k]
            per_seed[arm].append(result)
            r10 = result["stack"].get("heldout_edge", {}).get("sampled", {}).get(f"recall@{k}")
            say(f"eval {arm} model {i + 1}/{len(stacks[arm])}: heldout_edge recall@{k} {r10}")

    quality = _aggregate(per_seed, k, baselines)
    serving = _serving(stacks, pins.images, reqs, k, price, spec, pins.ids)
    shadow = _shadow(top_lists, reqs, k) if spec.p("shadow", True) else None
    size = {
        arm: {
            "tower_params": n_params(stacks[arm][0].tower),
            "stack_params": n_params(stacks[arm][0]),
            "tower_flops": flops(stacks[arm][0].tower, pins.images[:1]),
            "encode_flops": flops(stacks[arm][0].projector, stacks[arm][0].tower(pins.images[:1]))
            + flops(stacks[arm][0].tower, pins.images[:1]),
            "tower_kind": stacks[arm][0].tower_kind,
        }
        for arm in ("A", "B")
    }
    training = {
        arm: [load_model(p).get("training", {}) for p in paths] for arm, paths in arms.items()
    }
    headline = _headline(quality, serving, size, k)
    headline["training_budget"] = training_budgets(training)
    report = {
        "provenance": PROVENANCE,
        "arms": {arm: {"name": names[arm], "models": arms[arm]} for arm in ("A", "B")},
        "protocol": {
            "k": k,
            "n_candidates": n_cand,
            "candidate_sets": "full (headline): whole catalog minus the query pin, exact top-k; "
            "sampled (secondary): target + n-1 uniform random pins (same for every scorer); "
            "ties count against a model's target; baselines break ties at random",
            "baselines": "oracle: the generator's own probability of each pin for the request, "
            "from its latent model (evaluation-only datasets latent_users, latent_pins), never a "
            "pin the user engaged in training (gold pairs have no training events; every model "
            "skips those pins too, on the full catalog); "
            "popularity: training engagements per pin; random: seeded uniform scores"
            + ("" if latent is not None else " (oracle NOT run: latent datasets not given)"),
            "share_of_gap": "(model - random) / (oracle - random), per metric and seed",
            "request": f"last {max_len - 1} engagements before the gold ts + the query pin",
            "latency": "batch size 1, one thread, every request path served by ONNX Runtime"
            " (exported once) for A and B alike; all arms interleaved in blocks of"
            f" {int(spec.p('latency_block', 50))} requests per arm, order shuffled every round"
            " (1 = per request: a small model then always runs right after another one)",
            "price_per_cpu_hour_usd": price,
            "seeds_per_arm": {arm: len(arms[arm]) for arm in ("A", "B")},
        },
        "headline": headline,
        "quality": quality,
        "training": training,
        "serving": serving,
        "size": size,
        "shadow": shadow,
    }
    write_json(out / "report.json", report)
    (out / "report.md").write_text(render_markdown(report, names, k))
    written = plots(report, names, k, out)
    metrics = {
        **_flat_headline(headline),
        "plots": written,
        "reports": ["report.json", "report.md"],
    }
    metrics |= timer.done()
    return write_metrics(out, "eval", metrics)


METRICS = ("recall@{k}", "mrr", "ndcg@{k}")


def _metric_names(k: int) -> tuple[str, ...]:
    return tuple(m.format(k=k) for m in METRICS)


def _baselines(
    reqs: dict[str, dict[str, np.ndarray]],
    cands: dict[str, np.ndarray],
    n_pins: int,
    engaged: np.ndarray,
    latent: Latent | None,
    k: int,
    seed: int,
    hist: Histories | None = None,
) -> dict[str, dict[str, Any]]:
    """baseline -> slice -> candidate set -> metrics, on the models' requests and candidates."""
    out: dict[str, dict[str, Any]] = {}
    seen = {
        s: seen_by_user(r["user"], hist, n_pins)
        for s, r in reqs.items()
        if hist is not None and s != "cold_start"
    }
    for j, name in enumerate(BASELINES):
        rng = np.random.default_rng([seed, 7919, j])
        for s, req in reqs.items():
            if not len(req["query"]):
                continue
            scores = baseline_scores(name, s, req, n_pins, engaged, latent, rng, seen.get(s))
            if scores is None:
                continue
            out.setdefault(name, {})[s] = rank_metrics(scores, req, cands[s], k)
        if name in out:
            r = out[name].get("heldout_edge", {}).get("full", {}).get(f"recall@{k}")
            say(f"baseline {name}: heldout_edge full-catalog recall@{k} {r}")
    return out


def _aggregate(
    per_seed: dict[str, list[dict[str, Any]]], k: int, baselines: dict[str, dict[str, Any]]
) -> dict[str, Any]:
    """arm -> scorer -> slice -> candidate set -> metric -> mean/CI over seeds, with each
    metric's share of the oracle-minus-random gap (per seed, then mean/CI) beside it."""
    names = _metric_names(k)
    out: dict[str, Any] = {}
    for base, slices in baselines.items():
        for s, sets in slices.items():
            for cs, vals in sets.items():
                node = out.setdefault("baselines", {}).setdefault(base, {}).setdefault(s, {})
                node[cs] = {m: mean_ci([vals[m]]) for m in names} | {"n_queries": vals["n"]}

    def floor_ceiling(s: str, cs: str, m: str) -> tuple[float, float]:
        try:
            return baselines["oracle"][s][cs][m], baselines["random"][s][cs][m]
        except KeyError:
            return math.nan, math.nan

    for arm, results in per_seed.items():
        for scorer in ("stack", "tower"):
            for s in SLICES:
                for cs in ("sampled", "full"):
                    vals = [r[scorer][s][cs] for r in results if cs in r[scorer].get(s, {})]
                    if not vals:
                        continue
                    node = out.setdefault(arm, {}).setdefault(scorer, {}).setdefault(s, {})
                    node[cs] = {m: mean_ci([v[m] for v in vals]) for m in names}
                    node[cs]["share_of_gap"] = {
                        m: mean_ci([share_of_gap(v[m], *floor_ceiling(s, cs, m)) for v in vals])
                        for m in names
                    }
                    node[cs]["n_queries"] = vals[0]["n"]
    for slices in out.get("baselines", {}).values():
        for s, sets in slices.items():
            for cs, node in sets.items():
                node["share_of_gap"] = {
                    m: mean_ci([share_of_gap(node[m]["mean"], *floor_ceiling(s, cs, m))])
                    for m in names
                }
    return out


def _serving(
    stacks: dict[str, list[Stack]],
    images: torch.Tensor,
    reqs: dict[str, dict[str, np.ndarray]],
    k: int,
    price: float,
    spec: Spec,
    pin_ids: np.ndarray | None = None,
) -> dict[str, Any]:
    n = int(spec.p("latency_requests", 500))
    windows = np.concatenate([r["windows"] for r in reqs.values()])
    if not len(windows):
        return {}
    w = [torch.from_numpy(windows[i % len(windows)][None]) for i in range(n + 50)]
    servers = {arm: Server(stacks[arm][0], images, k, pin_ids) for arm in ("A", "B")}
    # The request's image arrives ready; picking it out is not the encoder's time.
    single = [images[int(x[0, -1]) : int(x[0, -1]) + 1].contiguous() for x in w]
    fns: dict[str, Any] = {}
    for arm, srv in servers.items():
        fns[f"{arm}:tower_only"] = lambda i, srv=srv: srv.tower_one(single[i])
        fns[f"{arm}:encode_only"] = lambda i, srv=srv: srv.encode_one(single[i])
        fns[f"{arm}:request_encode"] = lambda i, srv=srv: srv.request_encode(w[i])
        fns[f"{arm}:request_lookup"] = lambda i, srv=srv: srv.request_lookup(w[i])
    block = int(spec.p("latency_block", 50))
    say(f"measuring serving latency: {n} requests per path, batch 1, one thread, block {block}")
    raw = measure(fns, n, warmup=50, price_per_cpu_hour=price, block=block)
    out: dict[str, Any] = {}
    for key, value in raw.items():
        arm, path = key.split(":")
        out.setdefault(arm, {})[path] = value
    return out


def _shadow(top: dict[str, np.ndarray], reqs: dict[str, Any], k: int) -> dict[str, Any]:
    """B runs beside A on the same requests: top-k overlap, top-1 agreement, hit deltas."""
    out: dict[str, Any] = {}
    for s, req in reqs.items():
        a, b = top.get(f"A:{s}"), top.get(f"B:{s}")
        if a is None or b is None:
            continue
        overlap = np.array([len(set(x) & set(y)) / k for x, y in zip(a, b, strict=True)])
        hit_a = (a == req["target"][:, None]).any(axis=1)
        hit_b = (b == req["target"][:, None]).any(axis=1)
        out[s] = {
            "requests": int(len(a)),
            f"mean_overlap@{k}": float(overlap.mean()),
            "top1_agreement": float(np.mean(a[:, 0] == b[:, 0])),
            "a_hit_b_miss": int((hit_a & ~hit_b).sum()),
            "b_hit_a_miss": int((hit_b & ~hit_a).sum()),
            f"delta_recall@{k}_full": float(hit_a.mean() - hit_b.mean()),
        }
    return out


def _headline(quality: dict[str, Any], serving: dict[str, Any], size: dict[str, Any], k: int):  # type: ignore[no-untyped-def]
    """Full-catalog quality on held-out edges beside the ceiling and floor (the headline),
    the sampled-candidate numbers (secondary), then latency, cost and size."""
    metric = f"recall@{k}"

    def node(path: tuple[str, ...]) -> dict[str, Any]:
        cur: Any = quality
        for key in path:
            cur = cur.get(key, {}) if isinstance(cur, dict) else {}
        return cur if isinstance(cur, dict) else {}

    def ratio(x: float, y: float) -> float:
        return x / y if y else math.nan

    h: dict[str, Any] = {}
    for cs in ("full", "sampled"):
        row: dict[str, Any] = {}
        for base in BASELINES:
            n = node(("baselines", base, "heldout_edge", cs))
            row[base] = n.get(metric, {}).get("mean", math.nan)
            row[f"share_{base}"] = n.get("share_of_gap", {}).get(metric, {}).get("mean", math.nan)
        for scorer in ("stack", "tower"):
            for arm in ("A", "B"):
                n = node((arm, scorer, "heldout_edge", cs))
                row[f"{arm}_{scorer}"] = n.get(metric, {}).get("mean", math.nan)
                row[f"{arm}_{scorer}_ci95"] = n.get(metric, {}).get("ci95", math.nan)
                share = n.get("share_of_gap", {}).get(metric, {})
                row[f"share_{arm}_{scorer}"] = share.get("mean", math.nan)
                row[f"share_{arm}_{scorer}_ci95"] = share.get("ci95", math.nan)
            a, b = row[f"A_{scorer}"], row[f"B_{scorer}"]
            row[f"lift_{scorer}"] = ratio(a - b, b)
            sa, sb = row[f"share_A_{scorer}"], row[f"share_B_{scorer}"]
            row[f"share_gain_points_{scorer}"] = sa - sb
            row[f"share_gain_relative_{scorer}"] = ratio(sa - sb, abs(sb))
        h[f"heldout_{metric}_{cs}"] = row
    if serving:
        ea, eb = serving["A"]["tower_only"], serving["B"]["tower_only"]
        h["encode_latency"] = {
            "A_p50_ms": ea["p50_ms"], "B_p50_ms": eb["p50_ms"],
            "A_p95_ms": ea["p95_ms"], "B_p95_ms": eb["p95_ms"],
            "speedup_p50": ratio(eb["p50_ms"], ea["p50_ms"]),
            "speedup_p95": ratio(eb["p95_ms"], ea["p95_ms"]),
        }  # fmt: skip
        for path in ("tower_only", "encode_only", "request_encode", "request_lookup"):
            ca, cb = serving["A"][path]["cost_per_1k_usd"], serving["B"][path]["cost_per_1k_usd"]
            h[f"cost_per_1k_{path}"] = {"A": ca, "B": cb, "reduction": 1 - ratio(ca, cb)}
    h["tower_params"] = {arm: size[arm]["tower_params"] for arm in ("A", "B")}
    h["tower_flops"] = {arm: size[arm]["tower_flops"] for arm in ("A", "B")}
    return h


def training_budgets(training: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """Steps, examples and CPU-seconds (mean over each arm's models): the generic tower (B)
    against the whole domain path (A: domain tower + align + post-train)."""

    def mean(records: list[dict[str, Any]], pick: Any, key: str) -> float:
        vals = [sum(float(p.get(key, 0)) for p in pick(r.get("phases", []))) for r in records]
        return float(np.mean(vals)) if vals else math.nan

    def generic(phases: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [p for p in phases if p.get("name") == "generic tower"]

    def everything(phases: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return list(phases)

    a, b = training.get("A", []), training.get("B", [])
    out: dict[str, Any] = {}
    for key in ("steps", "examples", "cpu_s"):
        dom, gen = mean(a, everything, key), mean(b, generic, key)
        out[key] = {"A_domain_path": dom, "B_generic_tower": gen,
                    "B_over_A": gen / dom if dom else math.nan}  # fmt: skip
    towers = [p for r in b for p in generic(r.get("phases", []))]
    out["B_stopped_by"] = [p.get("stopped_by") for p in towers]
    # the best validation loss came at the last check: the budget, not convergence, ended it
    out["B_still_improving"] = [
        bool(p.get("best_val_step")) and p.get("best_val_step") == p.get("steps") for p in towers
    ]
    out["B_budget"] = b[0].get("budget") if b else None
    return out


def _flat_headline(h: dict[str, Any]) -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in h.items():
        if isinstance(value, dict):
            for sub, v in value.items():
                flat[f"{key}.{sub}"] = v
        else:
            flat[key] = value
    return flat
