"""Encoder benchmark: the domain tower (small CNN) against the generic tower (small ViT),
side by side in one run: latency P50/P95 at batch size 1 on one thread, CPU-seconds and
cost per 1k requests, parameters and FLOPs. Weights don't change the arithmetic, so the
towers are measured as built; recall@10 comes from an evaluation job's report (it needs
trained towers), see `warden_ml eval`.

The taste graph is generated; the images are real (scikit-learn digits).

    .venv/bin/python -m tests.benchmarks.bench_model [--requests 2000]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import torch
from sklearn.datasets import load_digits

from warden_ml.models import flops, make_tower, n_params
from warden_ml.serving import measure


def run(requests: int = 2000, price_per_cpu_hour: float = 0.05) -> dict[str, Any]:
    torch.manual_seed(0)
    # The same real 8x8 digits the pins carry, scaled as the workload reads them.
    images = torch.from_numpy(load_digits().images.astype("float32") / 16.0)[:, None]
    towers = {"generic": make_tower("vit").eval(), "domain": make_tower("cnn").eval()}
    singles = [images[i % len(images)][None].contiguous() for i in range(requests + 50)]

    def call(tower: torch.nn.Module) -> Any:
        def one(i: int) -> Any:
            with torch.inference_mode():
                return tower(singles[i])

        return one

    timed = measure({name: call(t) for name, t in towers.items()}, requests, 50, price_per_cpu_hour)
    out: dict[str, Any] = {"requests": requests, "price_per_cpu_hour": price_per_cpu_hour}
    for name, tower in towers.items():
        out[name] = {
            **timed[name],
            "params": n_params(tower),
            "flops": flops(tower, singles[0]),
        }
    g, d = out["generic"], out["domain"]
    out["p50_speedup"] = round(g["p50_ms"] / d["p50_ms"], 2)
    out["p95_speedup"] = round(g["p95_ms"] / d["p95_ms"], 2)
    out["cost_reduction"] = round(1 - d["cost_per_1k_usd"] / g["cost_per_1k_usd"], 3)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--json", type=Path, default=Path("bench-results/model.json"))
    args = parser.parse_args(argv)
    r = run(args.requests)
    print(f"{'tower':<8} {'params':>8} {'MFLOPs':>8} {'p50':>9} {'p95':>9} {'$/1k req':>10}")
    for name in ("generic", "domain"):
        t = r[name]
        print(
            f"{name:<8} {t['params']:>8,} {t['flops'] / 1e6:>8.2f} {t['p50_ms']:>7.3f}ms"
            f" {t['p95_ms']:>7.3f}ms {t['cost_per_1k_usd']:>10.2e}"
        )
    print(
        f"domain vs generic, same run: {r['p50_speedup']}x faster at p50,"
        f" {r['p95_speedup']}x at p95, {r['cost_reduction']:.0%} lower cost per 1k requests"
    )
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"benchmark": "model", "results": r}, indent=2))
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
