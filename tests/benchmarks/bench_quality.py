"""Quality benchmark: the swapped stack against the fair generic baseline, full catalog,
beside the oracle (the generator's latent model), popularity and random, with both arms'
training budgets. The demo's ML path at its default parameters, on local Parquet files (no
API, no sandbox: the same step functions the jobs run), N seeds, then one eval.

The fair generic baseline dominates the cost: about 7 CPU-minutes per seed at the small
scale (400 ViT steps at batch 256). The taste graph is generated; the images are real.

    .venv/bin/python -m tests.benchmarks.bench_quality [--seeds 2] [--out DIR]
    (or: bash scripts/bench.sh quality)

``--work DIR`` keeps the run's files in DIR, and a later run with the same DIR reuses the
towers trained there for the same seed and parameters (the swap and the eval always run
again): to compare swap designs on the same towers without paying for the towers twice.

``--previous-design`` also swaps each seed's towers with the swap's previous design (the
generic stack's two sequence blocks, 64-dimension scores, last block post-trained) and
evaluates it against the same generic stacks: before and after on the same trained towers.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from tests.benchmarks.bench_online import PREVIOUS_DESIGN
from tests.warden_ml.conftest import ParquetReader
from warden.tastegraph import generate
from warden_ml.cli import run_step
from warden_ml.common import Spec

ROLES = ("pins", "engagements", "gold", "latent_users", "latent_pins")
# --smoke: tiny models, to check the wiring in seconds (numbers meaningless)
SMOKE = {
    "train-domain": {"steps": 6, "batch": 32, "mine_every": 3},
    "train-generic": {"steps": 3, "batch": 32, "stack_steps": 5, "dim": 32, "depth": 1, "mlp": 64},
    "swap": {"align_steps": 3, "post_steps": 3, "batch": 64},
    "eval": {"latency_requests": 20, "max_queries": 60},
}


def train_once(step: str, spec: Spec, out: Path, reader: ParquetReader) -> None:
    """Run a training step, or keep what the same step with the same spec left in ``out``."""
    stamp = out / "bench_spec.json"
    want = json.dumps({"step": step, "seed": spec.seed, "params": spec.params}, sort_keys=True)
    if stamp.exists() and stamp.read_text() == want:
        print(f"{step} seed {spec.seed}: reusing {out}")
        return
    run_step(step, spec, out, reader)
    stamp.write_text(want)


def run(
    seeds: int,
    work: Path,
    scale: str,
    smoke: bool = False,
    overrides: dict[str, dict[str, Any]] | None = None,
    previous: bool = False,
) -> dict[str, Any]:
    def params(step: str) -> dict[str, Any]:
        given = (overrides or {}).get(step, {})
        return {"threads": 1, **(SMOKE[step] if smoke else {}), **given}

    if not (work / "graph" / "bench_scale.txt").exists():
        generate(work / "graph", scale=scale, seed=0)
        (work / "graph" / "bench_scale.txt").write_text(scale)
    elif (work / "graph" / "bench_scale.txt").read_text() != scale:
        raise ValueError(f"{work} holds a graph of another scale")
    reader = ParquetReader(work / "graph")
    arms: dict[str, list[str]] = {"A": [], "B": []}
    for seed in range(seeds):
        d, g, s = (work / f"{x}{seed}" for x in ("d", "g", "s"))
        train_once("train-domain", Spec(seed=seed, params=params("train-domain")), d, reader)
        train_once("train-generic", Spec(seed=seed, params=params("train-generic")), g, reader)
        model_in = {"stack": str(g / "generic_stack.pt"), "tower": str(d / "domain_tower.pt")}
        run_step("swap", Spec(seed=seed, params=params("swap"), model_in=model_in), s, reader)
        arms["A"].append(str(s / "swapped_stack.pt"))
        arms["B"].append(str(g / "generic_stack.pt"))
        if previous:
            s0 = work / f"s{seed}-previous"
            before = Spec(seed=seed, params=params("swap") | PREVIOUS_DESIGN, model_in=model_in)
            run_step("swap", before, s0, reader)
            arms.setdefault("A0", []).append(str(s0 / "swapped_stack.pt"))
    names = {"name_a": "swapped", "name_b": "generic"}
    evals = {"eval": {"A": arms["A"], "B": arms["B"]}}
    if previous:
        evals["eval-previous"] = {"A": arms["A0"], "B": arms["B"]}
    reports = {}
    for name, model_in in evals.items():
        spec = Spec(seed=0, params=params("eval") | names, datasets={r: r for r in ROLES},
                    model_in=model_in)  # fmt: skip
        run_step("eval", spec, work / name, reader)
        reports[name] = json.loads((work / name / "report.json").read_text())
    report = dict(reports["eval"])
    if previous:
        report["previous_design"] = reports["eval-previous"]
    return report


def table(report: dict[str, Any]) -> str:
    h = report["headline"]
    full = h["heldout_recall@10_full"]
    lines = ["heldout_edge, full catalog  recall@10   share of oracle-random gap"]
    for key in ("oracle", "popularity", "random", "A_stack", "B_stack", "A_tower", "B_tower"):
        ci = full.get(f"{key}_ci95")
        spread = f" ± {ci:.4f}" if isinstance(ci, float) and ci == ci else ""
        lines.append(f"  {key:<12} {full[key]:.4f}{spread:<10} {full[f'share_{key}'] * 100:6.1f}%")
    budget = h["training_budget"]
    for key in ("steps", "examples", "cpu_s"):
        row = budget[key]
        lines.append(
            f"  budget {key:<9} A domain path {row['A_domain_path']:,.1f}"
            f"  B generic tower {row['B_generic_tower']:,.1f}  B/A {row['B_over_A']:.2f}"
        )
    lines.append(f"  B stopped by: {budget['B_stopped_by']}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--scale", default="small")
    parser.add_argument("--out", type=Path, default=Path("bench-results"))
    parser.add_argument("--smoke", action="store_true", help="tiny models: wiring only")
    parser.add_argument(
        "--work", type=Path, default=None, help="keep the run's files here; reuse its towers"
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="STEP.PARAM=VALUE",
        help="a step's parameter, as `warden jobs run -p` takes it (e.g. swap.post_steps=200)",
    )
    parser.add_argument(
        "--previous-design", action="store_true", help="also the swap's previous design"
    )
    args = parser.parse_args()
    overrides: dict[str, dict[str, Any]] = {}
    for item in args.set:
        key, _, value = item.partition("=")
        step, _, name = key.rpartition(".")
        if not step or not name or not value:
            parser.error(f"--set {item!r}: expected STEP.PARAM=VALUE")
        overrides.setdefault(step, {})[name] = (
            json.loads(value) if value[0] in "0123456789-[{" else value
        )
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="bench-quality-") as tmp:
        work = args.work or Path(tmp)
        report = run(args.seeds, work, args.scale, args.smoke, overrides, args.previous_design)
    print(table(report))
    if "previous_design" in report:
        print("previous swap design (2 sequence blocks, 64-dim scores), same towers:")
        print(table(report["previous_design"]))
    print(f"({args.seeds} seeds, {time.monotonic() - started:.0f} s; graph generated, images real)")
    args.out.mkdir(parents=True, exist_ok=True)
    keep = {k: report[k] for k in ("provenance", "protocol", "headline", "quality", "training")}
    if "previous_design" in report:
        keep["previous_design_headline"] = report["previous_design"]["headline"]
    (args.out / "quality.json").write_text(json.dumps(keep, indent=2, default=str) + "\n")


if __name__ == "__main__":
    main()
