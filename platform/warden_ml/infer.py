"""The infer step: pin embeddings for all pins and top-k recommendations per user."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch

from warden_ml.common import Reader, Spec, Timer, load_model, say, seed_everything, write_metrics
from warden_ml.data import Histories, pad_window, read_engagements, read_pins
from warden_ml.models import stack_from_blob
from warden_ml.serving import Server, measure


def infer(spec: Spec, out: Path, client: Reader) -> dict[str, Any]:
    """Writes pin_embeddings.parquet (pin_id, embedding) and, when the spec names an
    ``engagements`` dataset, recommendations.parquet (user_id masked, rank, pin_id, score):
    the top-k unseen pins for each user from their last engagements. Without engagements it
    writes related_pins.parquet (pin_id, rank, related_pin_id, score) instead."""
    timer = Timer()
    seed_everything(spec.seed, spec.p("threads", None))
    path = spec.model_in if isinstance(spec.model_in, str) else (spec.model_in or {}).get("model")
    if not path:
        raise ValueError('infer needs model_in = "stack.pt" (or {"model": "stack.pt"})')
    stack = stack_from_blob(load_model(path))
    k = int(spec.p("k", 10))
    pins = read_pins(client, spec, "inference", with_digits=False)
    server = Server(stack, pins.images, k, pins.ids)
    table = server.table
    emb = table.numpy()
    pl.DataFrame(
        {"pin_id": pins.ids, "embedding": pl.Series(emb.tolist(), dtype=pl.List(pl.Float32))}
    ).write_parquet(out / "pin_embeddings.parquet")
    say(f"pin embeddings: {emb.shape[0]:,} x {emb.shape[1]}")
    files = ["pin_embeddings.parquet"]
    windows: np.ndarray
    if "engagements" in spec.datasets:
        hist = Histories.build(read_engagements(client, spec, "inference"), pins)
        L = stack.seq.max_len
        windows = np.stack([pad_window(hist.last(u, L), L) for u in range(len(hist.users))])
        recs = _user_recs(server, hist, windows, k, pins.ids)
        recs.write_parquet(out / "recommendations.parquet")
        files.append("recommendations.parquet")
        say(f"recommendations: {hist.users.shape[0]:,} users x top-{k}")
    else:
        with torch.no_grad():
            sims = table @ table.T
            sims.fill_diagonal_(-torch.inf)
            top = torch.topk(sims, k, dim=1)
        n = pins.ids.shape[0]
        pl.DataFrame(
            {
                "pin_id": np.repeat(pins.ids, k),
                "rank": np.tile(np.arange(1, k + 1), n),
                "related_pin_id": pins.ids[top.indices.numpy().ravel()],
                "score": top.values.numpy().ravel(),
            }
        ).write_parquet(out / "related_pins.parquet")
        files.append("related_pins.parquet")
        windows = np.stack([pad_window(np.array([i]), stack.seq.max_len) for i in range(n)])
    n_req = int(spec.p("latency_requests", 300))
    w = [torch.from_numpy(windows[i % len(windows)][None]) for i in range(n_req + 50)]
    serving = measure(
        {
            "request_encode": lambda i: server.request_encode(w[i]),
            "request_lookup": lambda i: server.request_lookup(w[i]),
        },  # fmt: skip
        n_req,
        warmup=50,
        price_per_cpu_hour=float(spec.p("price_per_cpu_hour", 0.05)),
    )
    metrics: dict[str, Any] = {"tower": stack.tower_kind, "k": k, "pins": int(len(pins.ids))}
    for path_name, m in serving.items():
        for key, value in m.items():
            metrics[f"serving.{path_name}.{key}"] = value
    metrics["artifacts"] = files
    metrics |= timer.done()
    return write_metrics(out, "infer", metrics)


@torch.no_grad()
def _user_recs(
    server: Server, hist: Histories, windows: np.ndarray, k: int, ids: np.ndarray
) -> pl.DataFrame:
    users, ranks, pins, scores = [], [], [], []
    w = torch.from_numpy(windows)
    for s in range(0, w.shape[0], 512):
        sc = server.scores(w[s : s + 512]).clone()
        for r in range(sc.shape[0]):  # never recommend what the user already engaged with
            u = s + r
            seen = hist.items[hist.start[u] : hist.start[u] + hist.count[u]]
            sc[r, torch.from_numpy(seen)] = -torch.inf
        top = torch.topk(sc, k, dim=1)
        users.append(np.repeat(hist.users[s : s + 512], k))
        ranks.append(np.tile(np.arange(1, k + 1), sc.shape[0]))
        pins.append(top.indices.numpy().ravel())
        scores.append(top.values.numpy().ravel())
    rows = np.concatenate(pins)
    return pl.DataFrame(
        {
            "user_id": np.concatenate(users),
            "rank": np.concatenate(ranks),
            "pin_id": ids[rows],
            "score": np.concatenate(scores).astype(np.float32),
        }
    )
