"""Focused data-parallel checks, each rank writing ``rank{r}.pt`` into OUT.

``torchrun --nproc-per-node 2 -m warden_ml.dist_check OUT`` and a plain single-process run
(``python -m warden_ml.dist_check OUT``): a few domain-tower steps on synthetic tensors,
each rank given only its own rows of every global batch (position modulo world, as its shard
read gives them); both must end with the same loss trace and the same parameters.

``... -m warden_ml.dist_check OUT reads``: each rank reads the training data as train-domain
does (``warden.sdk.Client()`` from the environment) and saves the pin ids of its pairs.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from warden_ml.common import Spec
from warden_ml.dist import World, close_world, domain_step, exit_rank, init_world
from warden_ml.models import CNNTower
from warden_ml.shards import read_domain_data

# (global batch, hard negatives) per step: unequal and empty local parts on two ranks too
STEPS = ((16, 6), (15, 5), (9, 1))


def steps(world: World) -> dict[str, object]:
    torch.manual_seed(0)
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    model = CNNTower()
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    data = torch.Generator().manual_seed(1)
    mine = slice(world.rank, None, world.size)
    losses = []
    for batch, n_hard in STEPS:
        a = torch.rand(batch, 1, 8, 8, generator=data)
        b = (a + 0.05 * torch.randn(batch, 1, 8, 8, generator=data)).clamp(0, 1)
        hard = torch.rand(n_hard, 1, 8, 8, generator=data)
        losses.append(domain_step(model, opt, a[mine], b[mine], hard[mine], world))
    return {"losses": losses, "state": model.state_dict()}


def reads(world: World) -> dict[str, object]:
    from warden.sdk import Client

    with Client() as client:
        pins, pairs = read_domain_data(client, Spec(seed=0), world)
    ids = torch.from_numpy(pins.ids)
    rows = torch.from_numpy(pairs[:, :2].astype("int64"))
    return {"pairs": ids[rows], "weights": torch.from_numpy(pairs[:, 2]), "pins": ids}


def run(out: Path, mode: str = "steps") -> None:
    world = init_world()
    finished = False
    try:
        result = {"steps": steps, "reads": reads}[mode](world)
        out.mkdir(parents=True, exist_ok=True)
        torch.save({**result, "world": world.size}, out / f"rank{world.rank}.pt")
        finished = True
    finally:
        close_world(world, finished=finished)


if __name__ == "__main__":
    run(Path(sys.argv[1]), *sys.argv[2:3])
    exit_rank(0)
