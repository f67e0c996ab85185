"""torchrun with two gloo CPU processes: the step against one process at the same global batch,
each rank's read of its own shard through a real gateway, and train-domain on two ranks."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import torch

from tests.jobs.conftest import sqlite_only
from warden.sdk import Client
from warden_ml.cli import run_step
from warden_ml.common import Spec
from warden_ml.dist import World
from warden_ml.shards import read_domain_data

PLATFORM = str(Path(__file__).resolve().parents[2] / "platform")
# These test torch's ranks, not the database: one backend is enough.
db_url = sqlite_only


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE")}
    env["PYTHONPATH"] = PLATFORM + os.pathsep + env.get("PYTHONPATH", "")
    env["OMP_NUM_THREADS"] = "1"
    return env | extra


def _torchrun(*args: str, **env: str) -> None:
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent)) or "torchrun"
    done = subprocess.run(
        [torchrun, "--standalone", "--nproc-per-node", "2", *args],
        env=_env(**env), timeout=300, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]


def _ranks(out: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    r0 = torch.load(out / "rank0.pt", weights_only=True)
    r1 = torch.load(out / "rank1.pt", weights_only=True)
    assert r0["world"] == r1["world"] == 2
    return r0, r1


def test_two_ranks_match_one_process(tmp_path: Path) -> None:
    _torchrun("-m", "warden_ml.dist_check", str(tmp_path / "two"))
    subprocess.run(
        [sys.executable, "-m", "warden_ml.dist_check", str(tmp_path / "one")],
        env=_env(), check=True, timeout=120, capture_output=True,
    )  # fmt: skip
    r0, r1 = _ranks(tmp_path / "two")
    one = torch.load(tmp_path / "one" / "rank0.pt", weights_only=True)
    assert one["world"] == 1
    # each rank saw only its own rows (one with 8 of 15, one with 0 of 1 hard negatives), yet
    # the loss, the gradient and so the parameters are the one process's on all the rows
    for name, p in r0["state"].items():
        assert torch.equal(p, r1["state"][name]), f"{name} differs across ranks"
        assert torch.allclose(p, one["state"][name], atol=1e-5), f"{name} differs from 1 proc"
    for a, b in zip(r0["losses"], one["losses"], strict=True):
        assert abs(a - b) < 1e-5
    assert r0["losses"] == r1["losses"]
    assert one["losses"][-1] != one["losses"][0]  # the steps did train


def _pairs(ids: torch.Tensor) -> set[tuple[int, int]]:
    found = {(int(a), int(b)) for a, b in ids.tolist()}
    assert len(found) == ids.shape[0], "a pair read twice"
    return found


def test_each_rank_reads_only_its_shard_and_together_they_cover_the_answer(
    live_warden: Any, tmp_path: Path
) -> None:
    token = live_warden.tokens["alice"]
    _torchrun("-m", "warden_ml.dist_check", str(tmp_path), "reads", WARDEN_TOKEN=token)
    r0, r1 = _ranks(tmp_path)
    with Client(url=live_warden.url, token=token) as alice:  # the single-process read
        pins, whole = read_domain_data(alice, Spec(seed=0), World())
    ids = torch.from_numpy(pins.ids)
    everything = _pairs(ids[torch.from_numpy(whole[:, :2].astype("int64"))])
    mine0, mine1 = _pairs(r0["pairs"]), _pairs(r1["pairs"])
    assert mine0 and mine1 and mine0.isdisjoint(mine1)
    assert mine0 | mine1 == everything
    assert torch.equal(r0["pins"], ids) and torch.equal(r1["pins"], ids)  # pins read whole

    events = [e for e in live_warden.audit_events(actor="alice", limit="500")
              if e["action"] == "dataset.read" and e["decision"] == "allow"]  # fmt: skip
    sharded = {
        e["details"]["shard"]["rank"]: e
        for e in events
        if e["dataset"] == "pin_pairs" and "shard" in (e["details"] or {})
    }
    assert set(sharded) == {0, 1}
    for rank, got in ((0, r0), (1, r1)):
        event = sharded[rank]
        assert event["details"]["shard"] == {"rank": rank, "world": 2, "by": "position"}
        assert event["rows"] == got["pairs"].shape[0]
    # rank 1 read the version rank 0 read, of both datasets, so the shards partition one
    version = sharded[0]["dataset_version"]
    assert sharded[1]["dataset_version"] == version and sharded[1]["details"]["as_of"] == version
    pins_reads = [e for e in events if e["dataset"] == "pins"]
    assert len({e["dataset_version"] for e in pins_reads}) == 1
    assert sum(1 for e in pins_reads if (e["details"] or {}).get("as_of")) == 1


def test_train_domain_on_two_ranks_trains_one_model_on_the_global_batch(
    live_warden: Any, tmp_path: Path
) -> None:
    params = {"steps": 8, "batch": 128, "mine_every": 4, "threads": 1}  # mines once
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({"seed": 0, "params": params}))
    token = live_warden.tokens["alice"]
    _torchrun("-m", "warden_ml", "train-domain", "--spec", str(spec), "--out",
              str(tmp_path / "two"), WARDEN_TOKEN=token)  # fmt: skip
    # The run itself checks that both ranks end with identical parameters (and fails if not).
    two = json.loads((tmp_path / "two" / "metrics.json").read_text())
    with Client(url=live_warden.url, token=token) as alice:
        one = run_step("train-domain", Spec(seed=0, params=params), tmp_path / "one", alice)
    assert two["world_size"] == 2 and one["world_size"] == 1
    assert two["pairs"] == sum(two["pairs_per_rank"]) == one["pairs"]
    assert all(0 < n < one["pairs"] for n in two["pairs_per_rank"])
    # Each rank draws its part of the batch from its own shard, so the sample (and the loss
    # trace) is not the one process's, only its distribution is (an exact step against one
    # process is test_two_ranks_match_one_process). What must hold here besides identical
    # parameters: the loss is over the whole global batch. An untrained tower's InfoNCE is
    # about the log of the number of candidates, so a loss over one rank's half of the batch
    # would be about log 2 = 0.69 lower; first batches differ by about 0.1 at this size.
    assert math.isfinite(two["loss_first"]) and math.isfinite(two["loss_last"])
    assert abs(two["loss_first"] - one["loss_first"]) < math.log(2) / 2
    assert two["examples"] == one["examples"] == 8 * 128
    assert (tmp_path / "two" / "domain_tower.pt").exists()
