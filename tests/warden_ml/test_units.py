"""Models, losses and metrics on small hand-made cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from warden_ml.data import gather_items, images_from_binary
from warden_ml.losses import info_nce, nt_xent
from warden_ml.metrics import all_metrics, mean_ci, mrr, ndcg_at_k, recall_at_k, target_ranks
from warden_ml.models import (
    CNNTower,
    Projector,
    ScoreHead,
    SeqModel,
    Stack,
    ViTTower,
    flops,
    make_tower,
    n_params,
)
from warden_ml.served import served


def test_tower_sizes_and_shapes() -> None:
    vit, cnn = ViTTower(), CNNTower()
    assert 700_000 <= n_params(vit) <= 900_000
    assert 20_000 <= n_params(cnn) <= 40_000
    x = torch.rand(5, 1, 8, 8)
    for tower in (vit.eval(), cnn.eval()):
        z = tower(x)
        assert z.shape == (5, 64)
        assert torch.allclose(z.norm(dim=-1), torch.ones(5), atol=1e-5)
    assert flops(vit, x[:1]) > 10 * flops(cnn, x[:1]) > 0


def test_served_towers_match_eager() -> None:
    """The served form (ONNX Runtime) computes what the eager tower computes for the shapes
    it was exported with (a batch-1 request), and refuses other shapes clearly."""
    torch.manual_seed(0)
    x = torch.rand(1, 1, 8, 8)
    for tower in (ViTTower().eval(), CNNTower().eval()):
        fn = served(tower, x)
        with torch.inference_mode():
            for image in (x, torch.rand(1, 1, 8, 8)):
                assert torch.allclose(fn(image), tower(image), atol=1e-5, rtol=1e-4)
        with pytest.raises(Exception, match="(?i)dimension|shape"):
            fn(torch.rand(7, 1, 8, 8))


def test_old_tower_layout_is_refused_clearly() -> None:
    with pytest.raises(ValueError, match="another layout"):
        make_tower("cnn", {"c1": 16, "c2": 32, "c3": 48, "out_dim": 64})
    assert make_tower("cnn", {"c1": 8, "c2": 16, "out_dim": 32}).out_dim == 32


def test_stack_scores_catalog() -> None:
    stack = Stack("cnn", CNNTower(), Projector(64, 32), SeqModel(d_model=32, max_len=4)).eval()
    table = stack.encode(torch.rand(10, 1, 8, 8))
    windows = torch.tensor([[-1, -1, 3, 4], [-1, -1, -1, -1]])
    items, pad = gather_items(table, windows)
    assert not pad[:, -1].any() and pad[0, :2].all()
    q = stack.user_state(items, pad)
    assert q.shape == (2, 32) and torch.isfinite(q @ table.T).all()


@pytest.mark.parametrize(
    ("d_model", "heads", "depth", "score_dim"),
    [(32, 4, 2, 0), (64, 4, 2, 0), (48, 2, 3, 0), (64, 4, 1, 16), (32, 4, 2, 8)],
)
def test_served_request_matches_eager_scoring(
    d_model: int, heads: int, depth: int, score_dim: int
) -> None:
    """A batch-1 request through the served graph (encoded query pin, sequence model,
    full-catalog scores, the window's pins masked) ranks exactly as the eager scoring the
    evaluation uses (the stack's own nn layers, its score head if it has one): windows with
    pads, a repeated pin, a lone query, all pads; with a fresh embedding and with the table's;
    through every entry point."""
    from warden_ml.serving import Server

    torch.manual_seed(1)
    images = torch.rand(50, 1, 8, 8)
    seq = SeqModel(d_model=d_model, heads=heads, depth=depth, max_len=4)
    with torch.no_grad():  # trained-looking weights, not the init's near-identity blocks
        for p in seq.parameters():
            p.add_(torch.randn_like(p) * 0.2)
    stack = Stack("cnn", CNNTower(), Projector(64, d_model), seq)
    if score_dim:
        with torch.no_grad():
            stack.head = ScoreHead.from_table(stack.encode(images), score_dim)
            stack.head.query.weight.add_(torch.randn_like(stack.head.query.weight) * 0.2)
    server = Server(stack, images, k=5, pin_ids=np.arange(50))
    windows = [[-1, -1, 3, 4], [7, 7, 9, 11], [-1, -1, -1, 49], [-1, -1, -1, -1], [0, 1, 2, 3]]
    for rows in windows:
        window = torch.tensor([rows])
        encoded = server.encode_one(images[max(rows[-1], 0)][None])
        for fresh in (None, encoded):
            eager = server.scores(window, fresh)[0].clone()
            eager[window[0][window[0] >= 0]] = -torch.inf
            served_scores = server.request_scores(window, fresh)[0]
            assert torch.equal(served_scores.isinf(), eager.isinf()), rows
            finite = eager.isfinite()
            assert torch.allclose(served_scores[finite], eager[finite], atol=1e-5), rows
            top = server.recommend(window, fresh)[0].tolist()
            assert top == torch.topk(eager, 5).indices.tolist(), rows
            assert not set(top) & {r for r in rows if r >= 0}
            eager[[5, 6]] = -torch.inf
            again = server.recommend(window, fresh, exclude=[5, 6])[0].tolist()
            assert again == torch.topk(eager, 5).indices.tolist(), rows
        if rows[-1] >= 0:
            assert (
                server.request_encode(window).tolist() == server.recommend(window, encoded).tolist()
            )
        assert server.request_lookup(window).tolist() == server.recommend(window, None).tolist()


def test_score_head_starts_as_the_dot_product_it_replaces() -> None:
    """At full rank the head's starting maps rank every pin as the plain dot product does
    (the table's mean adds the same to every pin's score); the artifact round-trips it."""
    from warden_ml.models import stack_from_blob

    torch.manual_seed(2)
    table = torch.randn(40, 16) + 3.0
    q = torch.randn(5, 16)
    head = ScoreHead.from_table(table, 16)
    with torch.no_grad():
        plain = q @ table.T
        headed = head.query(q) @ head.key(table).T
    shift = (plain - headed)[:, :1]  # one constant per query: q . mean
    assert torch.allclose(plain - headed, shift.expand_as(plain), atol=1e-3)
    seq = SeqModel(d_model=16, depth=2, max_len=4).first_blocks(1)
    stack = Stack("cnn", CNNTower(), Projector(64, 16), seq, head=ScoreHead(16, 4)).eval()
    blob = {"kind": "stack", "config": stack.config(), **{
        name: getattr(stack, name).state_dict()
        for name in ("tower", "projector", "seq", "prior", "head")
    }}  # fmt: skip
    again = stack_from_blob(blob)
    assert again.head is not None and len(again.seq.blocks) == 1
    x = torch.rand(3, 1, 8, 8)
    assert torch.equal(again.keys(again.encode(x)), stack.keys(stack.encode(x)))


def test_images_from_binary() -> None:
    import polars as pl

    raw = bytes(range(16)) * 4
    t = images_from_binary(pl.Series([raw, bytes(64)], dtype=pl.Binary))
    assert t.shape == (2, 1, 8, 8) and float(t.max()) == pytest.approx(15 / 16)


def test_info_nce_prefers_aligned_pairs() -> None:
    g = torch.Generator().manual_seed(0)
    a = F.normalize(torch.randn(32, 16, generator=g), dim=-1)
    aligned = info_nce(a, a)
    shuffled = info_nce(a, a[torch.randperm(32, generator=g)])
    assert aligned < shuffled
    # uniform logits: loss is log(batch)
    zeros = torch.zeros(8, 4)
    assert float(info_nce(zeros, zeros)) == pytest.approx(math.log(8), rel=1e-5)
    # hard negatives that copy the positives make the anchor side harder
    assert info_nce(a, a, hard=a[:8]) > aligned
    w = torch.ones(32)
    assert float(info_nce(a, a, weights=w)) == pytest.approx(float(aligned), rel=1e-6)


def test_nt_xent_prefers_invariant_views() -> None:
    g = torch.Generator().manual_seed(0)
    z = F.normalize(torch.randn(16, 8, generator=g), dim=-1)
    other = F.normalize(torch.randn(16, 8, generator=g), dim=-1)
    assert nt_xent(z, z) < nt_xent(z, other)


def test_ranking_metrics_by_hand() -> None:
    scores = np.array([[0.9, 0.1, 0.5], [0.2, 0.3, 0.1], [0.5, 0.5, 0.0]])
    ranks = target_ranks(scores, np.array([0, 0, 0]))
    assert ranks.tolist() == [0, 1, 1]  # the tie counts against the target
    assert recall_at_k(ranks, 1) == pytest.approx(1 / 3)
    assert mrr(ranks) == pytest.approx((1 + 0.5 + 0.5) / 3)
    assert ndcg_at_k(ranks, 10) == pytest.approx((1 + 2 / math.log2(3)) / 3)
    far = np.array([0, 10, 20])
    assert recall_at_k(far, 10) == pytest.approx(1 / 3)
    assert ndcg_at_k(far, 10) == pytest.approx(1 / 3)
    m = all_metrics(far, 10)
    assert m["n"] == 3 and set(m) == {"recall@10", "mrr", "ndcg@10", "n"}


def test_mean_ci() -> None:
    ci = mean_ci([0.1, 0.2, 0.3])
    assert ci["mean"] == pytest.approx(0.2)
    assert ci["ci95"] == pytest.approx(4.303 * 0.1 / math.sqrt(3))
    assert math.isnan(mean_ci([0.5])["ci95"])


def test_measure_interleaves_in_shuffled_blocks() -> None:
    from warden_ml.serving import measure

    calls: list[tuple[str, int]] = []
    fns = {name: (lambda i, name=name: calls.append((name, i))) for name in ("a", "b", "c")}
    out = measure(fns, 7, warmup=0, block=3)
    assert {name: m["requests"] for name, m in out.items()} == {"a": 7, "b": 7, "c": 7}
    for name in fns:  # every arm sees every request once, in order
        assert [i for n, i in calls if n == name] == list(range(7))
    rounds = [calls[0:9], calls[9:18], calls[18:21]]  # blocks of 3, 3 and 1 requests
    for r, size in zip(rounds, (3, 3, 1), strict=True):
        chunks = [r[j : j + size] for j in range(0, len(r), size)]
        assert sorted(c[0][0] for c in chunks) == ["a", "b", "c"]  # each arm once per round
        assert all(len({n for n, _ in c}) == 1 for c in chunks)  # one arm's block, unbroken
    assert len({tuple(c[0] for c in r[:: len(r) // 3]) for r in rounds}) > 1  # order varies
    calls.clear()
    measure(fns, 4, warmup=0, block=1)
    assert len(calls) == 12 and all(sorted(n for n, _ in calls[j : j + 3]) == ["a", "b", "c"]
                                    for j in range(0, 12, 3))  # fmt: skip
