"""How the ranks of a data-parallel run read and sample the domain tower's training pairs.

Each rank reads only its shard of ``pin_pairs`` through the gateway (``shard=(rank, world)``:
the rows whose position in the version's file is rank modulo world, audited with the shard),
at the version rank 0 read, so the shards partition one version. The pins are read whole,
at rank 0's version too: any pair may name any pin, and hard negatives are mined from all.

A step's global batch is drawn as one process draws it, ``batch`` pairs independently with
probability proportional to weight over *all* pairs, split by where they fall: how many come
from each rank's shard is drawn from a generator every rank holds in the same state (a
multinomial over the shards' weight totals), then each rank draws that many from its own
shard by weight. That is the single-process distribution, not the single-process sample
(which needs every pair on every rank). Hard negatives go to a uniformly random
``n_hard`` of the global batch's anchors, as the single process's first ``n_hard`` are.
One process reads and draws exactly as before this module.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from warden_ml.common import Reader, Spec
from warden_ml.data import Pins, read_pairs, read_pins
from warden_ml.dist import World, all_counts, all_totals, from_rank0

VERSION = "x-warden-dataset-version"


def read_domain_data(client: Reader, spec: Spec, world: World) -> tuple[Pins, np.ndarray]:
    """The pins (whole) and this rank's pairs (one process: all of them)."""
    if not world.distributed:
        pins = read_pins(client, spec, "training")
        return pins, read_pairs(client, spec, pins, "training")
    shard = (world.rank, world.size)
    versions: tuple[str, str] | None = None
    if world.rank == 0:
        pins_info: dict[str, str] = {}
        pairs_info: dict[str, str] = {}
        try:
            pins = read_pins(client, spec, "training", info=pins_info)
            pairs = read_pairs(client, spec, pins, "training", shard=shard, info=pairs_info)
            versions = (pins_info[VERSION], pairs_info[VERSION])
        finally:  # the other ranks wait for these versions, even when the reads failed
            from_rank0(versions, world)
        return pins, pairs
    versions = from_rank0(None, world)
    if versions is None:
        raise RuntimeError("rank 0 could not read the training data (its log says why)")
    pins = read_pins(client, spec, "training", version=versions[0])
    return pins, read_pairs(client, spec, pins, "training", shard=shard, version=versions[1])


@dataclass
class PairBatches:
    """Draws each step's local batch of (anchor, positive) pin rows from this rank's pairs.

    ``shared`` must be in the same state on every rank (it decides the split, and the caller
    mines hard negatives with it); ``local`` is this rank's own.
    """

    pairs: np.ndarray  # (M, 3): index a, index b, weight
    world: World
    shared: np.random.Generator
    local: np.random.Generator

    def __post_init__(self) -> None:
        self.a_idx = self.pairs[:, 0].astype(np.int64)
        self.b_idx = self.pairs[:, 1].astype(np.int64)
        weight = self.pairs[:, 2]
        self.prob = weight / weight.sum() if weight.shape[0] else weight
        totals = all_counts(self.world, self.pairs.shape[0])
        self.pairs_per_rank = [t[0] for t in totals]
        self.shard_weights = all_totals(self.world, float(weight.sum()))

    @property
    def total(self) -> int:
        return sum(self.pairs_per_rank)

    def draw(self, batch: int, n_hard: int) -> tuple[np.ndarray, np.ndarray, int]:
        """This rank's anchors, positives, and how many of its first anchors get a hard
        negative."""
        if not self.world.distributed:
            pick = self.shared.choice(self.pairs.shape[0], size=batch, p=self.prob)
            flip = self.shared.random(batch) < 0.5
            return self._pairs(pick, flip) + (n_hard,)
        counts = self.shared.multinomial(batch, self.shard_weights / self.shard_weights.sum())
        hard = self.shared.multivariate_hypergeometric(counts, min(n_hard, batch))
        mine = int(counts[self.world.rank])
        pick = np.zeros(0, dtype=np.int64)
        if mine:  # an empty shard (weight 0) is never drawn from
            pick = self.local.choice(self.pairs.shape[0], size=mine, p=self.prob)
        flip = self.local.random(mine) < 0.5
        return self._pairs(pick, flip) + (int(hard[self.world.rank]),)

    def _pairs(self, pick: np.ndarray, flip: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        a = np.where(flip, self.b_idx[pick], self.a_idx[pick])
        b = np.where(flip, self.a_idx[pick], self.b_idx[pick])
        return a, b
