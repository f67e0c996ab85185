"""Data-parallel training on CPU processes (torchrun, gloo) for the domain tower.

The global batch is split in contiguous shards, one per rank. Each rank encodes its shard,
all-gathers the other ranks' embeddings (no gradient) and puts its own, with gradient, in
its slot, so every rank computes the *same* loss as one process on the global batch. A
rank's gradient then covers only its own shard's path; summing gradients across ranks
(all_reduce SUM) gives exactly the single-process gradient, and identical optimizer steps
keep parameters identical on every rank.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from warden_ml.losses import info_nce


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1

    @property
    def distributed(self) -> bool:
        return self.size > 1

    def shard(self, n: int) -> slice:
        per = -(-n // self.size)
        return slice(min(n, self.rank * per), min(n, (self.rank + 1) * per))


def init_world() -> World:
    """Join the process group when launched by torchrun (WORLD_SIZE > 1); else one process."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size <= 1:
        return World()
    if not dist.is_initialized():
        dist.init_process_group("gloo")
    return World(dist.get_rank(), dist.get_world_size())


def close_world(world: World) -> None:
    if world.distributed and dist.is_initialized():
        dist.destroy_process_group()


def gather_with_local_grad(local: torch.Tensor, world: World, sizes: list[int]) -> torch.Tensor:
    if not world.distributed:
        return local
    parts = [torch.zeros(s, *local.shape[1:], dtype=local.dtype) for s in sizes]
    dist.all_gather(parts, local.detach().contiguous())
    parts[world.rank] = local
    return torch.cat(parts, dim=0)


def sync_grads(model: nn.Module, world: World) -> None:
    if not world.distributed:
        return
    for p in model.parameters():
        if p.grad is not None:
            dist.all_reduce(p.grad, op=dist.ReduceOp.SUM)


def domain_step(
    model: nn.Module,
    opt: torch.optim.Optimizer,
    anchors: torch.Tensor,
    positives: torch.Tensor,
    hard: torch.Tensor | None,
    world: World,
    temperature: float = 0.1,
) -> float:
    """One contrastive step on a GLOBAL batch (every rank passes the same tensors)."""
    n = anchors.shape[0]
    sl = world.shard(n)
    sizes = [len(range(*World(r, world.size).shard(n).indices(n))) for r in range(world.size)]
    za = gather_with_local_grad(model(anchors[sl]), world, sizes)
    zb = gather_with_local_grad(model(positives[sl]), world, sizes)
    zh = None
    if hard is not None and hard.shape[0]:
        m = hard.shape[0]
        hsl = world.shard(m)
        hsizes = [len(range(*World(r, world.size).shard(m).indices(m))) for r in range(world.size)]
        zh = gather_with_local_grad(model(hard[hsl]), world, hsizes)
    loss = info_nce(za, zb, zh, temperature=temperature)
    opt.zero_grad(set_to_none=False)
    loss.backward()
    sync_grads(model, world)
    opt.step()
    return float(loss.detach())
