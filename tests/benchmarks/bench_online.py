"""Online benchmark: the swapped stack (A) against the generic one (B) as served.

1. Encoder latency, interleaved per request (block 1: the arms' order shuffled every request,
   so neither runs in its own steady state), batch 1, one thread: A's tower against B's.
2. End-to-end request (encode the query pin + sequence model + full-catalog scoring), same
   interleaving: P50 and cost per 1k requests (CPU-seconds priced at $0.05 per CPU-hour).
3. Online: requests per second one process serves at batch 1 through `POST /v1/recommend`
   (authentication, the read decision on the model's lineage, the audit event per request,
   the model, the answer), one client at a time, and the P95 under that load.
4. An A/B on simulated users (control B, challenger A, B as the shadow): the KPI lift with
   its 95% interval, and the pre-registered decision.

The models are trained here on the small generated graph (the images are real): the domain
path at its defaults, the generic tower for --generic-steps (the fair budget is 400; the
latency does not depend on it, the KPI does).

    .venv/bin/python -m tests.benchmarks.bench_online [--generic-steps 100] [--requests 300]
    (or: bash scripts/bench.sh online)

``--block B`` runs each arm B requests in a row (each in its steady state, as a server that
runs one model) instead of interleaving request by request. ``--before REV`` adds both arms'
end-to-end requests served by ``warden_ml/serving.py`` as of that git revision to the same
run, so a serving change is measured side by side. ``--previous-design`` adds a third arm to
the same run: the swapped stack as the swap built it before it had its own serving design
(the generic stack's two sequence blocks, 64-dimension scores, last block post-trained).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
import time
import types
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch

from tests.warden_ml.conftest import ParquetReader
from warden.tastegraph import generate
from warden_ml.cli import run_step
from warden_ml.common import Spec, load_model
from warden_ml.data import images_from_binary
from warden_ml.metrics import percentile
from warden_ml.models import stack_from_blob
from warden_ml.serving import Server, measure

SMOKE = {
    "train-domain": {"steps": 6, "batch": 32, "mine_every": 3},
    "train-generic": {"steps": 3, "batch": 32, "stack_steps": 5},
    "swap": {"align_steps": 3, "post_steps": 3, "batch": 64},
}


# the swap's design before the swapped stack had its own (seq_blocks, score_dim, post_train)
PREVIOUS_DESIGN = {"seq_blocks": 2, "score_dim": 0, "post_train": "last_block"}


def train(work: Path, generic_steps: int, smoke: bool, previous: bool = False) -> dict[str, Path]:
    reader = ParquetReader(work / "graph")

    def params(step: str, **extra: Any) -> dict[str, Any]:
        return {"threads": 1, **extra, **(SMOKE[step] if smoke else {})}

    d, g, s = work / "d", work / "g", work / "s"
    run_step("train-domain", Spec(seed=0, params=params("train-domain")), d, reader)
    generic = params("train-generic", steps=generic_steps, patience=1_000_000)
    run_step("train-generic", Spec(seed=0, params=generic), g, reader)
    model_in = {"stack": str(g / "generic_stack.pt"), "tower": str(d / "domain_tower.pt")}
    run_step("swap", Spec(seed=0, params=params("swap"), model_in=model_in), s, reader)
    paths = {"A": s / "swapped_stack.pt", "B": g / "generic_stack.pt"}
    if previous:
        before = params("swap", **PREVIOUS_DESIGN)
        run_step("swap", Spec(seed=0, params=before, model_in=model_in), work / "s0", reader)
        paths["A0"] = work / "s0" / "swapped_stack.pt"
    return paths


def server_at(rev: str) -> Any:
    """``warden_ml.serving.Server`` as of a git revision (its other imports: today's)."""
    src = subprocess.run(
        ["git", "show", f"{rev}:platform/warden_ml/serving.py"],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).parent,
    ).stdout
    module = types.ModuleType(f"serving_at_{rev}")
    exec(compile(src, f"{rev}:platform/warden_ml/serving.py", "exec"), module.__dict__)
    return module.Server


