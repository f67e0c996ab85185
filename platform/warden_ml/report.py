"""The A/B report's Markdown and PNG renderings (the JSON is the eval's ``report.json``).

Every rendering says that the taste graph is generated and the images are real.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from warden_ml import PROVENANCE
from warden_ml.baselines import BASELINES
from warden_ml.common import say

SLICES = ("heldout_edge", "cold_start", "next_pin")
NOTE = "graph: GENERATED; images: REAL (sklearn digits)"


def _fmt(x: Any, digits: int = 4) -> str:
    if isinstance(x, float):
        return "n/a" if math.isnan(x) else f"{x:.{digits}g}"
    return str(x)


def _pct(x: Any) -> str:
    return "n/a" if not isinstance(x, float) or math.isnan(x) else f"{x * 100:.1f}%"


def _ci(value: Any, ci: Any) -> str:
    if isinstance(ci, float) and not math.isnan(ci):
        return f"{_fmt(value)} ± {_fmt(ci, 2)}"
    return _fmt(value)


def _row(*cells: object) -> str:
    """One row of a Markdown table (an empty cell as `| |`)."""
    return "|" + "|".join(f" {c} " if c != "" else " " for c in map(str, cells)) + "|"


def _head(*names: str) -> list[str]:
    """A Markdown table's header and the line under it."""
    return [_row(*names), _row(*["---"] * len(names))]


def _quality_rows(h: dict[str, Any], names: dict[str, str]) -> list[str]:
    lines = _head("scorer", "recall", "share of oracle-random gap")
    for base in BASELINES:
        lines.append(_row(base, _fmt(h[base]), _pct(h[f"share_{base}"])))
    for scorer in ("stack", "tower"):
        for arm in ("A", "B"):
            key = f"{arm}_{scorer}"
            share = f"{_pct(h[f'share_{key}'])} ± {_pct(h[f'share_{key}_ci95'])}"
            lines.append(
                _row(f"{arm} {names[arm]} ({scorer})", _ci(h[key], h[f"{key}_ci95"]), share)
            )
    for scorer in ("stack", "tower"):
        points = _fmt(h[f"share_gain_points_{scorer}"] * 100, 3)
        relative = _pct(h[f"share_gain_relative_{scorer}"])
        gain = f"{points} points of the gap ({relative} relative)"
        lines.append(_row(f"A vs B ({scorer})", f"lift {_pct(h[f'lift_{scorer}'])}", gain))
    return lines


def _training_rows(training: dict[str, Any], names: dict[str, str]) -> list[str]:
    """Both arms' training budgets (first seed's model; totals per phase)."""
    lines = _head("arm", "phase", "objective", "steps", "examples", "CPU-s", "stopped by")
    for arm in ("A", "B"):
        records = training.get(arm) or [{}]
        phases = records[0].get("phases", [])
        if not phases:
            lines.append(_row(arm, "(no training record in the artifact)", *[""] * 5))
        for ph in phases:
            cpu = _fmt(float(ph.get("cpu_s", math.nan)), 4)
            steps, examples = f"{ph.get('steps', 'n/a'):,}", f"{ph.get('examples', 'n/a'):,}"
            lines.append(
                _row(
                    f"{arm} {names[arm]}",
                    ph.get("name"),
                    ph.get("objective", ""),
                    steps,
                    examples,
                    cpu,
                    ph.get("stopped_by", "fixed steps"),
                )
            )
        if budget := records[0].get("budget"):
            lines.append(
                _row(
                    f"{arm} {names[arm]}",
                    "budget given to the tower",
                    budget.get("basis", ""),
                    *(budget.get(key, "n/a") for key in ("steps", "examples", "cpu_s")),
                    "",
                )
            )
    return lines


