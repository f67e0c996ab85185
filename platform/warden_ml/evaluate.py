"""The eval step: model A against baseline B on the gold slices, plus serving cost.

Quality: every arm is scored on the same requests, the same candidate sets and the same k.
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
from warden_ml.serving import Server, measure

SLICES = ("heldout_edge", "cold_start", "next_pin")


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
def score_stack(stack: Stack, table: torch.Tensor, windows: np.ndarray) -> np.ndarray:
    scores = []
    w = torch.from_numpy(windows)
    for i in range(0, w.shape[0], 512):
        items, pad = gather_items(table, w[i : i + 512])
        scores.append(stack.user_state(items, pad) @ table.T)
    return torch.cat(scores).numpy() if scores else np.zeros((0, len(table)), np.float32)


@torch.no_grad()
def score_tower(emb: torch.Tensor, query: np.ndarray) -> np.ndarray:
    return (emb[torch.from_numpy(query)] @ emb.T).numpy()


def rank_metrics(
    scores: np.ndarray, req: dict[str, np.ndarray], cands: np.ndarray, k: int
) -> dict[str, dict[str, float]]:
    full = scores.copy()
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
                st = score_stack(stack, table, req["windows"])
                result["stack"][s] = rank_metrics(st, req, cands[s], k)
                result["tower"][s] = rank_metrics(score_tower(temb, req["query"]), req, cands[s], k)
                if i == 0:
                    st[np.arange(st.shape[0]), req["query"]] = -np.inf
                    top_lists[f"{arm}:{s}"] = np.argsort(-st, axis=1, kind="stable")[:, :k]
            per_seed[arm].append(result)
            r10 = result["stack"].get("heldout_edge", {}).get("sampled", {}).get(f"recall@{k}")
            say(f"eval {arm} model {i + 1}/{len(stacks[arm])}: heldout_edge recall@{k} {r10}")

    quality = _aggregate(per_seed, k)
    serving = _serving(stacks, pins.images, reqs, k, price, spec)
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
    headline = _headline(quality, serving, size, k)
    report = {
        "provenance": PROVENANCE,
        "arms": {arm: {"name": names[arm], "models": arms[arm]} for arm in ("A", "B")},
        "protocol": {
            "k": k,
            "n_candidates": n_cand,
            "candidate_sets": "sampled: target + n-1 uniform random pins (same for A and B); "
            "full: whole catalog minus the query pin; ties count against the target",
            "request": f"last {max_len - 1} engagements before the gold ts + the query pin",
            "latency": "batch size 1, torch.set_num_threads(1), encoders served traced +"
            " frozen for A and B alike; all arms interleaved in blocks of"
            f" {int(spec.p('latency_block', 50))} requests per arm, order shuffled every round"
            " (1 = per request: a small model then always runs right after another one)",
            "price_per_cpu_hour_usd": price,
            "seeds_per_arm": {arm: len(arms[arm]) for arm in ("A", "B")},
        },
        "headline": headline,
        "quality": quality,
        "serving": serving,
        "size": size,
        "shadow": shadow,
    }
    write_json(out / "report.json", report)
    (out / "report.md").write_text(render_markdown(report, names, k))
    plots = _plots(report, names, k, out)
    metrics = {**_flat_headline(headline), "plots": plots, "reports": ["report.json", "report.md"]}
    metrics |= timer.done()
    return write_metrics(out, "eval", metrics)


def _aggregate(per_seed: dict[str, list[dict[str, Any]]], k: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for arm, results in per_seed.items():
        for scorer in ("stack", "tower"):
            for s in SLICES:
                for cs in ("sampled", "full"):
                    vals = [r[scorer][s][cs] for r in results if s in r[scorer]]
                    if not vals:
                        continue
                    for m in (f"recall@{k}", "mrr", f"ndcg@{k}"):
                        node = out.setdefault(arm, {}).setdefault(scorer, {}).setdefault(s, {})
                        node.setdefault(cs, {})[m] = mean_ci([v[m] for v in vals])
                    out[arm][scorer][s][cs]["n_queries"] = vals[0]["n"]
    return out


def _serving(
    stacks: dict[str, list[Stack]],
    images: torch.Tensor,
    reqs: dict[str, dict[str, np.ndarray]],
    k: int,
    price: float,
    spec: Spec,
) -> dict[str, Any]:
    n = int(spec.p("latency_requests", 500))
    windows = np.concatenate([r["windows"] for r in reqs.values()])
    if not len(windows):
        return {}
    w = [torch.from_numpy(windows[i % len(windows)][None]) for i in range(n + 50)]
    servers = {arm: Server(stacks[arm][0], images, k) for arm in ("A", "B")}
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
    def q(arm: str, scorer: str) -> float:
        try:
            return float(quality[arm][scorer]["heldout_edge"]["sampled"][f"recall@{k}"]["mean"])
        except KeyError:
            return math.nan

    def ratio(x: float, y: float) -> float:
        return x / y if y else math.nan

    h: dict[str, Any] = {}
    for scorer in ("stack", "tower"):
        a, b = q("A", scorer), q("B", scorer)
        h[f"heldout_recall@{k}_{scorer}"] = {"A": a, "B": b, "relative_lift": ratio(a - b, b)}
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


def _flat_headline(h: dict[str, Any]) -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in h.items():
        if isinstance(value, dict):
            for sub, v in value.items():
                flat[f"{key}.{sub}"] = v
        else:
            flat[key] = value
    return flat


def _fmt(x: Any, digits: int = 4) -> str:
    if isinstance(x, float):
        return "n/a" if math.isnan(x) else f"{x:.{digits}g}"
    return str(x)


def render_markdown(report: dict[str, Any], names: dict[str, str], k: int) -> str:
    h = report["headline"]
    lines = [
        f"# A/B report: {names['A']} (A) vs {names['B']} (B)",
        "",
        f"> {PROVENANCE}",
        "",
        "## Headline (same run, same requests, same candidates, same k)",
        "",
        "| measure | A | B | A vs B |",
        "| --- | --- | --- | --- |",
    ]
    for scorer in ("stack", "tower"):
        r = h[f"heldout_recall@{k}_{scorer}"]
        lines.append(
            f"| heldout_edge recall@{k} ({scorer}, sampled {report['protocol']['n_candidates']}) "
            f"| {_fmt(r['A'])} | {_fmt(r['B'])} | lift {_fmt(r['relative_lift'] * 100, 3)}% |"
        )
    if "encode_latency" in h:
        e = h["encode_latency"]
        lines += [
            f"| tower encode P50 (ms) | {_fmt(e['A_p50_ms'])} | {_fmt(e['B_p50_ms'])} "
            f"| {_fmt(e['speedup_p50'], 3)}x faster |",
            f"| tower encode P95 (ms) | {_fmt(e['A_p95_ms'])} | {_fmt(e['B_p95_ms'])} "
            f"| {_fmt(e['speedup_p95'], 3)}x faster |",
        ]
        for path in ("tower_only", "encode_only", "request_encode", "request_lookup"):
            c = h[f"cost_per_1k_{path}"]
            lines.append(
                f"| cost per 1k requests, {path} (USD) | {_fmt(c['A'])} | {_fmt(c['B'])} "
                f"| {_fmt(c['reduction'] * 100, 3)}% lower |"
            )
    lines += [
        f"| tower parameters | {h['tower_params']['A']:,} | {h['tower_params']['B']:,} | |",
        f"| tower FLOPs / image | {h['tower_flops']['A']:,} | {h['tower_flops']['B']:,} | |",
        "",
        f"## Quality by slice (mean ± 95% CI over seeds; A {report['protocol']['seeds_per_arm']})",
        "",
        f"| scorer | candidates | slice | arm | recall@{k} | MRR | nDCG@{k} | queries |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for scorer in ("stack", "tower"):
        for cs in ("sampled", "full"):
            for s in SLICES:
                for arm in ("A", "B"):
                    node = report["quality"].get(arm, {}).get(scorer, {}).get(s, {}).get(cs)
                    if not node:
                        continue
                    cells = [
                        f"{_fmt(node[m]['mean'])} ± {_fmt(node[m]['ci95'], 2)}"
                        for m in (f"recall@{k}", "mrr", f"ndcg@{k}")
                    ]
                    lines.append(
                        f"| {scorer} | {cs} | {s} | {arm} | "
                        + " | ".join(cells)
                        + f" | {node['n_queries']} |"
                    )
    if report["serving"]:
        lines += [
            "",
            "## Serving (batch 1, one thread, A and B interleaved; see the protocol)",
            "",
            "| arm | path | P50 ms | P95 ms | CPU-s / request | USD per 1k |",
            "| --- | --- | --- | --- | --- | --- |",
        ]
        for arm in ("A", "B"):
            for path, m in report["serving"][arm].items():
                lines.append(
                    f"| {arm} | {path} | {_fmt(m['p50_ms'])} | {_fmt(m['p95_ms'])} "
                    f"| {_fmt(m['cpu_s_per_request'])} | {_fmt(m['cost_per_1k_usd'])} |"
                )
    if report["shadow"]:
        lines += ["", "## Shadow mode (B beside A on the same requests, full catalog)", ""]
        lines += ["| slice | requests | overlap@k | top-1 agree | A hit/B miss | B hit/A miss |"]
        lines += ["| --- | --- | --- | --- | --- | --- |"]
        for s, m in report["shadow"].items():
            lines.append(
                f"| {s} | {m['requests']} | {_fmt(m[f'mean_overlap@{k}'])} "
                f"| {_fmt(m['top1_agreement'])} | {m['a_hit_b_miss']} | {m['b_hit_a_miss']} |"
            )
    lines += ["", "## Protocol", ""]
    lines += [f"- {key}: {value}" for key, value in report["protocol"].items()]
    lines += ["", f"_{PROVENANCE}_", ""]
    return "\n".join(lines)


def _plots(report: dict[str, Any], names: dict[str, str], k: int, out: Path) -> list[str]:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        say("matplotlib is not installed: no PNG plots")
        return []
    written: list[str] = []
    note = "graph: generated; images: real (sklearn digits)"
    fig, ax = plt.subplots(figsize=(7, 4))
    width = 0.38
    for j, arm in enumerate(("A", "B")):
        means, errs = [], []
        for s in SLICES:
            node = report["quality"].get(arm, {}).get("stack", {}).get(s, {}).get("sampled", {})
            m = node.get(f"recall@{k}", {"mean": math.nan, "ci95": math.nan})
            means.append(m["mean"])
            errs.append(0.0 if math.isnan(m["ci95"]) else m["ci95"])
        xs = [i + (j - 0.5) * width for i in range(len(SLICES))]
        ax.bar(xs, means, width, yerr=errs, capsize=3, label=f"{arm}: {names[arm]}")
    ax.set_xticks(range(len(SLICES)), list(SLICES))
    ax.set_ylabel(f"recall@{k} (sampled {report['protocol']['n_candidates']})")
    ax.set_title(f"Quality by gold slice (mean, 95% CI over seeds)\n{note}", fontsize=9)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "recall.png", dpi=110)
    plt.close(fig)
    written.append("recall.png")
    if report["serving"]:
        fig, axes = plt.subplots(1, 2, figsize=(9, 4))
        paths = ("tower_only", "encode_only", "request_encode", "request_lookup")
        for j, arm in enumerate(("A", "B")):
            xs = [i + (j - 0.5) * width for i in range(len(paths))]
            srv = report["serving"][arm]
            axes[0].bar(xs, [srv[p]["p50_ms"] for p in paths], width, label=f"{arm} P50")
            axes[0].scatter(xs, [srv[p]["p95_ms"] for p in paths], marker="_", s=200, c="k")
            axes[1].bar(xs, [srv[p]["cost_per_1k_usd"] for p in paths], width, label=arm)
        for ax, label in ((axes[0], "ms per request (bar P50, tick P95)"),
                          (axes[1], "USD per 1k requests")):  # fmt: skip
            ax.set_xticks(range(len(paths)), list(paths), fontsize=8)
            ax.set_ylabel(label)
            ax.set_yscale("log")
            ax.legend()
        fig.suptitle(f"Serving at batch 1, one thread\n{note}", fontsize=9)
        fig.tight_layout()
        fig.savefig(out / "serving.png", dpi=110)
        plt.close(fig)
        written.append("serving.png")
    return written
