"""Sandbox start-up: create → first instruction of user code, per segment, against a bare
`docker run --rm IMAGE true` of the same image in the same run (ratio; target ≤ 1.5).

The API runs as `warden serve` in its own process; each sandbox is launched through
POST /v1/sandboxes (policy, rows, job token, audit, gateway socket, container, watcher). The
user code is `date +%s.%N`: the clock it prints is its first instruction (host and container
share the clock). Runs are interleaved so machine noise lands on every column alike.

    bash scripts/bench.sh sandbox        # or: .venv/bin/python -m tests.benchmarks.bench_sandbox
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from tests.benchmarks.harness import prepare, served
from warden.config import REPO_ROOT
from warden.db.session import make_engine, make_sessionmaker, unit_of_work
from warden.identity.service import Caller, create_principal, get_principal, get_tenant, issue_token
from warden.policy.changes import apply_change
from warden.policy.rules import read_csv


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def bare(image: str, command: list[str]) -> tuple[float, float]:
    """(wall seconds of `docker run --rm`, seconds to the first instruction when it prints one)."""
    started = time.time()
    out = subprocess.run(  # noqa: S603 - fixed arguments
        ["docker", "run", "--rm", image, *command],  # noqa: S607
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    wall = time.time() - started
    first = float(out.strip()) - started if out.strip() else float("nan")
    return wall, first


def sandboxed(http: httpx.Client, token: str, segment: str) -> tuple[float, float]:
    """(seconds to the first instruction, seconds until the API reports it ended)."""
    headers = {"authorization": f"Bearer {token}"}
    started = time.time()
    response = http.post(
        "/v1/sandboxes", json={"segment": segment, "command": ["date", "+%s.%N"]}, headers=headers
    )
    response.raise_for_status()
    sandbox_id = response.json()["id"]
    while True:
        row = http.get(f"/v1/sandboxes/{sandbox_id}", headers=headers).json()
        if row["status"] not in ("starting", "running"):
            break
        time.sleep(0.01)
    ended = time.time() - started
    if row["status"] != "succeeded":
        raise RuntimeError(f"sandbox {sandbox_id} ended {row['status']}: {row.get('reason')}")
    out = http.get(f"/v1/sandboxes/{sandbox_id}/logs", headers=headers).text
    return float(out.strip()) - started, ended


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--json", type=Path, default=Path("bench-results/sandbox.json"))
    args = parser.parse_args()

    import docker

    from warden.config import get_settings
    from warden.sandbox.images import build_all

    built = build_all(
        docker.from_env(timeout=600),
        get_settings().sandbox,
        ["ml", "app-dev"],
        lambda m: print(f"  {m}", flush=True),
    )
    tags = {b.name: b.tag for b in built}

    with tempfile.TemporaryDirectory(prefix="warden-bench-") as tmp:
        settings, alice = prepare(Path(tmp) / "data", None)
        engine = make_engine(settings.resolved_database_url)
        with unit_of_work(make_sessionmaker(engine)) as db:
            dave = create_principal(db, "dave", "person", get_tenant(db, "acme"))
            dave_token = issue_token(db, dave)
            admin = Caller("admin", "person", "acme", get_principal(db, "admin").id)
            rules = read_csv([REPO_ROOT / "policies" / "sandbox.csv"])
            apply_change(db, admin, add=[*rules, ("g", ("dave", "role:developer", "acme"))])
        engine.dispose()
        samples: dict[str, list[float]] = {
            k: []
            for k in (
                "bare_true_wall",
                "bare_first_instruction",
                "ml_first_instruction",
                "ml_ended",
                "app-dev_first_instruction",
                "app-dev_ended",
            )
        }
        with served(settings) as url, httpx.Client(base_url=url, timeout=60) as http:
            for segment, token in (("ml", alice), ("app-dev", dave_token)):
                sandboxed(http, token, segment)  # warm-up
            bare(tags["ml"], ["true"])
            for i in range(args.runs):
                image = tags["ml"] if i % 2 == 0 else tags["app-dev"]
                samples["bare_true_wall"].append(bare(image, ["true"])[0])
                samples["bare_first_instruction"].append(bare(image, ["date", "+%s.%N"])[1])
                for segment, token in (("ml", alice), ("app-dev", dave_token)):
                    first, ended = sandboxed(http, token, segment)
                    samples[f"{segment}_first_instruction"].append(first)
                    samples[f"{segment}_ended"].append(ended)

    base = statistics.median(samples["bare_true_wall"])
    base_first = statistics.median(samples["bare_first_instruction"])
    rows: list[dict[str, Any]] = []
    for name, values in samples.items():
        p50 = statistics.median(values)
        rows.append(
            {
                "measure": name,
                "runs": len(values),
                "p50_s": round(p50, 4),
                "p95_s": round(pct(values, 0.95), 4),
                "ratio_vs_bare_run_true": round(p50 / base, 2),
                "ratio_vs_bare_first_instruction": round(p50 / base_first, 2),
            }
        )
    print(
        f"\n{'measure':28} {'runs':>4} {'p50 s':>8} {'p95 s':>8} {'/bare true':>11} "
        f"{'/bare first':>11}"
    )
    for r in rows:
        print(
            f"{r['measure']:28} {r['runs']:>4} {r['p50_s']:>8.3f} {r['p95_s']:>8.3f} "
            f"{r['ratio_vs_bare_run_true']:>11.2f} {r['ratio_vs_bare_first_instruction']:>11.2f}"
        )
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"images": tags, "rows": rows, "samples": samples}, indent=2))
    print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
