"""torchrun with two gloo CPU processes against one process at the same global batch."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import torch

PLATFORM = str(Path(__file__).resolve().parents[2] / "platform")


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE")}
    env["PYTHONPATH"] = PLATFORM + os.pathsep + env.get("PYTHONPATH", "")
    env["OMP_NUM_THREADS"] = "1"
    return env


def test_two_ranks_match_one_process(tmp_path: Path) -> None:
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent)) or "torchrun"
    subprocess.run(
        [torchrun, "--standalone", "--nproc-per-node", "2", "-m", "warden_ml.dist_check",
         str(tmp_path / "two")],
        env=_env(), check=True, timeout=120, capture_output=True,
    )  # fmt: skip
    subprocess.run(
        [sys.executable, "-m", "warden_ml.dist_check", str(tmp_path / "one")],
        env=_env(), check=True, timeout=120, capture_output=True,
    )  # fmt: skip
    r0 = torch.load(tmp_path / "two" / "rank0.pt", weights_only=True)
    r1 = torch.load(tmp_path / "two" / "rank1.pt", weights_only=True)
    one = torch.load(tmp_path / "one" / "rank0.pt", weights_only=True)
    assert r0["world"] == r1["world"] == 2 and one["world"] == 1
    for name, p in r0["state"].items():
        assert torch.equal(p, r1["state"][name]), f"{name} differs across ranks"
        assert torch.allclose(p, one["state"][name], atol=1e-5), f"{name} differs from 1 proc"
    for a, b in zip(r0["losses"], one["losses"], strict=True):
        assert abs(a - b) < 1e-5
    assert r0["losses"] == r1["losses"]
    assert one["losses"][-1] != one["losses"][0]  # the steps did train
