"""A batch-1 recommendation request, eager against the served request graph, in one run.

Both stacks (swapped: the domain CNN tower; generic: the ViT) at their default sizes over a
5,000-pin catalog of random 8x8 images (latency does not depend on the weights, so nothing is
trained here). Four arms on one thread (`warden_ml.serving.measure`), interleaved request by
request (or `--block B` requests per arm in a row: each arm in its steady state): each
stack's request run eagerly in PyTorch, and in its served form (`Server.request_encode`: the
encoder and the request graph run by ONNX Runtime). Prints P50 and CPU per request, and the
end-to-end ratio generic / swapped for each form.

Run: .venv/bin/python -m tests.benchmarks.bench_request_graph [--requests 2000] [--block 1]
"""

from __future__ import annotations

import argparse

import torch

from warden_ml.models import Projector, SeqModel, Stack, make_tower
from warden_ml.serving import Server, measure


def eager_request(server: Server, window: torch.Tensor) -> torch.Tensor:
    """The request in eager PyTorch: encode, score, mask the window, top-k."""
    query = int(window[0, -1])
    with torch.inference_mode():
        fresh = server.stack.encode(server.images[query : query + 1])
        scores = server.scores(window, fresh)
        scores[0, window[0][window[0] >= 0]] = -torch.inf
        return torch.topk(scores, server.k, dim=1).indices


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--pins", type=int, default=5000)
    parser.add_argument(
        "--block", type=int, default=1, help="requests per arm in a row (1: interleaved)"
    )
    args = parser.parse_args()
    torch.manual_seed(0)
    images = torch.rand(args.pins, 1, 8, 8)
    servers = {}
    for arm, kind in (("swapped", "cnn"), ("generic", "vit")):
        tower = make_tower(kind)
        with torch.no_grad():
            width = tower.eval()(images[:1]).shape[-1]
        servers[arm] = Server(Stack(kind, tower, Projector(width), SeqModel()), images)
    gen = torch.Generator().manual_seed(1)
    windows = [
        torch.randint(-1, args.pins, (1, 8), generator=gen).clamp(min=-1)
        for _ in range(args.requests)
    ]
    for w in windows:
        w[0, -1] = w[0, -1].clamp(min=0)  # the query pin is always there
    fns = {}
    for arm, srv in servers.items():
        fns[f"{arm}:eager"] = lambda i, s=srv: eager_request(s, windows[i])
        fns[f"{arm}:served"] = lambda i, s=srv: s.request_encode(windows[i])
    res = measure(fns, args.requests, warmup=100, block=args.block)
    print(f"{'arm':<16} {'P50 ms':>8} {'CPU ms/request':>15}")
    for name, r in res.items():
        print(f"{name:<16} {r['p50_ms']:>8.4f} {r['cpu_s_per_request'] * 1e3:>15.4f}")
    for form in ("eager", "served"):
        a, b = res[f"swapped:{form}"], res[f"generic:{form}"]
        print(
            f"{form}: end-to-end P50 generic/swapped {b['p50_ms'] / a['p50_ms']:.2f}x,"
            f" cost {1 - a['cpu_s_per_request'] / b['cpu_s_per_request']:.1%} lower"
        )
    print("(random images and untrained weights: latency only; one thread, batch 1)")


if __name__ == "__main__":
    main()
