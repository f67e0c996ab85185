"""Contrastive losses: InfoNCE (CLIP-style, in-batch + hard negatives) and NT-Xent (SimCLR)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def info_nce(
    anchors: torch.Tensor,
    positives: torch.Tensor,
    hard: torch.Tensor | None = None,
    weights: torch.Tensor | None = None,
    temperature: float = 0.1,
) -> torch.Tensor:
    """Symmetric InfoNCE over a batch of L2-normalised (anchor, positive) pairs.

    Row i's positive is ``positives[i]``; every other positive in the batch is a negative,
    and so is every hard negative (``hard``: (H, d), shared across the batch). ``weights``
    (B,) weight each pair's term (graph edge weights); the mean is weight-normalised.
    """
    logits = anchors @ positives.T / temperature
    if hard is not None and hard.shape[0]:
        logits_a = torch.cat([logits, anchors @ hard.T / temperature], dim=1)
    else:
        logits_a = logits
    target = torch.arange(anchors.shape[0], device=anchors.device)
    loss_a = F.cross_entropy(logits_a, target, reduction="none")
    loss_b = F.cross_entropy(logits.T, target, reduction="none")
    per_pair = 0.5 * (loss_a + loss_b)
    if weights is None:
        return per_pair.mean()
    return (per_pair * weights).sum() / weights.sum()


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float = 0.2) -> torch.Tensor:
    """SimCLR's NT-Xent: two augmented views per image, 2B-2 negatives each."""
    z = torch.cat([z1, z2], dim=0)
    n = z1.shape[0]
    sim = z @ z.T / temperature
    sim = sim.masked_fill(torch.eye(2 * n, dtype=torch.bool, device=z.device), float("-inf"))
    target = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(z.device)
    return F.cross_entropy(sim, target)
