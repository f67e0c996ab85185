"""Streamed governed reads: a large `engagements` version read through a real `warden serve`
(SDK `iter_batches`: Arrow batches into polars frames as they arrive) against
`polars.scan_parquet(...).select(same columns).collect()` of the same file, same run,
interleaved. Reports throughput and its ratio, time to first byte, and peak RSS: the API
process's growth during the governed read against a fresh process's growth during the raw
read, and the CPU seconds each side spent (API process and SDK client against the raw
scan's process; the object store's, SeaweedFS on this machine, counted apart). On the local
datasets folder, and on SeaweedFS when scripts/seaweedfs-up.sh can start one. With `--before
REV`, REV's code (a detached worktree) serves the same registered version beside this
checkout's (`--before` again for more arms): each round reads through every server, in
alternating order, and makes one raw scan, so all arms see the same machine.

Run: .venv/bin/python -m tests.benchmarks.bench_stream [--rows 10000000] [--storage local]
     [--before REV]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import polars as pl
import pyarrow.parquet as pq

from tests.benchmarks.bench_read import COLUMNS, _seed
from tests.benchmarks.bench_small_reads import trees_to_compare
from tests.benchmarks.harness import prepare
from tests.serving import bound_engine, register_like, serve_env, serve_process
from warden.catalog.service import load_view
from warden.catalog.storage import Storage, storage_for
from warden.db.session import make_sessionmaker, unit_of_work
from warden.sdk import Client

REPO = Path(__file__).resolve().parents[2]
RAW = """
import sys, json, time, polars as pl
def hwm():
    return next(int(l.split()[1]) * 1024 for l in open("/proc/self/status")
                if l.startswith("VmHWM:"))
location, columns, options = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3])
pl.DataFrame({"a": [1]}).lazy().collect()
before = hwm()
t0, c0 = time.perf_counter(), time.process_time()
kw = {"storage_options": options} if options else {}
frame = pl.scan_parquet(location, **kw).select(columns).collect()
s, cpu = time.perf_counter() - t0, time.process_time() - c0
print(json.dumps({"s": s, "cpu": cpu, "rows": frame.height, "grown": hwm() - before}))
"""


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, all its threads."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def peak_rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM")


def store_pid() -> int | None:
    """The SeaweedFS process scripts/seaweedfs-up.sh started (its CPU is paid by both sides of
    the comparison, on this machine's cores)."""
    port = os.environ.get("WARDEN_SEAWEEDFS_PORT", "8333")
    where = Path(os.environ.get("WARDEN_SEAWEEDFS_DIR", f"/tmp/warden-seaweedfs-{port}"))
    with contextlib.suppress(OSError, ValueError):
        pid = int((where / "weed.pid").read_text())
        return pid if Path(f"/proc/{pid}").is_dir() else None
    return None


def seaweedfs() -> dict[str, str] | None:
    done = subprocess.run(  # noqa: S603
        ["bash", str(REPO / "scripts" / "seaweedfs-up.sh")],  # noqa: S607
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "WARDEN_VENV": sys.prefix},
    )
    if done.returncode != 0:
        print(f"note: no SeaweedFS ({done.stderr.strip()[-300:]}); local only", file=sys.stderr)
        return None
    pairs = (line.removeprefix("export ").partition("=") for line in done.stdout.splitlines())
    return {name: value for name, _, value in pairs}


def in_bucket(settings: Any, s3: dict[str, str], prefix: str) -> tuple[Any, dict[str, str]]:
    """`settings` and a server's environment pointed at a fresh prefix of SeaweedFS's bucket."""
    env = {**s3, "WARDEN_STORAGE_URL": s3["WARDEN_STORAGE_URL"] + f"/{prefix}"}
    settings = settings.model_copy(
        update={
            "storage_url": env["WARDEN_STORAGE_URL"],
            "s3_endpoint_url": env["WARDEN_S3_ENDPOINT_URL"],
            "s3_access_key_id": env["WARDEN_S3_ACCESS_KEY_ID"],
            "s3_secret_access_key": env["WARDEN_S3_SECRET_ACCESS_KEY"],
        }
    )
    return settings, env


