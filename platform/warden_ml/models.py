"""The towers, the projector and the small sequence model ("language model" side).

* ``ViTTower``: the generic vision tower, a small ViT (~0.8M parameters) on 8x8 images.
* ``CNNTower``: the domain tower, a CLIP-style small CNN (~31k parameters).
* ``Projector``: tower embedding -> the sequence model's width.
* ``SeqModel``: a tiny transformer over a user's recent pins; its output scores next pins
  by dot product with projected pin embeddings (tied input/output item embeddings).
* ``ScoreHead``: optional, the stack scores in fewer dimensions than the sequence model's
  width (the swapped stack's serving design: a catalog table a fraction of the size).
* ``ItemPrior``: a learned weight times log(1 + training engagements) per pin, added to every
  score. An 8x8 digit image says which digit a pin shows, not how popular it is; without
  this prior a content-only scorer cannot tell apart the ~500 pins of one digit class.
* ``Stack``: tower + projector + sequence model (+ prior), the model evaluated and served.
"""

from __future__ import annotations

import inspect
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

IMAGE_SIDE = 8


class _L2Normalize(torch.autograd.Function):
    """F.normalize over the last axis, exported to ONNX as one LpNormalization operator
    (the exporter otherwise writes four: ReduceL2, Clip, Expand, Div)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(x, dim=-1)

    @staticmethod
    def symbolic(g: Any, x: Any) -> Any:
        return g.op("LpNormalization", x, axis_i=-1, p_i=2)


def l2_normalize(x: torch.Tensor) -> torch.Tensor:
    """Unit rows. Served, one operator; the same up to F.normalize's floor on the norm
    (1e-12), which no tower output comes near."""
    if torch.onnx.is_in_onnx_export():
        return _L2Normalize.apply(x)  # type: ignore[no-any-return]
    return F.normalize(x, dim=-1)


class ViTTower(nn.Module):
    def __init__(
        self, dim: int = 128, depth: int = 6, heads: int = 4, mlp: int = 256, out_dim: int = 64
    ) -> None:
        super().__init__()
        self.config = {"dim": dim, "depth": depth, "heads": heads, "mlp": mlp, "out_dim": out_dim}
        self.out_dim = out_dim
        self.patch = nn.Conv2d(1, dim, kernel_size=2, stride=2)  # 16 patches of 2x2
        self.cls = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos = nn.Parameter(torch.randn(1, 17, dim) * 0.02)
        layer = nn.TransformerEncoderLayer(
            dim, heads, mlp, dropout=0.0, activation="gelu", batch_first=True, norm_first=True
        )
        self.blocks = nn.TransformerEncoder(layer, depth, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.patch(x).flatten(2).transpose(1, 2)
        cls = self.cls.expand(tokens.shape[0], -1, -1)
        h = self.blocks(torch.cat([cls, tokens], dim=1) + self.pos)
        return l2_normalize(self.head(self.norm(h[:, 0])))


class CNNTower(nn.Module):
    """conv 3x3 (1 -> c1) -> ReLU -> conv 3x3 stride 2 (c1 -> c2, 8x8 -> 4x4) -> ReLU ->
    flatten -> linear -> L2-normalise.

    Shaped for batch-1 serving, where a tower this small is dominated by per-op overhead,
    not arithmetic: the stride-2 conv does the downsampling (no pooling ops), the head is a
    single flatten + linear and the ReLUs work in place: two convs, two ReLUs, one linear.
    The previous layout (conv, conv, pool, conv, pool, linear; 31k parameters, 5.6x the
    FLOPs) took about twice the time at batch 1 for about the same held-out recall.
    """

    def __init__(self, c1: int = 16, c2: int = 26, out_dim: int = 64) -> None:
        super().__init__()
        self.config = {"c1": c1, "c2": c2, "out_dim": out_dim}
        self.out_dim = out_dim
        side = IMAGE_SIDE // 2
        self.net = nn.Sequential(
            nn.Conv2d(1, c1, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(c1, c2, 3, stride=2, padding=1),  # 4x4
            nn.ReLU(inplace=True),
            nn.Flatten(),
            nn.Linear(c2 * side * side, out_dim),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return l2_normalize(self.net(x))


TOWERS: dict[str, type[nn.Module]] = {"vit": ViTTower, "cnn": CNNTower}


def make_tower(kind: str, config: dict[str, Any] | None = None) -> nn.Module:
    cls = TOWERS[kind]
    config = config or {}
    params = inspect.signature(cls.__init__).parameters
    known = set(params) - {"self"}
    open_ended = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    if not open_ended and (unknown := sorted(set(config) - known)):
        raise ValueError(
            f"{kind} tower config has {unknown}, which this version's {cls.__name__} does not"
            f" take ({sorted(known)}): the artifact comes from another layout; retrain it"
        )
    return cls(**config)


class Projector(nn.Module):
    def __init__(self, in_dim: int, d_model: int = 64) -> None:
        super().__init__()
        self.config = {"in_dim": in_dim, "d_model": d_model}
        self.proj = nn.Sequential(
            nn.Linear(in_dim, d_model), nn.GELU(), nn.Linear(d_model, d_model)
        )
        self.norm = nn.LayerNorm(d_model)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.norm(self.proj(z))


class SeqModel(nn.Module):
    """Tiny transformer over the last ``max_len`` pins (left-padded; pad = masked)."""

    def __init__(
        self, d_model: int = 64, depth: int = 2, heads: int = 4, ff: int = 128, max_len: int = 8
    ) -> None:
        super().__init__()
        self.config = {"d_model": d_model, "depth": depth, "heads": heads, "ff": ff}
        self.config["max_len"] = max_len
        self.max_len = max_len
        self.pos = nn.Parameter(torch.randn(1, max_len, d_model) * 0.02)
        self.blocks = nn.ModuleList(
            nn.TransformerEncoderLayer(
                d_model,
                heads,
                ff,
                dropout=0.0,
                activation="gelu",
                batch_first=True,
                norm_first=True,
            )
            for _ in range(depth)
        )
        self.norm = nn.LayerNorm(d_model)
        self.out = nn.Linear(d_model, d_model)

    def last_block_parameters(self) -> list[nn.Parameter]:
        return [*self.blocks[-1].parameters(), *self.norm.parameters(), *self.out.parameters()]

    def first_blocks(self, depth: int) -> SeqModel:
        """A copy of this model that keeps only its first ``depth`` blocks (and its positions,
        final norm and output)."""
        if not 1 <= depth <= len(self.blocks):
            raise ValueError(f"keep 1..{len(self.blocks)} blocks, not {depth}")
        cfg = {**self.config, "depth": depth}
        kept = SeqModel(**cfg)
        state = {
            k: v
            for k, v in self.state_dict().items()
            if not k.startswith("blocks.") or int(k.split(".")[1]) < depth
        }
        kept.load_state_dict(state)
        return kept

    def forward(self, items: torch.Tensor, pad: torch.Tensor) -> torch.Tensor:
        """items (B, L, d) projected pin embeddings; pad (B, L) True where padding."""
        h = items + self.pos[:, -items.shape[1] :]
        for block in self.blocks:
            h = block(h, src_key_padding_mask=pad)
        return self.out(self.norm(h[:, -1]))


class ScoreHead(nn.Module):
    """Scores in ``dim`` dimensions: the user state and every pin's embedding each through
    its own linear map. At batch 1 a request reads the whole catalog table once, and that
    table is ``d_model / dim`` times smaller (it stays in cache; measured in
    ``tests/benchmarks/bench_online.py``)."""

    def __init__(self, d_model: int, dim: int) -> None:
        super().__init__()
        self.config = {"d_model": d_model, "dim": dim}
        self.query = nn.Linear(d_model, dim, bias=False)
        self.key = nn.Linear(d_model, dim, bias=False)

    @classmethod
    @torch.no_grad()
    def from_table(cls, table: torch.Tensor, dim: int) -> ScoreHead:
        """Both maps start as the table's top ``dim`` principal directions, so the head
        starts as the closest rank-``dim`` form of the plain dot product it replaces."""
        head = cls(table.shape[1], dim)
        _, _, v = torch.linalg.svd(table - table.mean(0), full_matrices=False)
        head.query.weight.copy_(v[:dim])
        head.key.weight.copy_(v[:dim])
        return head


class ItemPrior(nn.Module):
    """weight * log(1 + training engagements) per pin, keyed by pin id (0 for a pin the
    training log never saw, or for every pin when the artifact predates the prior)."""

    def __init__(self, pin_ids: torch.Tensor, counts: torch.Tensor) -> None:
        super().__init__()
        order = torch.argsort(pin_ids)
        self.register_buffer("pin_ids", pin_ids[order].to(torch.int64))
        self.register_buffer("log_pop", torch.log1p(counts[order].to(torch.float32)))
        self.weight = nn.Parameter(torch.tensor(1.0))

    @classmethod
    def empty(cls, n: int = 0) -> ItemPrior:
        return cls(torch.zeros(n, dtype=torch.int64), torch.zeros(n))

    def for_pins(self, pin_ids: Any) -> torch.Tensor:
        """(N,) the prior of each of these pins (a numpy or torch array of ids)."""
        ids = torch.as_tensor(pin_ids, dtype=torch.int64)
        known: torch.Tensor = self.pin_ids  # type: ignore[assignment]
        if known.numel() == 0:
            return torch.zeros(ids.shape[0]) * self.weight
        pos = torch.searchsorted(known, ids).clamp(max=known.numel() - 1)
        hit = (known[pos] == ids).to(torch.float32)
        log_pop: torch.Tensor = self.log_pop  # type: ignore[assignment]
        return self.weight * log_pop[pos] * hit


class Stack(nn.Module):
    """tower -> projector -> sequence model; scores candidates by dot product plus the
    item prior."""

    def __init__(
        self,
        tower_kind: str,
        tower: nn.Module,
        projector: Projector,
        seq: SeqModel,
        prior: ItemPrior | None = None,
        head: ScoreHead | None = None,
    ):
        super().__init__()
        self.tower_kind = tower_kind
        self.tower = tower
        self.projector = projector
        self.seq = seq
        self.prior = prior if prior is not None else ItemPrior.empty()
        self.head = head

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """Images (B, 1, 8, 8) -> item embeddings (B, d_model): what serving encodes."""
        return self.projector(self.tower(images))

    def user_state(self, items: torch.Tensor, pad: torch.Tensor) -> torch.Tensor:
        """(B, score dim): what scores every pin's ``keys`` row by dot product."""
        q = self.seq(items, pad)
        return q if self.head is None else self.head.query(q)

    def keys(self, table: torch.Tensor) -> torch.Tensor:
        """(N, score dim): the pins' embeddings (``encode``) as the user state scores them."""
        return table if self.head is None else self.head.key(table)

    def config(self) -> dict[str, Any]:
        cfg = {
            "tower_kind": self.tower_kind,
            "tower": dict(self.tower.config),  # type: ignore[arg-type]
            "projector": dict(self.projector.config),
            "seq": dict(self.seq.config),
        }
        return cfg if self.head is None else cfg | {"head": dict(self.head.config)}