def offline_latency(
    paths: dict[str, Path], graph: Path, n: int, before: str | None = None, block: int = 1
) -> dict[str, Any]:
    """Encoder and end-to-end request latency, A and B interleaved request by request."""
    pins = pl.read_parquet(graph / "pins.parquet", columns=["pin_id", "image"]).sort("pin_id")
    images = images_from_binary(pins["image"])
    ids = pins["pin_id"].to_numpy().astype(np.int64)
    servers = {
        arm: Server(stack_from_blob(load_model(p)), images, 10, ids) for arm, p in paths.items()
    }
    old = {}
    if before:
        cls = server_at(before)
        old = {
            arm: cls(stack_from_blob(load_model(p)), images, 10, ids)
            for arm, p in paths.items()
            if arm in ("A", "B")
        }
    rng = np.random.default_rng(0)
    rows = rng.integers(0, len(ids), (n + 50, 8))
    windows = [torch.from_numpy(r[None]) for r in rows]
    single = [images[int(r[-1]) : int(r[-1]) + 1].contiguous() for r in rows]
    fns: dict[str, Any] = {}
    for arm, srv in servers.items():
        if arm in ("A", "B"):  # A0's tower is A's
            fns[f"{arm}:tower"] = lambda i, srv=srv: srv.tower_one(single[i])
        fns[f"{arm}:request"] = lambda i, srv=srv: srv.request_encode(windows[i])
    for arm, srv in old.items():
        fns[f"{arm}:request@before"] = lambda i, srv=srv: srv.request_encode(windows[i])
    return measure(fns, n, warmup=50, block=block)


def online(
    paths: dict[str, Path], work: Path, specs: list[Any], requests: int, ab_requests: int
) -> dict[str, Any]:
    from tests.conftest import MASK_KEY, WardenHarness
    from tests.experiments.helpers import register_artifact
    from warden.config import Settings

    settings = Settings(
        data_dir=work / "warden" / "data",
        config_dir=work / "warden" / "config",
        database_url=f"sqlite:///{work / 'warden.db'}",
        mask_key=MASK_KEY,
    )
    harness = WardenHarness.build(settings, specs)
    try:
        refs = {
            arm: register_artifact(harness, f"bench-{arm.lower()}", p) for arm, p in paths.items()
        }
        eng = pl.read_parquet(work / "graph" / "engagements.parquet", columns=["user_id", "pin_id"])
        hist = eng.group_by("user_id").agg(pl.col("pin_id").tail(8)).sort("user_id")
        histories = hist["pin_id"].to_list()
        rng = np.random.default_rng(1)
        headers = harness.as_("alice")
        out: dict[str, Any] = {}
        lat: dict[str, list[float]] = {arm: [] for arm in refs}
        wall = dict.fromkeys(refs, 0.0)
        for ref in refs.values():  # warm: load each model once (per-process cache)
            harness.http.post(
                "/v1/recommend",
                headers=headers,
                json={"model": ref, "user": "warm", "history": [], "k": 10},
            )
        for start in range(0, requests, 50):
            for arm in rng.permutation(list(refs)):
                for i in range(start, min(start + 50, requests)):
                    body = {
                        "model": refs[arm],
                        "user": f"u{i}",
                        "k": 10,
                        "history": histories[i % len(histories)],
                    }
                    t0 = time.perf_counter()
                    r = harness.http.post("/v1/recommend", headers=headers, json=body)
                    dt = time.perf_counter() - t0
                    assert r.status_code == 200, r.text
                    lat[arm].append(dt)
                    wall[arm] += dt
        for arm in refs:
            out[arm] = {
                "requests_per_s": len(lat[arm]) / wall[arm],
                "p50_ms": percentile(lat[arm], 50) * 1e3,
                "p95_ms": percentile(lat[arm], 95) * 1e3,
            }
        plan = {
            "name": "bench-ab",
            "control": refs["B"],
            "challenger": refs["A"],
            "shadow": refs["B"],
            "split": 0.5,
            "kpi": "clicks",
            "mde": 0.02,
            "guardrails": {"p95_ms": 1000.0, "error_rate": 0.01, "cost_per_1k_usd": 0.01},
        }
        assert harness.http.post("/v1/experiments", json=plan, headers=headers).status_code == 201
        sim = harness.http.post(
            "/v1/experiments/bench-ab/simulate",
            headers=headers,
            json={"requests": ab_requests, "seed": 0},
        )
        assert sim.status_code == 200, sim.text
        decided = harness.http.post("/v1/experiments/bench-ab/decide", headers=headers).json()
        report = harness.http.get(
            "/v1/experiments/bench-ab/report", headers=headers, params={"format": "md"}
        ).text
        out["ab"] = {
            "summary": decided["summary"],
            "decision": decided["decision"],
            "state": decided["state"],
            "report_md": report,
        }
        return out
    finally:
        harness.close()


