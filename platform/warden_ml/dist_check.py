"""A focused data-parallel check: a few domain-tower steps on synthetic tensors.

``torchrun --nproc-per-node 2 -m warden_ml.dist_check OUT`` and a plain single-process run
(``python -m warden_ml.dist_check OUT``) must end with the same loss trace and the same
parameters; each rank writes ``rank{r}.pt`` into OUT (losses + state_dict).
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from warden_ml.dist import close_world, domain_step, init_world
from warden_ml.models import CNNTower


def run(out: Path, steps: int = 3, batch: int = 16, n_hard: int = 6) -> None:
    world = init_world()
    try:
        torch.manual_seed(0)
        torch.use_deterministic_algorithms(True)
        torch.set_num_threads(1)
        model = CNNTower()
        opt = torch.optim.SGD(model.parameters(), lr=0.5)
        data = torch.Generator().manual_seed(1)
        losses = []
        for _ in range(steps):
            a = torch.rand(batch, 1, 8, 8, generator=data)
            b = (a + 0.05 * torch.randn(batch, 1, 8, 8, generator=data)).clamp(0, 1)
            hard = torch.rand(n_hard, 1, 8, 8, generator=data)
            losses.append(domain_step(model, opt, a, b, hard, world))
        out.mkdir(parents=True, exist_ok=True)
        torch.save(
            {"losses": losses, "state": model.state_dict(), "world": world.size},
            out / f"rank{world.rank}.pt",
        )
    finally:
        close_world(world)


if __name__ == "__main__":
    run(Path(sys.argv[1]))
