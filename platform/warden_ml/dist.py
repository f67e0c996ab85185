"""Data-parallel training on CPU processes (torchrun, gloo) for the domain tower.

Each rank reads its own shard of the training pairs and draws its own local batch from it
(`warden_ml.shards`). A step encodes the local batch, all-gathers every rank's embeddings (the
others' without gradient, its own with) and computes the loss on their concatenation, the
global batch: every rank computes the *same* loss, the one a single process computes on that
global batch. A rank's gradient covers only its own part's path; summing gradients across
ranks (all_reduce SUM) gives exactly the single-process gradient of that loss, and identical
optimizer steps keep parameters identical on every rank (`parameters_agree` checks it).
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from typing import Any, NoReturn

import numpy as np
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


def init_world() -> World:
    """Join the process group when launched by torchrun (WORLD_SIZE > 1); else one process."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size <= 1:
        return World()
    if not dist.is_initialized():
        dist.init_process_group("gloo")
    return World(dist.get_rank(), dist.get_world_size())


def close_world(world: World, *, finished: bool) -> None:
    """Leave the process group. After a finished run each rank first waits for the others:
    gloo aborted a rank whose peer tore its connections down while it was still leaving
    ("terminate called without an active exception", SIGABRT, seen in CI under load). After a
    failure no wait: the other ranks may be inside a collective that will never match."""
    if world.distributed and dist.is_initialized():
        if finished:
            dist.barrier()
        dist.destroy_process_group()


def exit_rank(code: int) -> NoReturn:
    """End this process with `code`, skipping the interpreter's teardown when it is one rank of
    several: gloo's threads can abort it there ("terminate called without an active
    exception", SIGABRT, with no Python frame left: 1-2 runs in 20 of the two-rank check on a
    loaded 2-core machine, after every rank had finished and left the group), which torchrun
    reports as the whole run failing."""
    sys.stdout.flush()
    sys.stderr.flush()
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        os._exit(code)
    sys.exit(code)


def all_counts(world: World, *counts: int) -> list[list[int]]:
    """Every rank's `counts`, by rank (one process: its own)."""
    if not world.distributed:
        return [list(counts)]
    mine = torch.tensor(counts, dtype=torch.int64)
    parts = [torch.zeros_like(mine) for _ in range(world.size)]
    dist.all_gather(parts, mine)
    return [[int(c) for c in part] for part in parts]


def all_totals(world: World, value: float) -> np.ndarray:
    """Every rank's `value` (float64), by rank."""
    if not world.distributed:
        return np.asarray([value])
    mine = torch.tensor([value], dtype=torch.float64)
    parts = [torch.zeros_like(mine) for _ in range(world.size)]
    dist.all_gather(parts, mine)
    return np.asarray([float(part.item()) for part in parts])


def any_rank(flags: np.ndarray, world: World) -> np.ndarray:
    """Element-wise OR of a boolean vector over the ranks."""
    if not world.distributed:
        return flags
    summed = torch.from_numpy(flags.astype(np.int64))
    dist.all_reduce(summed, op=dist.ReduceOp.SUM)
    return np.asarray(summed.numpy() > 0)


def from_rank0(value: Any, world: World) -> Any:
    """Rank 0's `value` on every rank."""
    if not world.distributed:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def gather_with_local_grad(local: torch.Tensor, world: World, sizes: list[int]) -> torch.Tensor:
    """Every rank's rows in rank order; only this rank's carry gradient. Gloo gathers equal
    shapes only, so each part is padded to the largest and cut back after."""
    if not world.distributed:
        return local
    top = max(sizes)
    padded = torch.zeros(top, *local.shape[1:], dtype=local.dtype)
    padded[: local.shape[0]] = local.detach()
    parts = [torch.zeros_like(padded) for _ in sizes]
    dist.all_gather(parts, padded)
    rows = [part[:n] for part, n in zip(parts, sizes, strict=True)]
    rows[world.rank] = local
    return torch.cat(rows, dim=0)


def sync_grads(model: nn.Module, world: World) -> None:
    if not world.distributed:
        return
    for p in model.parameters():
        if p.grad is None:  # a rank with no rows this step still joins every all_reduce
            p.grad = torch.zeros_like(p)
        dist.all_reduce(p.grad, op=dist.ReduceOp.SUM)


def parameters_agree(model: nn.Module, world: World) -> bool:
    """True when every rank holds exactly rank 0's parameters."""
    if not world.distributed:
        return True
    mine = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    theirs = mine.clone()
    dist.broadcast(theirs, src=0)
    same = torch.tensor([int(torch.equal(mine, theirs))], dtype=torch.int64)
    dist.all_reduce(same, op=dist.ReduceOp.MIN)
    return bool(same.item())


def domain_step(
    model: nn.Module,
    opt: torch.optim.Optimizer,
    anchors: torch.Tensor,
    positives: torch.Tensor,
    hard: torch.Tensor | None,
    world: World,
    temperature: float = 0.1,
) -> float:
    """One contrastive step on this rank's LOCAL batch (its own rows; one process: the whole
    batch); the loss is over the global batch, every rank's rows in rank order."""
    if not world.distributed:
        za, zb = model(anchors), model(positives)
        zh = model(hard) if hard is not None and hard.shape[0] else None
    else:
        if hard is None:
            hard = anchors[:0]
        sizes = all_counts(world, anchors.shape[0], hard.shape[0])
        za = gather_with_local_grad(model(anchors), world, [s[0] for s in sizes])
        zb = gather_with_local_grad(model(positives), world, [s[0] for s in sizes])
        hard_sizes = [s[1] for s in sizes]
        zh = gather_with_local_grad(model(hard), world, hard_sizes) if any(hard_sizes) else None
    loss = info_nce(za, zb, zh, temperature=temperature)
    opt.zero_grad(set_to_none=False)
    loss.backward()
    sync_grads(model, world)
    opt.step()
    return float(loss.detach())
