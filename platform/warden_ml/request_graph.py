"""A batch-1 request after its query pin is encoded, written out for its served form.

The same math as the eager path (``gather_items``, ``SeqModel``, ``addmm`` with the item
prior, the window's pins masked, top k), with the sequence model's weights rearranged at
load so the exported graph has fewer operators than ``nn.TransformerEncoderLayer``'s export
(57 against 91 after ONNX Runtime's fusions), and the last layer computes only the row the
model reads, as a matrix. Each residual sum and the layer norm that reads it are one fused
operator (ONNX Runtime's SkipLayerNormalization), the pads' column is scored -inf by its
prior rather than sliced off: the swapped stack's whole request (CNN encoder, projector,
one block, 8-wide scores) is 38 operators, 51 before. At batch 1 this part of a request is
small operators and one pass over the catalog table; it is the same for every stack, and a
test holds it equal to the eager scoring (``tests/warden_ml/test_units.py``).
"""

from __future__ import annotations

from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import nn

from warden_ml.models import ScoreHead, SeqModel


class _SkipLayerNorm(torch.autograd.Function):
    """(LayerNorm(x + skip + bias), x + skip + bias), exported as ONNX Runtime's fused
    SkipLayerNormalization: one operator where the plain export writes two or three."""

    @staticmethod
    def forward(
        ctx: Any, x: Any, skip: Any, norm_w: Any, norm_b: Any, bias: Any, eps: float
    ) -> Any:
        total = x + skip + bias
        return F.layer_norm(total, norm_w.shape, norm_w, norm_b, eps), total

    @staticmethod
    def symbolic(g: Any, x: Any, skip: Any, norm_w: Any, norm_b: Any, bias: Any, eps: float) -> Any:
        out = g.op("com.microsoft::SkipLayerNormalization", x, skip, norm_w, norm_b, bias,
                   epsilon_f=eps, outputs=4)  # fmt: skip
        for value in (out[0], out[3]):  # typed like the input, so the export does not warn
            value.setType(x.type())
        return out[0], out[3]


