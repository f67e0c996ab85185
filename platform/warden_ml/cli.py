"""``python -m warden_ml STEP --spec SPEC.json --out DIR`` (run inside an ML sandbox).

Inside a sandbox ``WARDEN_SOCKET``/``WARDEN_TOKEN`` are set and ``Client()`` just works.
Exit status 0 on success; 2 on a bad spec; 1 on any other failure (the message is printed
on stderr as ``error: ...``).
"""

from __future__ import annotations

import argparse
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from warden_ml import STEPS
from warden_ml.common import Reader, Spec, say

StepFn = Callable[[Spec, Path, Reader], dict[str, Any]]


def step_function(step: str) -> StepFn:
    from warden_ml.evaluate import evaluate
    from warden_ml.infer import infer
    from warden_ml.train import swap, train_domain, train_generic

    table: dict[str, StepFn] = {
        "train-generic": train_generic,
        "train-domain": train_domain,
        "swap": swap,
        "infer": infer,
        "eval": evaluate,
    }
    return table[step]


def run_step(step: str, spec: Spec, out: Path, client: Reader | None = None) -> dict[str, Any]:
    """Run one step in-process; ``client`` defaults to ``warden.sdk.Client()``."""
    if step not in STEPS:
        raise ValueError(f"unknown step {step!r}; steps: {', '.join(STEPS)}")
    out.mkdir(parents=True, exist_ok=True)
    if client is None:
        from warden.sdk import Client

        with Client() as sdk:
            return step_function(step)(spec, out, sdk)
    return step_function(step)(spec, out, client)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m warden_ml", description=__doc__)
    parser.add_argument("step", choices=STEPS)
    parser.add_argument("--spec", required=True, help="spec JSON file")
    parser.add_argument("--out", required=True, help="output directory (artifacts, metrics)")
    args = parser.parse_args(argv)
    try:
        spec = Spec.load(args.spec)
    except (OSError, ValueError) as exc:
        print(f"error: bad spec: {exc}", file=sys.stderr)
        return 2
    try:
        metrics = run_step(args.step, spec, Path(args.out))
    except Exception as exc:  # report every failure in one clear line, then the trace
        print(f"error: {args.step} failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        traceback.print_exc()
        return 1
    say(f"done {args.step}: metrics in {Path(args.out) / 'metrics.json'}")
    del metrics
    return 0
