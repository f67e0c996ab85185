"""Encoder benchmark: the domain tower (small CNN) against the generic tower (small ViT),
side by side in one run: latency P50/P95 at batch size 1 on one thread, CPU-seconds and
cost per 1k requests, parameters and FLOPs. Weights don't change the arithmetic, so the
towers are measured as built; recall@10 comes from an evaluation job's report (it needs
trained towers), see `warden_ml eval`.

Every tower is measured under every serving treatment, all arms interleaved in one run,
twice: ``steady`` (blocks of 50 consecutive requests per arm, the arms' order shuffled
every round: each tower in its own steady state, as a server running one model) and
``per_request`` (the arms' order shuffled for every request: each tower runs right after
another one, which costs a small model its warm caches; see ``serving.measure``). The
treatments: ``eager`` (the nn.Module), ``torchscript`` (traced + frozen: the served form
before ONNX Runtime, kept here as the reference) and ``onnxruntime`` (``served.served``:
exported to ONNX, run by ONNX Runtime on one thread, what serving runs). The
headline compares both towers under the served treatment in steady state; the other lines
give the per-request numbers, each treatment, and the domain tower's served path against
the generic tower's fastest treatment in this run.
Parameters and FLOPs are counted on the eager module each served one is built from.
A reference arm, ``domain_v1``, is the domain tower's previous layout (conv, conv, pool,
conv, pool, linear; 31k parameters): the "before" of the before/after table, eager as it
was served then, in the same run.

The taste graph is generated; the images are real (scikit-learn digits).

    .venv/bin/python -m tests.benchmarks.bench_model [--requests 2000]
"""

from __future__ import annotations

import argparse
import json
import warnings
from pathlib import Path
from typing import Any

import torch
from sklearn.datasets import load_digits

from warden_ml.models import flops, make_tower, n_params
from warden_ml.served import served
from warden_ml.serving import measure

SERVED = "onnxruntime"
TREATMENTS = ("eager", "torchscript", SERVED)
MODES = {"steady": 50, "per_request": 1}  # requests per arm per turn
HEADLINE = "steady"


def _treat(tower: torch.nn.Module, treatment: str, example: torch.Tensor) -> Any:
    if treatment == "eager":
        return tower
    if treatment == SERVED:
        return served(tower, example)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.filterwarnings("ignore", message=r".*torch\.jit.* is deprecated")
        return torch.jit.freeze(torch.jit.trace(tower.eval(), example))


