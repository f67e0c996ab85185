"""Governed reads (through the SDK only) and the tensors the steps train on."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl
import torch

from warden_ml.common import Reader, ShardReader, Spec, say


@dataclass
class Pins:
    ids: np.ndarray  # (N,) int64 pin ids, sorted
    images: torch.Tensor  # (N, 1, 8, 8) float32 in [0, 1]
    digits: np.ndarray | None  # (N,) labels, diagnostics only (never a training target)

    def index(self, pin_ids: np.ndarray) -> np.ndarray:
        """Row index of each pin id (-1 where unknown)."""
        pos = np.searchsorted(self.ids, pin_ids)
        pos = np.minimum(pos, self.ids.shape[0] - 1)
        return np.where(self.ids[pos] == pin_ids, pos, -1)


def images_from_binary(column: pl.Series) -> torch.Tensor:
    raw = b"".join(column.to_list())
    pixels = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 1, 8, 8)
    return torch.from_numpy(pixels.astype(np.float32) / 16.0)


def _read(
    client: Reader,
    name: str,
    purpose: str,
    columns: list[str],
    shard: tuple[int, int] | None,
    version: str | None,
    info: dict[str, str] | None,
) -> pl.DataFrame:
    """A governed read; with `shard`, `version` or `info` (the ranks of a data-parallel run),
    one that also says which version it read."""
    if shard is None and version is None and info is None:
        return client.read(name, purpose=purpose, columns=columns)
    if not isinstance(client, ShardReader):
        raise TypeError(f"reading {name} by rank needs a reader with read_with_info (the SDK's)")
    df, got = client.read_with_info(
        name, purpose=purpose, columns=columns, shard=shard, version=version
    )
    if info is not None:
        info.update(got)
    return df


def _shard_note(shard: tuple[int, int] | None) -> str:
    return "" if shard is None else f" shard {shard[0]}/{shard[1]}"


def read_pins(
    client: Reader,
    spec: Spec,
    default_purpose: str,
    with_digits: bool = True,
    *,
    version: str | None = None,
    info: dict[str, str] | None = None,
) -> Pins:
    name, purpose = spec.dataset("pins", default_purpose)
    cols = ["pin_id", "image"] + (["digit"] if with_digits else [])
    df = _read(client, name, purpose, cols, None, version, info).sort("pin_id")
    say(f"read {name} ({purpose}): {df.height:,} pins")
    digits = df["digit"].to_numpy().astype(np.int64) if with_digits else None
    return Pins(df["pin_id"].to_numpy().astype(np.int64), images_from_binary(df["image"]), digits)


def read_pairs(
    client: Reader,
    spec: Spec,
    pins: Pins,
    default_purpose: str,
    *,
    shard: tuple[int, int] | None = None,
    version: str | None = None,
    info: dict[str, str] | None = None,
) -> np.ndarray:
    """(M, 3) float64 rows: index a, index b, weight (pairs with unknown pins dropped);
    `shard=(rank, world)`: only that rank's part of the pairs (the gateway's shard)."""
    name, purpose = spec.dataset("pin_pairs", default_purpose)
    df = _read(client, name, purpose, ["pin_a", "pin_b", "weight"], shard, version, info)
    say(f"read {name} ({purpose}){_shard_note(shard)}: {df.height:,} pairs")
    a = pins.index(df["pin_a"].to_numpy().astype(np.int64))
    b = pins.index(df["pin_b"].to_numpy().astype(np.int64))
    w = df["weight"].to_numpy().astype(np.float64)
    ok = (a >= 0) & (b >= 0)
    return np.stack([a[ok], b[ok], w[ok]], axis=1)


def read_engagements(client: Reader, spec: Spec, default_purpose: str) -> pl.DataFrame:
    """user_id (masked keyed hash), pin_id, ts; sorted by user then time."""
    name, purpose = spec.dataset("engagements", default_purpose)
    df = client.read(name, purpose=purpose, columns=["user_id", "pin_id", "ts"])
    say(f"read {name} ({purpose}): {df.height:,} engagements (user_id masked)")
    return df.sort("user_id", "ts", "pin_id", maintain_order=True)


def read_gold(client: Reader, spec: Spec, default_purpose: str) -> pl.DataFrame:
    name, purpose = spec.dataset("gold", default_purpose)
    df = client.read(
        name, purpose=purpose, columns=["slice", "user_id", "query_pin_id", "target_pin_id", "ts"]
    )
    say(f"read {name} ({purpose}): {df.height:,} gold rows")
    return df.sort("slice", "ts", "user_id", "query_pin_id", "target_pin_id")


@dataclass
class Histories:
    """Per-user engagement histories as pin row indices in time order (CSR)."""

    users: np.ndarray  # (U,) masked user ids, sorted
    start: np.ndarray  # (U,)
    count: np.ndarray  # (U,)
    items: np.ndarray  # (E,) pin row index
    ts: np.ndarray  # (E,) int64 microseconds

    @classmethod
    def build(cls, eng: pl.DataFrame, pins: Pins) -> Histories:
        idx = pins.index(eng["pin_id"].to_numpy().astype(np.int64))
        eng = eng.with_columns(pl.Series("row", idx)).filter(pl.col("row") >= 0)
        user = eng["user_id"].to_numpy().astype(np.int64)
        users, start, count = np.unique(user, return_index=True, return_counts=True)
        ts = eng["ts"].cast(pl.Int64).to_numpy()
        return cls(users, start, count, eng["row"].to_numpy().astype(np.int64), ts)

    def before(self, user: int, ts: int, n: int) -> np.ndarray:
        """The user's last n pin rows strictly before ts (may be empty)."""
        u = int(np.searchsorted(self.users, user))
        if u >= self.users.shape[0] or self.users[u] != user:
            return np.zeros(0, dtype=np.int64)
        s, c = int(self.start[u]), int(self.count[u])
        end = s + int(np.searchsorted(self.ts[s : s + c], ts, side="left"))
        return self.items[max(s, end - n) : end]

    def last(self, user_pos: int, n: int) -> np.ndarray:
        s, c = int(self.start[user_pos]), int(self.count[user_pos])
        return self.items[max(s, s + c - n) : s + c]


def next_pin_examples(hist: Histories, max_len: int) -> tuple[np.ndarray, np.ndarray]:
    """Training examples (history window, next pin): windows (E, L) of row index, -1 = pad."""
    windows, targets = [], []
    for u in range(hist.users.shape[0]):
        s, c = int(hist.start[u]), int(hist.count[u])
        seq = hist.items[s : s + c]
        for t in range(1, c):
            w = seq[max(0, t - max_len) : t]
            windows.append(np.concatenate([np.full(max_len - w.shape[0], -1), w]))
            targets.append(seq[t])
    if not windows:
        return np.zeros((0, max_len), dtype=np.int64), np.zeros(0, dtype=np.int64)
    return np.stack(windows).astype(np.int64), np.asarray(targets, dtype=np.int64)


def pad_window(rows: np.ndarray, max_len: int) -> np.ndarray:
    rows = rows[-max_len:]
    return np.concatenate([np.full(max_len - rows.shape[0], -1), rows]).astype(np.int64)


def gather_items(table: torch.Tensor, windows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Item embeddings for windows of row indices (-1 = pad) and the padding mask.

    A window that is all padding keeps its last slot unmasked (a zero vector), so attention
    never sees a fully-masked row.
    """
    pad = windows < 0
    pad[:, -1] = False
    items = table[windows.clamp(min=0)] * (windows >= 0).unsqueeze(-1).to(table.dtype)
    return items, pad