def _budget_rows(b: dict[str, Any], names: dict[str, str]) -> list[str]:
    if not b:
        return ["(no training records in the artifacts)"]
    lines = _head(
        "measure",
        f"A {names['A']}: domain tower + align + post-train",
        f"B {names['B']}: generic tower",
        "B / A",
    )
    for key, label in (("steps", "steps"), ("examples", "examples"), ("cpu_s", "CPU-seconds")):
        row = b.get(key, {})
        a, g = row.get("A_domain_path", math.nan), row.get("B_generic_tower", math.nan)
        num = _fmt if key == "cpu_s" else _int
        lines.append(_row(label, num(a), num(g), _fmt(row.get("B_over_A"), 3)))
    lines += [
        "",
        f"B's tower budget: {b.get('B_budget')}; it stopped by: "
        + "; ".join(str(x) for x in b.get("B_stopped_by", [])),
    ]
    still = b.get("B_still_improving", [])
    if any(still):
        lines += [
            "",
            f"**Note:** in {sum(still)} of {len(still)} seeds B's validation loss was still "
            "improving when its budget ran out: a larger budget could make B stronger.",
        ]
    return lines


def _verdict(h: dict[str, Any]) -> list[str]:
    """The issue's bar: A closes at least 30% more of the gap than B (stack, full catalog),
    and by more than the seeds' noise (A's 95% interval clear of B's)."""
    rel, pts = h.get("share_gain_relative_stack", math.nan), h.get("share_gain_points_stack")
    a, b = h.get("share_A_stack", math.nan), h.get("share_B_stack", math.nan)
    ca, cb = h.get("share_A_stack_ci95", math.nan), h.get("share_B_stack_ci95", math.nan)
    bar = "Bar (A's stack closes >= 30% more of the oracle-random gap than B's, full catalog)"
    if not isinstance(rel, float) or math.isnan(rel) or not isinstance(pts, float):
        return [f"{bar}: not measurable in this run."]
    on_point = rel >= 0.30 and pts > 0 and a > 0  # less than random is never a win
    if isinstance(ca, float) and isinstance(cb, float) and not (math.isnan(ca) or math.isnan(cb)):
        clear = a - ca > b + cb
        noise = "" if clear else ", within the seeds' noise (the 95% intervals overlap)"
    else:
        clear, noise = False, " (one seed per arm: no interval, so not established)"
    met = "met" if on_point and clear else "NOT met"
    return [
        f"{bar}: **{met}**: A closes {_pct(a)}, B {_pct(b)} of the gap "
        f"({_fmt(pts * 100, 3)} points, {_pct(rel)} relative{noise if on_point else ''})."
    ]


def _int(x: Any) -> str:
    return "n/a" if not isinstance(x, int | float) or math.isnan(x) else f"{x:,.0f}"


