"""Workspace upload of a 10k-file, 100 MB tree and the first `make check` in it, against a
bare `docker run -v TREE:/workspace` of the same image, tree and command, same run (ratio;
target ≤ 1.5).

The API runs as `warden serve` in its own process. The Warden column is the CLI's own upload
(the tree packed as tar, streamed to PUT /v1/workspaces/NAME/archive, checked and digested
server-side) plus POST /v1/sandboxes with the workspace, until the API reports it ended. The
check reads every file (`find … -exec cat {} + | sha256sum`). Runs are interleaved.
`run_again` is the next `make check` in the same workspace (no upload): the steady state.
An upload creates every file anew, which a bind mount never does: on a busy ext4 each create
costs hundreds of microseconds, and that, not the checks, is most of the upload.

    bash scripts/bench.sh workspace   # or: .venv/bin/python -m tests.benchmarks.bench_workspace
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from tests.benchmarks.harness import prepare, served
from warden.cli.client import ApiClient
from warden.cli.workspace import upload
from warden.config import REPO_ROOT
from warden.core.filesystem import restrict_umask
from warden.db.session import make_engine, make_sessionmaker, unit_of_work
from warden.identity.service import Caller, create_principal, get_principal, get_tenant, issue_token
from warden.policy.changes import apply_change
from warden.policy.rules import read_csv

MAKEFILE = "check:\n\t@find src -type f -exec cat {} + | sha256sum\n\t@find src -type f | wc -l\n"


def make_tree(root: Path, files: int, total_bytes: int) -> None:
    size = total_bytes // files
    (root / "src").mkdir(parents=True)
    (root / "Makefile").write_text(MAKEFILE)
    for i in range(files):
        folder = root / "src" / f"d{i // 100:03d}"
        folder.mkdir(exist_ok=True)
        (folder / f"f{i:05d}.txt").write_bytes(os.urandom(size))
    for path in [root, *root.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)  # the bare run's user reads it too


def bare(image: str, tree: Path) -> tuple[float, str]:
    started = time.monotonic()
    out = subprocess.run(  # noqa: S603 - fixed arguments
        ["docker", "run", "--rm", "--user", "10001:10001", "-v", f"{tree}:/workspace"]  # noqa: S607
        + ["-w", "/workspace", image, "make", "check"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return time.monotonic() - started, out


def warden(
    http: httpx.Client, client: ApiClient, name: str, tree: Path
) -> tuple[float, float, str]:
    """(upload seconds, upload + run seconds, output)."""
    headers = {"authorization": f"Bearer {client.token}"}
    started = time.monotonic()
    http.post("/v1/workspaces", json={"name": name}, headers=headers).raise_for_status()
    upload(client, name, tree)
    uploaded = time.monotonic() - started
    ran, out = run(http, headers, name)
    return uploaded, uploaded + ran, out


def run(http: httpx.Client, headers: dict[str, str], name: str) -> tuple[float, str]:
    """(seconds from launch until the API reports the end, output) of make check in a workspace."""
    started = time.monotonic()
    body = {"segment": "app-dev", "command": ["make", "check"], "workspace": name}
    response = http.post("/v1/sandboxes", json=body, headers=headers)
    response.raise_for_status()
    sandbox_id = response.json()["id"]
    while True:
        row = http.get(f"/v1/sandboxes/{sandbox_id}", headers=headers).json()
        if row["status"] not in ("starting", "running"):
            break
        time.sleep(0.01)
    took = time.monotonic() - started
    if row["status"] != "succeeded":
        raise RuntimeError(f"sandbox {sandbox_id} ended {row['status']}: {row.get('reason')}")
    return took, http.get(f"/v1/sandboxes/{sandbox_id}/logs", headers=headers).text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--mb", type=int, default=100)
    parser.add_argument("--json", type=Path, default=Path("bench-results/workspace.json"))
    parser.add_argument(
        "--dir", type=Path, default=None, help="Where the tree and data dir go (default: temp)"
    )
    args = parser.parse_args()
    restrict_umask()  # as every warden process: `warden serve` refuses data others can read

    import docker

    from warden.config import get_settings
    from warden.sandbox.images import build_all

    built = build_all(
        docker.from_env(timeout=600), get_settings().sandbox, ["app-dev"], lambda m: None
    )
    image = {b.name: b.tag for b in built}["app-dev"]
    samples: dict[str, list[float]] = {
        "bare_docker_run_v": [],
        "upload": [],
        "upload_and_run": [],
        "run_again": [],
    }
    with tempfile.TemporaryDirectory(prefix="warden-bench-", dir=args.dir) as tmp:
        tree = Path(tmp) / "tree"
        make_tree(tree, args.files, args.mb << 20)
        settings, _ = prepare(Path(tmp) / "data", None)
        engine = make_engine(settings.resolved_database_url)
        with unit_of_work(make_sessionmaker(engine)) as db:
            dave = create_principal(db, "dave", "person", get_tenant(db, "acme"))
            token = issue_token(db, dave)
            admin = Caller("admin", "person", "acme", get_principal(db, "admin").id)
            rules = read_csv([REPO_ROOT / "policies" / "sandbox.csv"])
            apply_change(db, admin, add=[*rules, ("g", ("dave", "role:developer", "acme"))])
        engine.dispose()
        with served(settings) as url, httpx.Client(base_url=url, timeout=600) as http:
            client = ApiClient(url=url, token=token)
            bare(image, tree)  # warm-up: the page cache holds the tree for both columns
            for i in range(args.runs):
                wall, bare_out = bare(image, tree)
                samples["bare_docker_run_v"].append(wall)
                uploaded, total, out = warden(http, client, f"bench{i}", tree)
                samples["upload"].append(uploaded)
                samples["upload_and_run"].append(total)
                again, _ = run(http, {"authorization": f"Bearer {token}"}, f"bench{i}")
                samples["run_again"].append(again)
                if bare_out.split()[0] not in out:
                    raise RuntimeError(f"different results: {bare_out!r} vs {out!r}")

    base = statistics.median(samples["bare_docker_run_v"])
    rows: list[dict[str, Any]] = [
        {
            "measure": name,
            "runs": len(values),
            "p50_s": round(statistics.median(values), 3),
            "ratio_vs_bare": round(statistics.median(values) / base, 2),
        }
        for name, values in samples.items()
    ]
    print(f"\ntree: {args.files} files, {args.mb} MB\n")
    print(f"{'measure':20} {'runs':>4} {'p50 s':>8} {'/bare':>7}")
    for r in rows:
        print(f"{r['measure']:20} {r['runs']:>4} {r['p50_s']:>8.3f} {r['ratio_vs_bare']:>7.2f}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"image": image, "rows": rows, "samples": samples}, indent=2))
    print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
