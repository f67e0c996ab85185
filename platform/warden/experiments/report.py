"""The experiment's report: JSON and Markdown (shadow agreement over time, KPI per arm with
intervals, latency and cost from the serving telemetry, the decision and its rule)."""

from __future__ import annotations

import math
from typing import Any

PROVENANCE = (
    "The taste graph (users, pins, engagements) and the simulated users' clicks and saves are "
    "GENERATED; the pin images are REAL 8x8 handwritten digits (scikit-learn / UCI digits)."
)


def build(described: dict[str, Any]) -> dict[str, Any]:
    s = described["summary"]
    shadow = s.get("shadow_agreement", [])
    windows = [shadow[i : i + 50] for i in range(0, len(shadow), 50)]
    return {
        "provenance": PROVENANCE,
        "experiment": {
            k: described[k]
            for k in ("name", "state", "control", "challenger", "shadow", "split", "plan")
        },
        "arms": s.get("arms", {}),
        "lift": s.get("lift"),
        "shadow_agreement_over_time": [
            {"requests": (i + 1) * 50, "mean_overlap": sum(w) / len(w)}
            for i, w in enumerate(windows)
        ],
        "decision": described["decision"],
    }


def _f(x: Any, digits: int = 4) -> str:
    if isinstance(x, float):
        return "n/a" if not math.isfinite(x) else f"{x:.{digits}f}"
    return str(x)


def markdown(report: dict[str, Any]) -> str:
    e = report["experiment"]
    lines = [
        f"# Experiment {e['name']} ({e['state']})",
        "",
        f"*{report['provenance']}*",
        "",
        f"Control `{e['control']}`, challenger `{e['challenger']}`"
        + (f", shadow `{e['shadow']}`" if e["shadow"] else "")
        + f"; {e['split']:.0%} of users on the challenger (stable hash of the user).",
        "",
        "## Pre-registered rule",
        "",
        e["plan"]["rule"],
        "",
        f"Primary KPI: {e['plan']['kpi']} per request; minimum detectable effect "
        f"{e['plan']['mde']}; guardrails: {e['plan']['guardrails']}.",
        "",
        "## KPI and serving cost per arm (latency and CPU from the serving telemetry)",
        "",
        "| arm | requests | clicks/req (±95%) | saves/req (±95%) | P50 ms | P95 ms "
        "| error rate | cost per 1k (USD) |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for arm, a in report["arms"].items():
        lines.append(
            f"| {arm} | {a['requests']} | {_f(a['clicks']['mean'])} ± {_f(a['clicks']['ci95'])}"
            f" | {_f(a['saves']['mean'])} ± {_f(a['saves']['ci95'])} | {_f(a['p50_ms'], 3)}"
            f" | {_f(a['p95_ms'], 3)} | {_f(a['error_rate'])} | {_f(a['cost_per_1k_usd'], 8)} |"
        )
    lift = report.get("lift")
    if lift:
        lo, hi = lift["ci95"]
        lines += [
            "",
            f"Lift ({lift['kpi']}/request, challenger - control): {_f(lift['value'])}"
            f" (95% interval [{_f(lo)}, {_f(hi)}]; relative {_f(lift['relative'])}).",
        ]
    if report["shadow_agreement_over_time"]:
        lines += [
            "",
            "## Shadow agreement over time (top-k overlap with the shown answer)",
            "",
            "| requests | mean overlap |",
            "| ---: | ---: |",
        ]
        lines += [
            f"| {w['requests']} | {_f(w['mean_overlap'])} |"
            for w in report["shadow_agreement_over_time"]
        ]
    d = report["decision"]
    lines += ["", "## Decision", ""]
    if not d:
        lines.append("Not decided yet.")
    elif d.get("promote"):
        lines.append("Promoted: the challenger is the serving default (reversible: rollback).")
    else:
        lines += ["Refused; failed criteria:", ""] + [f"- {x}" for x in d.get("failed", [])]
    return "\n".join(lines) + "\n"


def png(report: dict[str, Any]) -> bytes:
    """Shadow agreement over time and the KPI per arm with its 95% interval, one PNG."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6))
    shadow = report["shadow_agreement_over_time"]
    if shadow:
        left.plot([w["requests"] for w in shadow], [w["mean_overlap"] for w in shadow], "o-")
    left.set(
        title="shadow: top-k overlap with the shown answer",
        xlabel="requests",
        ylabel="mean overlap",
        ylim=(0, 1.05),
    )
    kpi = report["experiment"]["plan"]["kpi"]
    arms = [a for a in ("control", "challenger") if a in report["arms"]]
    means = [report["arms"][a][kpi]["mean"] for a in arms]
    errors = [report["arms"][a][kpi]["ci95"] for a in arms]
    right.bar(arms, means, yerr=[e if e == e else 0 for e in errors], capsize=6)
    right.set(title=f"{kpi} per request (95% interval)", ylabel=kpi)
    fig.suptitle(
        f"experiment {report['experiment']['name']}: {report['experiment']['state']}"
        " (graph and users generated; images real)",
        fontsize=9,
    )
    fig.tight_layout()
    out = io.BytesIO()
    fig.savefig(out, format="png", dpi=90)
    plt.close(fig)
    return out.getvalue()