def render_markdown(report: dict[str, Any], names: dict[str, str], k: int) -> str:
    h = report["headline"]
    proto = report["protocol"]
    lines = [
        f"# A/B report: {names['A']} (A) vs {names['B']} (B)",
        "",
        f"> **The taste graph is generated; the pin images are real.** {PROVENANCE}",
        "",
        f"## Headline: held-out edges, full catalog, exact top-{k} (recall@{k})",
        "",
        "The oracle ranks by the generator's own probabilities (its latent model): no model can "
        "do better on average. Random is the floor. Each model's share of the gap between them "
        "is the comparable number; raw recall on a generated graph is not.",
        "",
        *_quality_rows(h[f"heldout_recall@{k}_full"], names),
        "",
        *_verdict(h[f"heldout_recall@{k}_full"]),
        "",
        "## Training budgets (the fair baseline)",
        "",
        *_budget_rows(h.get("training_budget", {}), names),
        "",
        "Per phase (first model of each arm; curves in `training.png`):",
        "",
        *_training_rows(report.get("training", {}), names),
        "",
        f"## Secondary: held-out edges, {proto['n_candidates']} sampled candidates",
        "",
        *_quality_rows(h[f"heldout_recall@{k}_sampled"], names),
        "",
        "## Serving and size",
        "",
        *_head("measure", "A", "B", "A vs B"),
    ]
    if "encode_latency" in h:
        e = h["encode_latency"]
        for p in ("p50", "p95"):
            lines.append(
                _row(
                    f"tower encode {p.upper()} (ms)",
                    _fmt(e[f"A_{p}_ms"]),
                    _fmt(e[f"B_{p}_ms"]),
                    f"{_fmt(e[f'speedup_{p}'], 3)}x faster",
                )
            )
        for path in ("tower_only", "encode_only", "request_encode", "request_lookup"):
            c = h[f"cost_per_1k_{path}"]
            lower = f"{_fmt(c['reduction'] * 100, 3)}% lower"
            lines.append(
                _row(f"cost per 1k requests, {path} (USD)", _fmt(c["A"]), _fmt(c["B"]), lower)
            )
    for key, label in (
        ("tower_params", "tower parameters"),
        ("tower_flops", "tower FLOPs / image"),
    ):
        lines.append(_row(label, f"{h[key]['A']:,}", f"{h[key]['B']:,}", ""))
    lines += [
        "",
        f"## Quality by slice (mean ± 95% CI over seeds; seeds {proto['seeds_per_arm']})",
        "",
        *_head(
            "candidates",
            "slice",
            "scorer",
            f"recall@{k}",
            "MRR",
            f"nDCG@{k}",
            f"share of gap (recall@{k})",
            "queries",
        ),
    ]
    q = report["quality"]
    for cs in ("full", "sampled"):
        for s in SLICES:
            rows: list[tuple[str, dict[str, Any]]] = [
                (base, q.get("baselines", {}).get(base, {}).get(s, {}).get(cs, {}))
                for base in BASELINES
            ]
            rows += [
                (
                    f"{arm} {names[arm]} ({scorer})",
                    q.get(arm, {}).get(scorer, {}).get(s, {}).get(cs, {}),
                )
                for scorer in ("stack", "tower")
                for arm in ("A", "B")
            ]
            for label, node in rows:
                if not node:
                    continue
                cells = [
                    _ci(node[m]["mean"], node[m]["ci95"])
                    for m in (f"recall@{k}", "mrr", f"ndcg@{k}")
                ]
                share = node.get("share_of_gap", {}).get(f"recall@{k}", {})
                share_mean = _pct(share.get("mean", math.nan))
                lines.append(_row(cs, s, label, *cells, share_mean, node["n_queries"]))
    if report["serving"]:
        lines += [
            "",
            "## Serving (batch 1, one thread, A and B interleaved; see the protocol)",
            "",
            *_head("arm", "path", "P50 ms", "P95 ms", "CPU-s / request", "USD per 1k"),
        ]
        for arm in ("A", "B"):
            for path, m in report["serving"][arm].items():
                measures = ("p50_ms", "p95_ms", "cpu_s_per_request", "cost_per_1k_usd")
                lines.append(_row(arm, path, *(_fmt(m[key]) for key in measures)))
    if report["shadow"]:
        lines += ["", "## Shadow mode (B beside A on the same requests, full catalog)", ""]
        lines += _head(
            "slice", "requests", "overlap@k", "top-1 agree", "A hit/B miss", "B hit/A miss"
        )
        for s, m in report["shadow"].items():
            lines.append(
                _row(
                    s,
                    m["requests"],
                    _fmt(m[f"mean_overlap@{k}"]),
                    _fmt(m["top1_agreement"]),
                    m["a_hit_b_miss"],
                    m["b_hit_a_miss"],
                )
            )
    lines += ["", "## Protocol", ""]
    lines += [f"- {key}: {value}" for key, value in proto.items()]
    lines += ["", f"_The taste graph is generated; the pin images are real. {PROVENANCE}_", ""]
    return "\n".join(lines)