def skip_layer_norm(
    x: torch.Tensor, skip: torch.Tensor, norm: nn.LayerNorm, bias: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """The residual sum ``x + skip (+ bias)`` and its layer norm (one operator when served)."""
    bias = norm.bias.new_zeros(norm.bias.shape) if bias is None else bias
    if torch.onnx.is_in_onnx_export():
        return _SkipLayerNorm.apply(x, skip, norm.weight, norm.bias, bias, norm.eps)  # type: ignore[no-any-return]
    total = x + skip + bias
    return F.layer_norm(total, norm.normalized_shape, norm.weight, norm.bias, norm.eps), total


class _Block(nn.Module):
    """One pre-norm encoder layer, heads as a batch axis: (1, L, d) -> (H, L, d) sums."""

    w_qkv: torch.Tensor
    b_qkv: torch.Tensor
    w_out: torch.Tensor
    b_out: torch.Tensor

    def __init__(self, layer: nn.TransformerEncoderLayer) -> None:
        super().__init__()
        if not layer.norm_first or layer.activation is not F.gelu:
            raise ValueError("the served request graph expects pre-norm GELU layers")
        attn = layer.self_attn
        h, d = attn.num_heads, attn.embed_dim
        dh = d // h
        self.dh = dh
        w = attn.in_proj_weight.detach()  # rows: q, k, v; within each, head by head
        b = attn.in_proj_bias.detach()
        # (H, d, 3*dh): one matmul gives every head's q | k | v, no reshapes per request
        self.register_buffer("w_qkv", w.view(3, h, dh, d).permute(1, 3, 0, 2).reshape(h, d, -1))
        self.register_buffer("b_qkv", b.view(3, h, dh).permute(1, 0, 2).reshape(h, 1, -1))
        # (H, dh, d): each head's slice of the output projection; heads summed after
        self.register_buffer("w_out", attn.out_proj.weight.detach().T.reshape(h, dh, d))
        self.register_buffer("b_out", attn.out_proj.bias.detach())
        self.norm1, self.norm2 = layer.norm1, layer.norm2
        self.linear1, self.linear2 = layer.linear1, layer.linear2

    def forward(
        self, x: torch.Tensor, h: torch.Tensor, mask: torch.Tensor, last: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``x`` the block's input and ``h`` its first layer norm; returns the residual and
        the feed-forward output, not yet added (whoever reads their sum norms it too, in
        one fused operator). ``last``: only the last row's, as (1, d) matrices (the only row
        the model reads after the final layer; 2-D, so the linear layers export as plain
        Gemm, without the reshapes a 3-D input costs); every row still serves as a key and
        a value."""
        q, k, v = (h @ self.w_qkv + self.b_qkv).split(self.dh, dim=-1)
        if last:
            q, x = q[:, -1:], x[:, -1]
        att = torch.softmax(q @ k.transpose(1, 2) * self.dh**-0.5 + mask, dim=-1)
        h, x = skip_layer_norm(x, ((att @ v) @ self.w_out).sum(0), self.norm2, self.b_out)
        return x, self.linear2(F.gelu(self.linear1(h)))


class RequestGraph(nn.Module):
    """A batch-1 request after its query pin is encoded, as one module (so it can be served):
    the window's pin embeddings with the fresh one last, the sequence model, every catalog
    pin scored (dot product plus the item prior), the window's own pins scored -inf (the user
    engaged them); then the top k rows. Pads (-1) in the window mask nothing. Returns the
    scores and the top k. The scores have one column more than the catalog: the pads' column,
    always -inf (its prior is), so the top k never picks it while there are k pins to pick
    (``Server`` drops it: a view, not a copy)."""

    table: torch.Tensor
    bias: torch.Tensor
    pad_mask: torch.Tensor
    pos: torch.Tensor
    keys: torch.Tensor | None

    def __init__(
        self,
        seq: SeqModel,
        table: torch.Tensor,
        bias: torch.Tensor,
        k: int,
        head: ScoreHead | None = None,
    ) -> None:
        super().__init__()
        n = table.shape[0]
        self.k = min(k, n)
        # row n: a pad (-1 -> n) gathers a zero vector and scatters into the pads' column
        self.register_buffer("table", torch.cat([table, table.new_zeros(1, table.shape[1])]))
        # with a score head: the catalog in its own (smaller) keys, and the head's query map
        # folded into the output layer (one linear layer, as without a head)
        self.register_buffer("keys", None)
        out = seq.out
        if head is not None:
            with torch.no_grad():
                keys = head.key(table)
                self.register_buffer("keys", torch.cat([keys, keys.new_zeros(1, keys.shape[1])]))
                wq = head.query.weight
                out = nn.Linear(seq.out.in_features, wq.shape[0])
                out.weight.copy_(wq @ seq.out.weight)
                out.bias.copy_(wq @ seq.out.bias)
        self.register_buffer("bias", torch.cat([bias, bias.new_full((1,), float("-inf"))])[None])
        self.register_buffer(
            "pad_mask", torch.cat([bias.new_zeros(n), bias.new_full((1,), float("-inf"))])
        )
        self.register_buffer("pos", seq.pos.detach()[0])
        self.blocks = nn.ModuleList(_Block(layer) for layer in seq.blocks)  # type: ignore[arg-type]
        self.norm, self.out = seq.norm, out

    def forward(self, window: torch.Tensor, fresh: torch.Tensor) -> tuple[torch.Tensor, ...]:
        table, pad_mask = self.table, self.pad_mask
        n = table.shape[0] - 1
        rows = torch.remainder(window, n + 1)
        head = rows[:, :-1]
        x = torch.cat([table[head], fresh.unsqueeze(1)], dim=1)
        skip = self.pos[-window.shape[1] :]
        # the query slot is never masked (as gather_items): attention always sees a key
        mask = torch.cat([pad_mask[head], torch.zeros_like(pad_mask[:1])[None]], dim=1)
        for i, block in enumerate(cast(list[_Block], self.blocks)):
            h, x = skip_layer_norm(x, skip, block.norm1)
            x, skip = block(x, h, mask, last=i == len(self.blocks) - 1)
        q = self.out(skip_layer_norm(x, skip, self.norm)[0])
        keys = table if self.keys is None else self.keys
        scores = torch.addmm(self.bias, q, keys.T)
        masked = scores.scatter(1, rows, float("-inf"))
        return masked, torch.topk(masked, self.k, dim=1).indices


class EncodedRequest(nn.Module):
    """The request with its query pin's image: the encoder, then ``RequestGraph``."""

    def __init__(self, encoder: nn.Module, graph: RequestGraph) -> None:
        super().__init__()
        self.encoder, self.graph = encoder, graph

    def forward(self, window: torch.Tensor, image: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return self.graph(window, self.encoder(image))