def big_version(settings: Any, rows: int, store: Storage, tmp: Path) -> tuple[str, dict[str, Any]]:
    """`rows` rows of the seeded `engagements` repeated, registered as its next version; and
    what each step took (seconds, bytes on disk, this process's peak RSS)."""
    engine = bound_engine(settings)
    sessions = make_sessionmaker(engine)
    with unit_of_work(sessions) as db:
        view = load_view(db, settings.datasets_dir, "acme", "engagements")
    small = pl.read_parquet(view.path).to_arrow()
    source = tmp / "big.parquet"
    steps: dict[str, Any] = {}
    t0 = time.perf_counter()
    # written a copy at a time: 100M rows held at once would need ~10 GB here
    with pq.ParquetWriter(source, small.schema, compression="zstd") as out:
        for start in range(0, rows, small.num_rows):
            out.write_table(small.slice(0, rows - start), row_group_size=128 * 1024)
    steps["write_source_s"] = round(time.perf_counter() - t0, 1)
    steps["source_bytes"] = source.stat().st_size
    t0 = time.perf_counter()
    with unit_of_work(sessions) as db:
        register_like(db, store, view, source)
    steps["register_s"] = round(time.perf_counter() - t0, 1)
    steps["bench_process_peak_rss_mib"] = round(peak_rss(os.getpid()) / 2**20, 1)
    source.unlink()
    with unit_of_work(sessions) as db:
        location = load_view(db, settings.datasets_dir, "acme", "engagements").location
    engine.dispose()
    return location, steps


def first_byte(url: str, token: str) -> float:
    body = {"purpose": "training", "columns": COLUMNS}
    with httpx.Client(base_url=url, timeout=600) as http:
        t0 = time.perf_counter()
        with http.stream(
            "POST",
            "/v1/datasets/engagements/read",
            json=body,
            headers={"authorization": f"Bearer {token}"},
        ) as response:
            next(response.iter_raw())
            return time.perf_counter() - t0


def raw_read(location: str, options: dict[str, Any]) -> dict[str, Any]:
    done = subprocess.run(  # noqa: S603
        [sys.executable, "-c", RAW, location, json.dumps(COLUMNS), json.dumps(options)],
        capture_output=True,
        text=True,
        check=True,
    )
    return dict(json.loads(done.stdout))


def measure(
    storage: str, rows: int, repeats: int, s3: dict[str, str] | None, trees: dict[str, Path]
) -> list[dict[str, Any]]:
    """One result per arm (`trees`: label -> checkout whose code serves), same version."""
    with tempfile.TemporaryDirectory(prefix="warden-bench-") as name:
        tmp = Path(name)
        settings, token = prepare(tmp / "data", None)
        _seed(settings, "small")
        env: dict[str, str] = {}
        if storage == "s3":
            assert s3 is not None
            settings, env = in_bucket(settings, s3, f"bench-{time.time_ns()}")
        location, steps = big_version(settings, rows, storage_for(settings), tmp)
        options = dict(storage_for(settings).file(location).options)
        for path in [settings.data_dir, *settings.data_dir.rglob("*")]:
            path.chmod(path.stat().st_mode & 0o700)
        store = store_pid() if storage == "s3" else None
        with contextlib.ExitStack() as stack:
            arms = {}
            for label, tree in trees.items():
                proc, url = stack.enter_context(served(settings, tree, env))
                client = stack.enter_context(Client(url=url, token=token))
                client.read("engagements", purpose="training", columns=COLUMNS, limit=1000)
                arms[label] = _Arm(proc.pid, url, client, peak_rss(proc.pid), store)
            raw, raw_cpu, raw_grown, loads, raw_store = [], [], [], [], []
            for round_ in range(repeats):  # interleaved: every arm sees the same machine noise
                order = list(arms.values())
                for arm in order if round_ % 2 == 0 else reversed(order):
                    arm.read(token, rows)
                s0 = cpu_seconds(store) if store else 0.0
                r = raw_read(location, options)
                raw_store.append(cpu_seconds(store) - s0 if store else 0.0)
                assert r["rows"] == rows
                raw.append(r["s"])
                raw_cpu.append(r["cpu"])
                raw_grown.append(r["grown"])
                loads.append(os.getloadavg()[0])
            for arm in arms.values():
                arm.peak = peak_rss(arm.pid)
    return [
        arm.result(label, storage, rows, raw, raw_cpu, raw_grown, loads, steps, raw_store)
        for label, arm in arms.items()
    ]