class DomainTowerV1(torch.nn.Module):
    """The domain tower's previous layout, kept here only as the benchmark's reference."""

    def __init__(self, c1: int = 16, c2: int = 32, c3: int = 48, out_dim: int = 64) -> None:
        super().__init__()
        nn = torch.nn
        self.net = nn.Sequential(
            nn.Conv2d(1, c1, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(c1, c2, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(c2, c3, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(c3 * 4, out_dim),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.normalize(self.net(x), dim=-1)


def run(requests: int = 2000, price_per_cpu_hour: float = 0.05) -> dict[str, Any]:
    torch.manual_seed(0)
    # The same real 8x8 digits the pins carry, scaled as the workload reads them.
    images = torch.from_numpy(load_digits().images.astype("float32") / 16.0)[:, None]
    towers = {
        "generic": make_tower("vit").eval(),
        "domain": make_tower("cnn").eval(),
        "domain_v1": DomainTowerV1().eval(),
    }
    singles = [images[i % len(images)][None].contiguous() for i in range(requests + 50)]

    def call(fn: Any) -> Any:
        def one(i: int) -> Any:
            with torch.inference_mode():
                return fn(singles[i])

        return one

    fns: dict[str, Any] = {}
    for name, tower in towers.items():
        for treatment in TREATMENTS:
            fn = _treat(tower, treatment, singles[0])
            with torch.inference_mode():
                for single in singles[:32]:
                    if not torch.allclose(fn(single), tower(single), atol=1e-5, rtol=1e-4):
                        raise AssertionError(f"{name} {treatment}: differs from the eager tower")
            fns[f"{name}:{treatment}"] = call(fn)
    timed = {
        mode: measure(fns, requests, 50, price_per_cpu_hour, block=block)
        for mode, block in MODES.items()
    }
    out: dict[str, Any] = {
        "requests": requests,
        "price_per_cpu_hour": price_per_cpu_hour,
        "served_treatment": SERVED,
        "headline_mode": HEADLINE,
        "modes": {mode: {"block": block} for mode, block in MODES.items()},
    }
    for name, tower in towers.items():
        out[name] = {
            **timed[HEADLINE][f"{name}:{SERVED}"],
            "params": n_params(tower),
            "flops": flops(tower, singles[0]),
            "modes": {mode: {t: timed[mode][f"{name}:{t}"] for t in TREATMENTS} for mode in MODES},
        }
    for mode in MODES:
        out["modes"][mode] |= _compare(out, mode)
    out |= {k: out["modes"][HEADLINE]["served"][k] for k in ("p50_speedup", "p95_speedup")}
    out["cost_reduction"] = out["modes"][HEADLINE]["served"]["cost_reduction"]
    return out


def _ratios(g: dict[str, Any], d: dict[str, Any]) -> dict[str, float]:
    return {
        "p50_speedup": round(g["p50_ms"] / d["p50_ms"], 2),
        "p95_speedup": round(g["p95_ms"] / d["p95_ms"], 2),
        "cost_reduction": round(1 - d["cost_per_1k_usd"] / g["cost_per_1k_usd"], 3),
    }


def _compare(out: dict[str, Any], mode: str) -> dict[str, Any]:
    g, d = out["generic"]["modes"][mode], out["domain"]["modes"][mode]
    best = min(TREATMENTS, key=lambda t: g[t]["p50_ms"])
    return {
        "served": _ratios(g[SERVED], d[SERVED]),
        "by_treatment": {t: _ratios(g[t], d[t]) for t in TREATMENTS},
        "vs_generic_best": {"generic_treatment": best, **_ratios(g[best], d[SERVED])},
        "before": {
            "what": "generic eager vs domain_v1 eager (the previous layout and serving path)",
            **_ratios(g["eager"], out["domain_v1"]["modes"][mode]["eager"]),
        },
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--json", type=Path, default=Path("bench-results/model.json"))
    args = parser.parse_args(argv)
    r = run(args.requests)
    print(f"{'':<21} {'':>8} {'':>8} {'steady (blocks of 50)':^30} {'per request':^20}")
    print(f"{'tower':<9} {'treatment':<11} {'params':>8} {'MFLOPs':>8} {'p50':>9} {'p95':>9}"
          f" {'$/1k req':>10} {'p50':>9} {'p95':>9}")  # fmt: skip
    for name in ("generic", "domain", "domain_v1"):
        t = r[name]
        for treatment in TREATMENTS:
            m, q = t["modes"]["steady"][treatment], t["modes"]["per_request"][treatment]
            mark = " <- served" if treatment == r["served_treatment"] else ""
            print(
                f"{name:<9} {treatment:<11} {t['params']:>8,} {t['flops'] / 1e6:>8.2f}"
                f" {m['p50_ms']:>7.3f}ms {m['p95_ms']:>7.3f}ms {m['cost_per_1k_usd']:>10.2e}"
                f" {q['p50_ms']:>7.3f}ms {q['p95_ms']:>7.3f}ms{mark}"
            )

    def line(label: str, x: dict[str, Any]) -> None:
        print(
            f"  {label}: {x['p50_speedup']}x at p50, {x['p95_speedup']}x at p95,"
            f" {x['cost_reduction']:.0%} lower cost per 1k requests"
        )

    for mode in MODES:
        c = r["modes"][mode]
        print(f"domain vs generic, same run, {mode} (block {c['block']}):")
        line(f"both served ({r['served_treatment']})", c["served"])
        for treatment, x in c["by_treatment"].items():
            if treatment != r["served_treatment"]:
                line(f"both {treatment}", x)
        best = c["vs_generic_best"]
        line(f"domain served vs generic's fastest here ({best['generic_treatment']})", best)
        line("before: domain_v1 eager vs generic eager", c["before"])
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"benchmark": "model", "results": r}, indent=2))
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
