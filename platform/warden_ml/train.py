"""Training steps: the generic tower (+ its stack), the domain tower, and the swap."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from warden_ml.budget import Budget, EarlyStopping, Phase, domain_path_budget
from warden_ml.common import (
    Reader,
    Spec,
    Timer,
    load_model,
    save_model,
    say,
    seed_everything,
    write_metrics,
)
from warden_ml.data import (
    Histories,
    Pins,
    gather_items,
    next_pin_examples,
    read_engagements,
    read_pins,
)
from warden_ml.dist import (
    World,
    any_rank,
    close_world,
    domain_step,
    init_world,
    parameters_agree,
)
from warden_ml.losses import nt_xent
from warden_ml.models import (
    CNNTower,
    ItemPrior,
    Projector,
    ScoreHead,
    SeqModel,
    Stack,
    ViTTower,
    n_params,
    stack_from_blob,
    tower_from_blob,
)
from warden_ml.shards import PairBatches, read_domain_data

# The swapped stack's own design (swap's defaults): the first block of the generic sequence
# model and an 8-dimension score head. A batch-1 request then reads a catalog table an eighth
# of the size and runs half the sequence model (bench_online); post-training fits both. On
# 2 seeds 8 dimensions scored as 16 did (held-out recall@10, full catalog: 75 hits to 74).
SWAP_SEQ_BLOCKS = 1
SWAP_SCORE_DIM = 8

# --------------------------------------------------------------------------- helpers


def augment(x: torch.Tensor, gen: torch.Generator, noise: float = 0.1) -> torch.Tensor:
    """Generic image augmentations on (B, 1, 8, 8) in [0, 1]: random shift by up to one
    pixel (pad + crop), intensity jitter, pixel dropout and Gaussian noise."""
    b = x.shape[0]
    padded = F.pad(x, (1, 1, 1, 1))
    oy = torch.randint(0, 3, (b,), generator=gen)
    ox = torch.randint(0, 3, (b,), generator=gen)
    ar = torch.arange(8)
    rows = (oy[:, None] + ar)[:, :, None]
    cols = (ox[:, None] + ar)[:, None, :]
    out = padded[torch.arange(b)[:, None, None], 0, rows, cols].unsqueeze(1)
    scale = 0.8 + 0.4 * torch.rand(b, 1, 1, 1, generator=gen)
    keep = (torch.rand(out.shape, generator=gen) > 0.1).to(out.dtype)
    out = out * scale * keep + noise * torch.randn(out.shape, generator=gen)
    return out.clamp(0.0, 1.5)


@torch.no_grad()
def embed_all(tower: nn.Module, images: torch.Tensor, batch: int = 1024) -> torch.Tensor:
    tower.eval()
    parts = [tower(images[i : i + batch]) for i in range(0, images.shape[0], batch)]
    return torch.cat(parts, dim=0)


@torch.no_grad()
def digit_knn_accuracy(emb: torch.Tensor, digits: np.ndarray | None) -> float:
    """Leave-one-out 1-NN digit accuracy of an embedding (a diagnostic, never a target)."""
    if digits is None or emb.shape[0] < 2:
        return float("nan")
    n = min(emb.shape[0], 3000)
    e = F.normalize(emb[:n], dim=-1)
    sim = e @ e.T
    sim.fill_diagonal_(-math.inf)
    nn_idx = sim.argmax(dim=1).numpy()
    return float(np.mean(digits[:n][nn_idx] == digits[:n]))


def _every(total: int) -> int:
    return max(1, total // 10)


# --------------------------------------------------------------------------- stack training


def train_stack(
    stack: Stack,
    pins: Pins,
    hist: Histories,
    steps: int,
    trainable: list[nn.Parameter],
    seed: int,
    batch: int = 256,
    lr: float = 2e-3,
    label: str = "stack",
    objective: str = "next-pin cross-entropy over the full catalog (tower frozen)",
) -> tuple[dict[str, float], dict[str, Any]]:
    """Next-pin training over the whole catalog (full softmax) with the tower frozen.

    The tower's embeddings are computed once; only ``trainable`` parameters move.
    """
    windows, targets = next_pin_examples(hist, stack.seq.max_len)
    if targets.shape[0] == 0:
        raise ValueError("no next-pin training examples (engagements are empty)")
    feats = embed_all(stack.tower, pins.images)
    for p in stack.parameters():
        p.requires_grad_(False)
    trainable = [*trainable, stack.prior.weight]
    for p in trainable:
        p.requires_grad_(True)
    stack.train()
    opt = torch.optim.AdamW(trainable, lr=lr, weight_decay=1e-4)
    rng = np.random.default_rng(seed)
    w_t, t_t = torch.from_numpy(windows), torch.from_numpy(targets)
    losses: list[float] = []
    phase = Phase(label, objective)
    for step in range(1, steps + 1):
        pick = torch.from_numpy(rng.integers(0, targets.shape[0], batch))
        table = stack.projector(feats)
        items, pad = gather_items(table, w_t[pick])
        q = stack.user_state(items, pad)
        loss = F.cross_entropy(q @ stack.keys(table).T + stack.prior.for_pins(pins.ids), t_t[pick])
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
        phase.step(batch, losses[-1], _every(steps) // 2 or 1)
        if step % _every(steps) == 0 or step == steps:
            say(f"{label} step {step}/{steps} loss {np.mean(losses[-_every(steps) :]):.4f}")
    record = phase.finish()
    stack.eval()
    for p in stack.parameters():
        p.requires_grad_(False)
    return {
        f"{label}_loss_first": round(losses[0], 5),
        f"{label}_loss_last": round(float(np.mean(losses[-_every(steps) :])), 5),
        f"{label}_steps": steps,
        f"{label}_examples": int(targets.shape[0]),
        f"{label}_cpu_s": record["cpu_s"],
    }, record


def popularity_prior(pins: Pins, hist: Histories) -> ItemPrior:
    """The item prior from the training log: log(1 + engagements) per pin, weight learned."""
    counts = np.bincount(hist.items, minlength=pins.ids.shape[0])
    return ItemPrior(torch.from_numpy(pins.ids), torch.from_numpy(counts))


def _seq_config(spec: Spec) -> dict[str, Any]:
    return {
        "d_model": int(spec.p("d_model", 64)),
        "depth": int(spec.p("seq_depth", 2)),
        "heads": 4,
        "ff": int(spec.p("seq_ff", 128)),
        "max_len": int(spec.p("max_len", 8)),
    }


def save_stack(path: Path, stack: Stack, training: dict[str, Any]) -> None:
    modules = {"tower": stack.tower, "projector": stack.projector, "seq": stack.seq}
    modules |= {"prior": stack.prior} | ({"head": stack.head} if stack.head else {})
    save_model(path, "stack", stack.config(), modules, training)


# --------------------------------------------------------------------------- steps


def _val_loss(tower: nn.Module, images: torch.Tensor, seed: int, batch: int) -> float:
    """NT-Xent on held-out pins under fixed augmentations (the same every time it is asked)."""
    gen = torch.Generator().manual_seed(seed + 7919)
    tower.eval()
    losses, sizes = [], []
    with torch.no_grad():
        for i in range(0, images.shape[0], batch):
            x = images[i : i + batch]
            if x.shape[0] < 2:
                continue
            losses.append(float(nt_xent(tower(augment(x, gen)), tower(augment(x, gen)))))
            sizes.append(x.shape[0])
    tower.train()
    return float(np.average(losses, weights=sizes)) if losses else math.nan


def _generic_budget(spec: Spec) -> Budget:
    """At least the whole domain path (tower + align + post-train) in steps and examples,
    unless the spec gives more; CPU-seconds unbounded unless given."""
    default = domain_path_budget()
    steps = int(spec.p("budget_steps", spec.p("steps", default["steps"])))
    examples = int(spec.p("budget_examples", default["examples"]))
    cpu = spec.p("budget_cpu_s", None)
    given = any(k in spec.params for k in ("budget_steps", "steps", "budget_examples"))
    basis = (
        "given in the spec"
        if given
        else ("the domain path at its defaults: tower 200x256 + align 100x256 + post-train 100x256")
    )
    basis = str(spec.p("budget_basis", basis))
    return Budget(steps, examples, None if cpu is None else float(cpu), basis)


def _train_generic_tower(
    spec: Spec, pins: Pins, tower: nn.Module
) -> tuple[dict[str, Any], dict[str, Any], Budget]:
    """SimCLR on the training pins until the validation loss stops improving (patience)
    or the budget runs out; the best validated weights are kept."""
    gen = torch.Generator().manual_seed(spec.seed)
    n = pins.images.shape[0]
    perm = torch.randperm(n, generator=gen)
    n_val = min(max(2, n // 10), int(spec.p("val_pins", 512)))
    val_images, train_idx = pins.images[perm[:n_val]], perm[n_val:]
    batch = int(spec.p("batch", 256))
    budget = _generic_budget(spec)
    eval_every = int(spec.p("eval_every", 25))
    stopper = EarlyStopping(int(spec.p("patience", 4)), float(spec.p("min_delta", 1e-3)))
    opt = torch.optim.AdamW(tower.parameters(), lr=float(spec.p("lr", 1e-3)), weight_decay=1e-4)
    phase = Phase("generic tower", "SimCLR NT-Xent on pin images (never the graph)")
    log = max(1, eval_every // 5)
    stopped: str | None = None
    tower.train()
    while (stopped := budget.reached(phase)) is None:
        idx = train_idx[torch.randint(0, train_idx.shape[0], (batch,), generator=gen)]
        x = pins.images[idx]
        loss = nt_xent(tower(augment(x, gen)), tower(augment(x, gen)))
        opt.zero_grad()
        loss.backward()
        opt.step()
        phase.step(batch, float(loss.detach()), log)
        if phase.steps % eval_every == 0:
            val = _val_loss(tower, val_images, spec.seed, batch)
            phase.validated(val)
            say(f"generic step {phase.steps} loss {float(loss.detach()):.4f} val {val:.4f}")
            if stopper.update(val, phase.steps, tower):
                stopped = f"early stopping (no val improvement in {stopper.patience} checks)"
                break
    stopper.restore(tower)
    tower.eval()
    record = phase.finish(stopped)
    record["best_val_step"] = stopper.best_step
    record["best_val_loss"] = None if math.isinf(stopper.best) else round(stopper.best, 5)
    curve = phase.curve["train_loss"]
    metrics = {
        "loss_first": curve[0] if curve else math.nan,
        "loss_last": curve[-1] if curve else math.nan,
        "steps": phase.steps,
        "examples": phase.examples,
        "batch": batch,
        "stopped_by": record["stopped_by"],
        "best_val_step": stopper.best_step,
        "best_val_loss": record["best_val_loss"],
        "tower_cpu_s": record["cpu_s"],
        "budget": budget.record(),
    }
    return metrics, record, budget


def train_generic(spec: Spec, out: Path, client: Reader) -> dict[str, Any]:
    """SimCLR-style augmentation invariance on pin images only (never the graph), until the
    validation loss stops improving, with at least the domain path's budget; then the
    "language model" side (projector + sequence model) on next-pin, the tower frozen."""
    timer = Timer()
    seed_everything(spec.seed, spec.p("threads", None))
    pins = read_pins(client, spec, "training")
    cfg = {k: spec.p(k, v) for k, v in {"dim": 128, "depth": 6, "heads": 4, "mlp": 256}.items()}
    tower = ViTTower(**cfg, out_dim=int(spec.p("out_dim", 64)))
    say(f"generic tower: ViT {n_params(tower):,} parameters")
    tower_metrics, tower_record, budget = _train_generic_tower(spec, pins, tower)
    training: dict[str, Any] = {"phases": [tower_record], "budget": budget.record()}
    knn = digit_knn_accuracy(embed_all(tower, pins.images), pins.digits)
    save_model(out / "generic_tower.pt", "tower", {"tower_kind": "vit", "tower": tower.config},
               {"tower": tower}, training)  # fmt: skip
    metrics: dict[str, Any] = {
        "tower": "vit",
        "tower_params": n_params(tower),
        "objective": "simclr_nt_xent (augmentation invariance; no graph), early stopping",
        **tower_metrics,
        "digit_1nn_acc": round(knn, 4),
        "artifacts": ["generic_tower.pt"],
    }
    stack_steps = int(spec.p("stack_steps", 200))
    if stack_steps > 0:
        hist = Histories.build(read_engagements(client, spec, "training"), pins)
        seq_cfg = _seq_config(spec)
        stack = Stack("vit", tower, Projector(tower.out_dim, seq_cfg["d_model"]),
                      SeqModel(**seq_cfg), popularity_prior(pins, hist))  # fmt: skip
        trainable = [*stack.projector.parameters(), *stack.seq.parameters()]
        stack_metrics, stack_record = train_stack(
            stack, pins, hist, stack_steps, trainable, spec.seed + 1,
            batch=int(spec.p("stack_batch", 256)), label="stack",
            objective="next-pin over the full catalog: projector + sequence model (shared by"
            " both arms: the swap keeps this sequence model)",
        )  # fmt: skip
        metrics |= stack_metrics
        training["phases"].append(stack_record)
        save_stack(out / "generic_stack.pt", stack, training)
        metrics["stack_params"] = n_params(stack)
        metrics["artifacts"].append("generic_stack.pt")
    metrics |= timer.done()
    return write_metrics(out, "train-generic", metrics)


def _mine_hard(
    tower: nn.Module,
    pins: Pins,
    linked: np.ndarray,
    rng: np.random.Generator,
    lo: int,
    hi: int,
    world: World = World(),
) -> np.ndarray:
    """For every pin, one hard negative: a random neighbour ranked in [lo, hi) under the
    current tower that pin_pairs does not link to it (falls back to a random pin). `linked`
    holds this rank's pairs' keys; a link in any rank's shard disqualifies a neighbour."""
    emb = embed_all(tower, pins.images)
    n = emb.shape[0]
    hi = min(hi, n - 1)
    out = rng.integers(0, n, n)
    if hi <= lo:
        return out
    chosen = np.empty(n, dtype=np.int64)
    for s in range(0, n, 1024):
        sim = emb[s : s + 1024] @ emb.T
        top: np.ndarray = torch.topk(sim, hi + 1, dim=1).indices[:, lo + 1 :].numpy()
        pick = rng.integers(0, top.shape[1], top.shape[0])
        chosen[s : s + top.shape[0]] = top[np.arange(top.shape[0]), pick]
    rows = np.arange(n)
    is_linked = any_rank(np.isin(_pair_keys(rows, chosen, n), linked), world)
    ok = (chosen != rows) & ~is_linked
    out[ok] = chosen[ok]
    return out