def stack_from_blob(blob: dict[str, Any]) -> Stack:
    if blob["kind"] != "stack":
        raise ValueError(f"expected a stack artifact, got {blob['kind']!r}")
    cfg = blob["config"]
    tower = make_tower(cfg["tower_kind"], cfg["tower"])
    tower.load_state_dict(blob["tower"])
    projector = Projector(**cfg["projector"])
    projector.load_state_dict(blob["projector"])
    seq = SeqModel(**cfg["seq"])
    seq.load_state_dict(blob["seq"])
    prior = None
    if "prior" in blob:
        prior = ItemPrior.empty(int(blob["prior"]["pin_ids"].shape[0]))
        prior.load_state_dict(blob["prior"])
    head = None
    if "head" in cfg:
        head = ScoreHead(**cfg["head"])
        head.load_state_dict(blob["head"])
    return Stack(cfg["tower_kind"], tower, projector, seq, prior, head).eval()


def tower_from_blob(blob: dict[str, Any]) -> tuple[str, nn.Module]:
    if blob["kind"] == "stack":
        stack = stack_from_blob(blob)
        return stack.tower_kind, stack.tower
    if blob["kind"] != "tower":
        raise ValueError(f"expected a tower artifact, got {blob['kind']!r}")
    cfg = blob["config"]
    tower = make_tower(cfg["tower_kind"], cfg["tower"])
    tower.load_state_dict(blob["tower"])
    return cfg["tower_kind"], tower.eval()


def n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def flops(module: nn.Module, *inputs: torch.Tensor) -> int:
    """FLOPs of one forward pass, counted by torch's FlopCounterMode (matmul, conv, sdpa).

    Gradients stay enabled so that nn.TransformerEncoderLayer takes its decomposed path
    (its fused inference kernel is invisible to the counter); nothing is backpropagated.
    """
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with torch.enable_grad(), counter:
        module(*inputs)
    return int(counter.get_total_flops())