@contextlib.contextmanager
def served(settings: Any, tree: Path, env: dict[str, str]) -> Any:
    """`warden serve` running `tree`'s code on `settings`' data."""
    environment = serve_env(
        settings, WARDEN_JOBS_WORKER="false", PYTHONPATH=f"{tree / 'platform'}{os.pathsep}{tree}"
    )
    log = settings.data_dir / f"serve-{time.time_ns()}.log"
    with serve_process({**environment, **env}, cwd=tree, log=log, log_level="info") as served:
        yield served


class _Arm:
    """One server's governed reads: wall and CPU seconds (API, SDK client), first bytes."""

    def __init__(
        self, pid: int, url: str, client: Client, baseline: int, store: int | None
    ) -> None:
        self.pid, self.url, self.client, self.baseline = pid, url, client, baseline
        self.store = store
        self.peak = baseline
        self.wall: list[float] = []
        self.api_cpu: list[float] = []
        self.client_cpu: list[float] = []
        self.store_cpu: list[float] = []
        self.ttfb: list[float] = []

    def read(self, token: str, rows: int) -> None:
        self.ttfb.append(first_byte(self.url, token))
        s0 = cpu_seconds(self.store) if self.store else 0.0
        t0, a0, c0 = time.perf_counter(), cpu_seconds(self.pid), time.process_time()
        batches = self.client.iter_batches("engagements", purpose="training", columns=COLUMNS)
        got = sum(b.height for b in batches)
        self.wall.append(time.perf_counter() - t0)
        self.api_cpu.append(cpu_seconds(self.pid) - a0)
        self.client_cpu.append(time.process_time() - c0)
        self.store_cpu.append(cpu_seconds(self.store) - s0 if self.store else 0.0)
        assert got == rows

    def result(
        self,
        label: str,
        storage: str,
        rows: int,
        raw: list[float],
        raw_cpu: list[float],
        raw_grown: list[int],
        loads: list[float],
        steps: dict[str, Any],
        raw_store: list[float],
    ) -> dict[str, Any]:
        g, r_s = statistics.median(self.wall), statistics.median(raw)
        raw_rss = statistics.median(raw_grown)
        grown = self.peak - self.baseline
        # CPU seconds move far less with the machine's load than wall times: on a busy
        # machine the wall ratio follows the CPU ratio (the object store's CPU, paid by
        # both, is left out).
        g_cpu = statistics.median(a + c for a, c in zip(self.api_cpu, self.client_cpu, strict=True))
        return {
            "benchmark": "governed_stream_read",
            "code": label,
            "storage": storage,
            "rows": rows,
            "columns": len(COLUMNS),
            "masked": 1,
            "governed_s_median": round(g, 3),
            "raw_scan_s_median": round(r_s, 3),
            "ratio": round(r_s / g, 3),
            "ttfb_ms_median": round(statistics.median(self.ttfb) * 1000, 1),
            "api_peak_rss_mib": round(self.peak / 2**20, 1),  # the 1.5 GB bound
            "api_peak_rss_growth_mib": round(grown / 2**20, 1),
            "raw_peak_rss_growth_mib": round(raw_rss / 2**20, 1),
            "rss_ratio": round(grown / raw_rss, 3) if raw_rss else None,
            "governed_s": [round(x, 3) for x in self.wall],
            "raw_scan_s": [round(x, 3) for x in raw],
            "api_cpu_s": [round(x, 3) for x in self.api_cpu],
            "api_cpu_s_median": round(statistics.median(self.api_cpu), 3),
            "client_cpu_s_median": round(statistics.median(self.client_cpu), 3),
            "raw_cpu_s_median": round(statistics.median(raw_cpu), 3),
            "cpu_ratio": round(statistics.median(raw_cpu) / g_cpu, 3),
            # with the object store's CPU on this machine (SeaweedFS), each side's own
            "store_cpu_s_median": round(statistics.median(self.store_cpu), 3),
            "raw_store_cpu_s_median": round(statistics.median(raw_store), 3),
            "cpu_ratio_with_store": round(
                statistics.median(c + s for c, s in zip(raw_cpu, raw_store, strict=True))
                / statistics.median(
                    a + c + s
                    for a, c, s in zip(self.api_cpu, self.client_cpu, self.store_cpu, strict=True)
                ),
                3,
            ),
            "load_1min": [round(x, 1) for x in loads],
            **steps,
        }