def plots(report: dict[str, Any], names: dict[str, str], k: int, out: Path) -> list[str]:
    """recall.png (full catalog, with ceiling and floor), training.png, serving.png."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        say("matplotlib is not installed: no PNG plots")
        return []
    written: list[str] = []
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    q = report["quality"]
    width = 0.12
    scorers = [("baselines", b) for b in BASELINES]
    scorers += [(a, sc) for sc in ("stack", "tower") for a in ("A", "B")]
    labels = [*BASELINES, "A stack", "B stack", "A tower", "B tower"]
    for ax, cs in zip(axes, ("full", "sampled"), strict=True):
        for j, (label, (top, sub)) in enumerate(zip(labels, scorers, strict=True)):
            means, errs = [], []
            for s in SLICES:
                node = q.get(top, {}).get(sub, {}).get(s, {}).get(cs, {})
                m = node.get(f"recall@{k}", {"mean": math.nan, "ci95": math.nan})
                means.append(m["mean"])
                errs.append(0.0 if math.isnan(m["ci95"]) else m["ci95"])
            xs = [i + (j - len(labels) / 2 + 0.5) * width for i in range(len(SLICES))]
            ax.bar(xs, means, width, yerr=errs, capsize=2, label=label)
        ax.set_xticks(range(len(SLICES)), list(SLICES))
        title = (
            "full catalog (headline)"
            if cs == "full"
            else (f"{report['protocol']['n_candidates']} sampled candidates (secondary)")
        )
        ax.set_title(title, fontsize=9)
        ax.set_ylabel(f"recall@{k}")
    axes[0].legend(fontsize=7)
    fig.suptitle(f"Quality by gold slice, oracle and random beside A ({names['A']}) and "
                 f"B ({names['B']})\n{NOTE}", fontsize=9)  # fmt: skip
    fig.tight_layout()
    fig.savefig(out / "recall.png", dpi=110)
    plt.close(fig)
    written.append("recall.png")
    if _training_plot(report.get("training", {}), names, out, plt):
        written.append("training.png")
    if report["serving"]:
        fig, axes = plt.subplots(1, 2, figsize=(9, 4))
        paths = ("tower_only", "encode_only", "request_encode", "request_lookup")
        w = 0.38
        for j, arm in enumerate(("A", "B")):
            xs = [i + (j - 0.5) * w for i in range(len(paths))]
            srv = report["serving"][arm]
            axes[0].bar(xs, [srv[p]["p50_ms"] for p in paths], w, label=f"{arm} P50")
            axes[0].scatter(xs, [srv[p]["p95_ms"] for p in paths], marker="_", s=200, c="k")
            axes[1].bar(xs, [srv[p]["cost_per_1k_usd"] for p in paths], w, label=arm)
        for ax, label in ((axes[0], "ms per request (bar P50, tick P95)"),
                          (axes[1], "USD per 1k requests")):  # fmt: skip
            ax.set_xticks(range(len(paths)), list(paths), fontsize=8)
            ax.set_ylabel(label)
            ax.set_yscale("log")
            ax.legend()
        fig.suptitle(f"Serving at batch 1, one thread\n{NOTE}", fontsize=9)
        fig.tight_layout()
        fig.savefig(out / "serving.png", dpi=110)
        plt.close(fig)
        written.append("serving.png")
    return written


def _training_plot(training: dict[str, Any], names: dict[str, str], out: Path, plt: Any) -> bool:
    """Loss against cumulative examples, per phase, for both arms' first seed."""
    series = []
    for arm in ("A", "B"):
        records = training.get(arm) or [{}]
        for ph in records[0].get("phases", []):
            curve = ph.get("curve") or {}
            if curve.get("examples"):
                series.append((arm, ph, curve))
    if not series:
        return False
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for arm, ph, curve in series:
        ax = axes[0 if arm == "A" else 1]
        ax.plot(curve["examples"], curve["train_loss"], label=f"{ph['name']} (train)")
        if curve.get("val_loss"):
            ax.plot(curve["val_examples"], curve["val_loss"], "--", label=f"{ph['name']} (val)")
    for ax, arm in zip(axes, ("A", "B"), strict=True):
        ax.set_title(f"{arm}: {names[arm]}", fontsize=9)
        ax.set_xlabel("examples seen (per phase)")
        ax.set_ylabel("loss")
        ax.legend(fontsize=7)
    fig.suptitle(f"Training curves (each phase's own objective)\n{NOTE}", fontsize=9)
    fig.tight_layout()
    fig.savefig(out / "training.png", dpi=110)
    plt.close(fig)
    return True
