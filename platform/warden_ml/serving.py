"""The two serving paths and their measurement at batch size 1 on one thread.

* ``tower_only``: the image encoder alone (the number the encoder comparison quotes).
* ``encode``: the request carries the query pin's image; the tower (+ projector) encodes it
  at request time, then the sequence model scores the catalog.
* ``lookup``: the query pin's embedding is looked up in the precomputed table.

Both per-request encoders (tower, tower + projector) run in their served form
(``served.Served``: exported to ONNX, run by ONNX Runtime on one thread), and so does the rest
of a batch-1 request (gather the window's embeddings, the sequence model, full-catalog
scoring, the window's pins masked, the top k: ``request_graph.RequestGraph``): the same
treatment for every stack, so what differs between two stacks' requests is their encoders.
A request with its query pin's image (``request_encode``) runs the encoder and the request
graph as one served graph (one runtime call) and hands the runtime numpy views, no torch op.
Batched scoring (``scores``: evaluation, offline inference) stays eager; a test holds the two
equal.

Latency is wall time per request (perf_counter); CPU-seconds per request is process time
over the whole loop divided by the number of requests; cost per 1k requests prices those
CPU-seconds at ``price_per_cpu_hour``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn

from warden_ml.data import gather_items
from warden_ml.metrics import percentile
from warden_ml.models import Stack
from warden_ml.request_graph import EncodedRequest, RequestGraph
from warden_ml.served import served


class Server:
    def __init__(
        self, stack: Stack, images: torch.Tensor, k: int = 10, pin_ids: Any = None
    ) -> None:
        """``pin_ids`` (the catalog's pin id per image row) aligns the stack's item prior;
        without them the prior is left out."""
        self.stack = stack.eval()
        self.images = images
        self.k = k
        example = images[:1].contiguous()
        self.tower = served(stack.tower, example)
        encoder = nn.Sequential(stack.tower, stack.projector)
        self.encoder = served(encoder, example)
        with torch.inference_mode():
            self.table = torch.cat(
                [stack.encode(images[i : i + 1024]) for i in range(0, images.shape[0], 1024)]
            )
            n = images.shape[0]
            self.bias = (
                stack.prior.for_pins(pin_ids).detach() if pin_ids is not None else torch.zeros(n)
            )
            self.keys = stack.keys(self.table)  # what the user state scores (the table itself
            # unless the stack has a score head)
        window = torch.full((1, stack.seq.max_len), -1, dtype=torch.int64)
        window[0, -2:] = torch.tensor([0, min(1, n - 1)])
        graph = RequestGraph(stack.seq, self.table, self.bias, k, stack.head)
        self.request = served(graph, window, self.table[:1].clone())
        # the same encoder and request graph in one runtime call: no hand-off between them
        self.request_image = served(EncodedRequest(encoder, graph), window, example)
        # the per-request path hands numpy views straight to the runtime (no torch ops)
        self._images = images.detach().contiguous().numpy()
        self._table = self.table.numpy()

    def encode_one(self, image: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return self.encoder(image)

    def tower_one(self, image: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return self.tower(image)

    def scores(self, window: torch.Tensor, fresh: torch.Tensor | None = None) -> torch.Tensor:
        """(B, N) scores of every catalog pin for windows (B, L) of rows (last = query pin)."""
        with torch.inference_mode():
            items, pad = gather_items(self.table, window)
            if fresh is not None:
                items = items.clone()
                items[:, -1] = fresh
            q = self.stack.user_state(items, pad)
            return torch.addmm(self.bias.expand(q.shape[0], -1), q, self.keys.T)

    def request_scores(self, window: torch.Tensor, fresh: torch.Tensor | None) -> torch.Tensor:
        """(1, N) scores for one request (window (1, L) of rows, last = query pin; ``fresh``
        its embedding encoded now, or None to use the table's), the window's pins -inf."""
        return torch.from_numpy(self._answer(window.numpy(), self._fresh(window, fresh))[0])

    def recommend(
        self, window: torch.Tensor, fresh: torch.Tensor | None, exclude: Any = None
    ) -> torch.Tensor:
        """Top-k pin rows for one request (window (1, L) of rows, last = query pin), never
        a pin in the window (the user engaged it) nor one in ``exclude`` (rows)."""
        scores, top = self._answer(window.numpy(), self._fresh(window, fresh))
        if exclude is None:
            return torch.from_numpy(top)
        masked = torch.from_numpy(scores)
        masked[0, torch.as_tensor(exclude, dtype=torch.int64)] = -torch.inf
        return torch.topk(masked, self.k, dim=1).indices

    def _fresh(self, window: torch.Tensor, fresh: torch.Tensor | None) -> np.ndarray:
        if fresh is not None:
            return fresh.detach().numpy()
        return self._lookup(int(window[0, -1]))

    def _lookup(self, row: int) -> np.ndarray:
        """The table's embedding of a row, or zeros for a pad (as ``gather_items``)."""
        return self._table[row : row + 1] if row >= 0 else np.zeros_like(self._table[:1])

    def _answer(self, window: np.ndarray, fresh: np.ndarray) -> list[np.ndarray]:
        scores, top = self.request.run_numpy(window, fresh)
        return [scores[:, :-1], top]  # the pads' column dropped (RequestGraph)

    def request_encode(self, window: torch.Tensor) -> torch.Tensor:
        w = window.numpy()
        query = int(w[0, -1])
        return torch.from_numpy(self.request_image.run_top(w, self._images[query : query + 1]))

    def request_lookup(self, window: torch.Tensor) -> torch.Tensor:
        w = window.numpy()
        return torch.from_numpy(self.request.run_top(w, self._lookup(int(w[0, -1]))))


def measure(
    fns: dict[str, Callable[[int], Any]],
    n: int,
    warmup: int = 20,
    price_per_cpu_hour: float = 0.05,
    seed: int = 0,
    block: int = 1,
) -> dict[str, dict[str, float]]:
    """Run each fn(i) for n requests on one thread, interleaved so that every arm sees the
    same machine state; per-request wall latency and CPU-seconds. Every arm gets the same
    inputs (request i) and nothing is discarded after the warm-up.

    ``block=1`` interleaves request by request, the arms' order shuffled for every request
    (seeded; in a fixed order an arm always runs right after the same neighbour). A small
    model then always runs right after some other model and pays for what that one left in
    the caches and branch predictors: measured on these machines, the ~30k-parameter CNN
    takes ~37 us per request in steady state and ~65 us right after the ViT, while the ViT
    barely moves. ``block=b`` runs each arm for ``b`` consecutive requests at a time, the
    arms' order shuffled every round: each arm in its own steady state, as a server that
    runs one model request after request, while the rounds still spread the machine's
    drift over all arms (the first request of each block, cold, stays in the sample)."""
    threads = torch.get_num_threads()
    deterministic = torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(1)
    # Serving does not need bitwise-reproducible kernels; give every arm the fast ones.
    torch.use_deterministic_algorithms(False)
    lat: dict[str, list[float]] = {name: [] for name in fns}
    cpu: dict[str, float] = {name: 0.0 for name in fns}
    rng = np.random.default_rng(seed)
    names = list(fns)
    block = max(int(block), 1)
    try:
        for start in range(0, warmup, block):
            for j in rng.permutation(len(names)):
                for i in range(start, min(start + block, warmup)):
                    fns[names[j]](i)
        for start in range(0, n, block):
            for j in rng.permutation(len(names)):
                name = names[j]
                fn = fns[name]
                for i in range(start, min(start + block, n)):
                    c0 = time.process_time()
                    t0 = time.perf_counter()
                    fn(i)
                    lat[name].append(time.perf_counter() - t0)
                    cpu[name] += time.process_time() - c0
    finally:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(deterministic)
    out: dict[str, dict[str, float]] = {}
    for name in fns:
        per = cpu[name] / max(n, 1)
        out[name] = {
            "p50_ms": round(percentile(lat[name], 50) * 1e3, 5),
            "p95_ms": round(percentile(lat[name], 95) * 1e3, 5),
            "mean_ms": round(sum(lat[name]) / max(n, 1) * 1e3, 5),
            "cpu_s_per_request": per,
            "cost_per_1k_usd": per * 1000.0 / 3600.0 * price_per_cpu_hour,
            "requests": n,
            "threads": 1,
            "batch_size": 1,
            "block": block,
        }
    return out