def table(res: dict[str, Any]) -> str:
    lat = res["latency"]
    enc = lat["B:tower"]["p50_ms"] / lat["A:tower"]["p50_ms"]
    steady = "each arm in its steady state"
    lines = [
        f"latency: block {res['block']} ({'interleaved' if res['block'] == 1 else steady})",
        "measure                                   A (swapped)   B (generic)   ratio / target",
        f"encoder P50 ms                           {lat['A:tower']['p50_ms']:10.4f}"
        f"   {lat['B:tower']['p50_ms']:10.4f}   {enc:5.1f}x  (>= 10x)",
        *request_rows(lat["A:request"], lat["B:request"]),
    ]
    if "A0:request" in lat:
        lines.append("previous swapped design (2 sequence blocks, 64-dim scores), same run:")
        lines += request_rows(lat["A0:request"], lat["B:request"])
    if "A:request@before" in lat:
        lines.append(f"before (serving.py at {res['before']}), same run:")
        lines += request_rows(lat["A:request@before"], lat["B:request@before"])
    if "online" not in res:
        return "\n".join(lines)
    on, ab = res["online"], res["online"]["ab"]
    lines += [
        f"online req/s, batch 1, one process      {on['A']['requests_per_s']:10.1f}"
        f"   {on['B']['requests_per_s']:10.1f}",
        f"online P95 ms under that load           {on['A']['p95_ms']:10.2f}"
        f"   {on['B']['p95_ms']:10.2f}",
    ]
    lift = ab["summary"].get("lift") or {}
    if lift:
        lo, hi = lift["ci95"]
        lines.append(
            f"A/B clicks/request lift (A - B)          {lift['value']:+.4f}"
            f"  95% [{lo:+.4f}, {hi:+.4f}]  decision: {ab['state']}"
        )
    lines += [f"  failed: {f}" for f in ab["decision"].get("failed", [])]
    return "\n".join(lines)


def request_rows(a: dict[str, float], b: dict[str, float]) -> list[str]:
    req = b["p50_ms"] / a["p50_ms"]
    cost = 1 - a["cost_per_1k_usd"] / b["cost_per_1k_usd"]
    return [
        f"end-to-end request P50 ms               {a['p50_ms']:10.4f}"
        f"   {b['p50_ms']:10.4f}   {req:5.1f}x  (>= 5x)",
        f"cost per 1k requests USD                {a['cost_per_1k_usd']:10.2e}"
        f"   {b['cost_per_1k_usd']:10.2e}   {cost:6.1%} lower (>= 80%)",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--generic-steps", type=int, default=100)
    parser.add_argument("--requests", type=int, default=300, help="latency requests per arm")
    parser.add_argument("--ab-requests", type=int, default=2000)
    parser.add_argument("--out", type=Path, default=Path("bench-results"))
    parser.add_argument("--smoke", action="store_true", help="tiny models: wiring only")
    parser.add_argument("--before", default=None, help="git revision of serving.py to compare")
    parser.add_argument(
        "--block", type=int, default=1, help="latency: requests per arm in a row (1: interleaved)"
    )
    parser.add_argument("--skip-online", action="store_true", help="latency only (no A/B)")
    parser.add_argument(
        "--previous-design", action="store_true", help="also the swap's previous design (A0)"
    )
    args = parser.parse_args()
    started = time.monotonic()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory(prefix="bench-online-") as tmp:
        work = Path(tmp)
        specs = generate(work / "graph", scale="small", seed=0)
        paths = train(work, args.generic_steps, args.smoke, args.previous_design)
        res: dict[str, Any] = {
            "latency": offline_latency(
                paths, work / "graph", args.requests, args.before, args.block
            ),
            "before": args.before,
            "block": args.block,
        }
        if not args.skip_online:
            arms = {arm: paths[arm] for arm in ("A", "B")}
            res["online"] = online(arms, work, specs, args.requests, args.ab_requests)
    print(table(res))
    print(
        f"({time.monotonic() - started:.0f} s; generic tower {args.generic_steps} steps; "
        "the taste graph and the users are generated, the images are real)"
    )
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "online.json").write_text(json.dumps(res, indent=2, default=str) + "\n")
    if "online" in res:
        (args.out / "online_ab.md").write_text(res["online"]["ab"]["report_md"])


if __name__ == "__main__":
    main()