def _pair_keys(a: np.ndarray, b: np.ndarray, n: int) -> np.ndarray:
    """One number per unordered pair of pin rows."""
    return np.minimum(a, b) * n + np.maximum(a, b)


def train_domain(spec: Spec, out: Path, client: Reader) -> dict[str, Any]:
    """CLIP-style contrastive training of the small CNN on graph positives (pin_pairs,
    sampled by weight) with in-batch and mined hard negatives. Runs under torchrun."""
    timer = Timer()
    world = init_world()
    finished = False
    try:
        result = _train_domain(spec, out, client, world, timer)
        finished = True
        return result
    finally:
        close_world(world, finished=finished)


def _train_domain(
    spec: Spec, out: Path, client: Reader, world: World, timer: Timer
) -> dict[str, Any]:
    seed_everything(spec.seed, spec.p("threads", None))
    pins, pairs = read_domain_data(client, spec, world)  # under torchrun: this rank's shard
    rng = np.random.default_rng(spec.seed)  # the same on every rank: splits, mining
    batches = PairBatches(pairs, world, rng, np.random.default_rng([spec.seed, world.rank]))
    if batches.total == 0:
        raise ValueError("pin_pairs is empty: nothing to learn from")
    n = pins.images.shape[0]
    linked = np.unique(_pair_keys(batches.a_idx, batches.b_idx, n))
    cfg = {k: int(spec.p(k, v)) for k, v in {"c1": 16, "c2": 26, "out_dim": 64}.items()}
    tower = CNNTower(**cfg)
    say(f"domain tower: CNN {n_params(tower):,} parameters; world size {world.size}")
    opt = torch.optim.AdamW(tower.parameters(), lr=float(spec.p("lr", 3e-3)), weight_decay=1e-4)
    batch = int(spec.p("batch", 256))
    steps = int(spec.p("steps", 200))
    n_hard = int(spec.p("hard_negatives", batch // 2))
    mine_every = int(spec.p("mine_every", 100))
    band = spec.p("hard_band", [20, 100])
    temperature = float(spec.p("temperature", 0.1))
    hard_of = rng.integers(0, n, n)
    losses: list[float] = []
    phase = Phase("domain tower", "InfoNCE on pin_pairs (the graph), in-batch + hard negatives")
    for step in range(1, steps + 1):
        if n_hard and (step - 1) % mine_every == 0 and step > 1:
            hard_of = _mine_hard(tower, pins, linked, rng, int(band[0]), int(band[1]), world)
        tower.train()
        a, b, with_hard = batches.draw(batch, n_hard)
        hard = pins.images[torch.from_numpy(hard_of[a[:with_hard]])] if n_hard else None
        loss = domain_step(tower, opt, pins.images[torch.from_numpy(a)],
                           pins.images[torch.from_numpy(b)], hard, world, temperature)  # fmt: skip
        losses.append(loss)
        phase.step(batch, loss, _every(steps) // 2 or 1)
        if step % _every(steps) == 0 or step == steps:
            say(f"domain step {step}/{steps} loss {np.mean(losses[-_every(steps) :]):.4f}")
    if not parameters_agree(tower, world):
        raise RuntimeError("the ranks' parameters diverged: their steps were not the same")
    tower.eval()
    record = phase.finish()
    metrics: dict[str, Any] = {
        "tower": "cnn",
        "tower_params": n_params(tower),
        "objective": "info_nce (in-batch + mined hard negatives) on pin_pairs, weight-sampled",
        "loss_first": round(losses[0], 5),
        "loss_last": round(float(np.mean(losses[-_every(steps) :])), 5),
        "steps": steps,
        "examples": phase.examples,
        "tower_cpu_s": record["cpu_s"],
        "batch": batch,
        "hard_negatives": n_hard,
        "world_size": world.size,
        "pairs": batches.total,
        **({"pairs_per_rank": batches.pairs_per_rank} if world.distributed else {}),
        "digit_1nn_acc": round(digit_knn_accuracy(embed_all(tower, pins.images), pins.digits), 4),
        "artifacts": ["domain_tower.pt"],
    }
    metrics |= timer.done()
    if world.rank == 0:
        save_model(out / "domain_tower.pt", "tower", {"tower_kind": "cnn", "tower": tower.config},
                   {"tower": tower}, {"phases": [record]})  # fmt: skip
        return write_metrics(out, "train-domain", metrics)
    return metrics


def swap(spec: Spec, out: Path, client: Reader) -> dict[str, Any]:
    """Replace the stack's tower with the domain tower; re-align a fresh projector with
    everything else frozen; then post-train projector + last block on next-pin."""
    timer = Timer()
    seed_everything(spec.seed, spec.p("threads", None))
    model_in = spec.model_in or {}
    if not isinstance(model_in, dict) or "stack" not in model_in or "tower" not in model_in:
        raise ValueError('swap needs model_in = {"stack": generic_stack.pt, "tower": domain.pt}')
    base_blob, tower_blob = load_model(model_in["stack"]), load_model(model_in["tower"])
    base = stack_from_blob(base_blob)
    kind, tower = tower_from_blob(tower_blob)
    pins = read_pins(client, spec, "training", with_digits=False)
    hist = Histories.build(read_engagements(client, spec, "training"), pins)
    d_model = base.seq.config["d_model"]
    # the swapped stack's serving design: the first `seq_blocks` blocks of the sequence
    # model and a score head of `score_dim` (0: none) dimensions, both post-trained below
    blocks = int(spec.p("seq_blocks", SWAP_SEQ_BLOCKS))
    seq = base.seq.first_blocks(blocks) if blocks < len(base.seq.blocks) else base.seq
    stack = Stack(kind, tower, Projector(tower.out_dim, d_model), seq, base.prior)  # type: ignore[arg-type]
    batch = int(spec.p("batch", 256))
    metrics: dict[str, Any] = {"tower": kind, "tower_params": n_params(tower)}
    align = int(spec.p("align_steps", 100))
    post = int(spec.p("post_steps", 100))
    align_metrics, align_record = train_stack(
        stack, pins, hist, align, list(stack.projector.parameters()), spec.seed + 1,
        batch=batch, label="align", objective="next-pin: a fresh projector only",
    )  # fmt: skip
    score_dim = int(spec.p("score_dim", SWAP_SCORE_DIM))
    if 0 < score_dim < d_model:
        with torch.no_grad():
            stack.head = ScoreHead.from_table(stack.encode(pins.images), score_dim)
    whole = str(spec.p("post_train", "all")) == "all"
    trained = "sequence model" if whole else "last sequence block"
    trainable = [*stack.projector.parameters()]
    trainable += [*stack.seq.parameters()] if whole else stack.seq.last_block_parameters()
    trainable += [*stack.head.parameters()] if stack.head is not None else []
    post_metrics, post_record = train_stack(
        stack, pins, hist, post, trainable, spec.seed + 2, batch=batch,
        lr=float(spec.p("post_lr", 1e-3)), label="post",
        objective=f"next-pin: projector + {trained}"
        + (f" + score head ({score_dim} dims)" if stack.head is not None else ""),
    )  # fmt: skip
    metrics |= align_metrics | post_metrics
    # the domain path: the domain tower's phases, then align and post-train; the sequence
    # model it keeps was trained once in the generic stack (both arms share that phase)
    phases = [*tower_blob.get("training", {}).get("phases", []), align_record, post_record]
    shared = [p for p in base_blob.get("training", {}).get("phases", []) if p["name"] == "stack"]
    training = {"phases": phases, "shared": shared}
    save_stack(out / "swapped_stack.pt", stack, training)
    metrics |= {
        "stack_params": n_params(stack),
        "frozen_in_align": "tower, sequence model",
        "trained_in_post": f"projector, {trained}, final norm/output"
        + (", score head" if stack.head is not None else ""),
        "seq_blocks": len(stack.seq.blocks),
        "score_dim": stack.head.config["dim"] if stack.head is not None else d_model,
        "artifacts": ["swapped_stack.pt"],
    }
    metrics |= timer.done()
    return write_metrics(out, "swap", metrics)