def print_table(rows: list[dict[str, Any]]) -> None:
    t = rows[0]
    print(
        f"governed streamed read of engagements ({t['rows']:,} rows, {t['columns']} columns,"
        f" {t['masked']} masked) via SDK iter_batches,"
        " vs polars.scan_parquet().collect(), same run:"
    )
    head = (
        f"  {'code':<16} {'storage':<8} {'governed':>9} {'raw':>8} {'ratio':>6} {'ttfb':>8}"
        f" {'API peak RSS':>13} {'API peak RSS +':>15} {'raw peak RSS +':>15} {'rss ratio':>9}"
        f"  CPU s: {'API':>5} {'client':>6} {'raw':>5} {'ratio':>5}"
    )
    print(head)
    for r in rows:
        print(
            f"  {r['code']:<16} {r['storage']:<8}"
            f" {r['governed_s_median']:>8.2f}s {r['raw_scan_s_median']:>7.2f}s"
            f" {r['ratio']:>6.2f} {r['ttfb_ms_median']:>6.1f}ms"
            f" {r['api_peak_rss_mib']:>9.0f} MiB {r['api_peak_rss_growth_mib']:>11.0f} MiB"
            f" {r['raw_peak_rss_growth_mib']:>11.0f} MiB"
            f" {r['rss_ratio']:>9}"
            f"         {r['api_cpu_s_median']:>5.2f} {r['client_cpu_s_median']:>6.2f}"
            f" {r['raw_cpu_s_median']:>5.2f} {r['cpu_ratio']:>5.2f}"
        )
        print(
            f"    {r['storage']}: source written in {r['write_source_s']}s"
            f" ({r['source_bytes'] / 2**20:,.0f} MiB), registered in {r['register_s']}s"
            f" (bench process peak {r['bench_process_peak_rss_mib']:,.0f} MiB);"
            f" API CPU s per read {r['api_cpu_s']}, load {r['load_1min']}; object store CPU s"
            f" {r['store_cpu_s_median']} (raw scan's {r['raw_store_cpu_s_median']}), CPU ratio"
            f" with it {r['cpu_ratio_with_store']}"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--storage", choices=["local", "s3", "both"], default="both")
    parser.add_argument("--json", type=Path, default=Path("bench-results/stream.json"))
    parser.add_argument(
        "--before",
        action="append",
        default=[],
        help="a git revision to serve beside this one (again for several, each an arm)",
    )
    args = parser.parse_args(argv)
    s3 = seaweedfs() if args.storage in ("s3", "both") else None
    kinds = ["local"] if args.storage == "local" else ["s3"] if args.storage == "s3" else ["local"]
    if args.storage == "both" and s3 is not None:
        kinds.append("s3")
    with contextlib.ExitStack() as stack:
        trees = trees_to_compare(stack, args.before, REPO)
        results = [r for kind in kinds for r in measure(kind, args.rows, args.repeats, s3, trees)]
    print_table(results)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"benchmark": "stream", "results": results}, indent=2))
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
