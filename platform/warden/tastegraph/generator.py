"""Deterministic generator of a synthetic taste graph whose pins carry real images.

(One module, over 500 lines: the latent model, each file's sampler and the specs share
seeded generators and constants; split, they would pass them all around.)

The *graph* is generated: users, boards, pins, engagements and their timestamps are
drawn from seeded numpy generators from a latent "taste" model. The *images* are
real: every pin carries one of the 1,797 handwritten-digit scans bundled with
scikit-learn (``sklearn.datasets.load_digits``, the UCI optical digits set: 8x8
pixels, intensities 0-16), stored as its 64 pixel bytes in the Binary ``image``
column, with the true class in ``digit``. Nothing is downloaded.

Latent model (written out only as the evaluation-only ``latent_users`` and ``latent_pins``,
which an oracle scorer reads to bound what any model could reach on this graph):

* ``N_TASTES`` tastes. Taste ``t`` is concentrated on digit ``t % 10`` and, for about
  half of them, a second digit; it also prefers one category.
* A user holds 1-3 tastes. Each user owns boards; the board of rank ``r`` among the
  owner's boards takes the owner's taste slot ``r % k`` as its primary taste, and a
  third of boards add a random second taste.
* A pin is created on a home board and takes one of that board's tastes (10% noise),
  then a digit from the taste (15% noise), then a real image of that digit.
* An engagement picks a user by activity, one of the user's tastes, then a pin of
  that taste by popularity (10% noise: any pin). ``save`` files the pin into the
  user's board for that taste slot; ``click`` and ``closeup`` carry the pin's home
  board as context. So co-engaged pins share digit classes far more than chance,
  which is what a contrastive image encoder needs to learn anything.

Files written (one Parquet file each): ``users``, ``pins``, ``engagements`` (the
training log, exactly ``ScaleConfig.n_engagements`` rows), ``pin_pairs`` (random-walk
co-occurrence over the pin-board graph of the training log only) and ``gold``
(held-out user-pin edges, next-pin targets and cold-start pins, guaranteed disjoint
from ``pin_pairs`` and from the training log); and the latent model itself:
``latent_users`` (each user's taste slots) and ``latent_pins`` (each pin's taste, popularity
weight and the event noise rate), allowed for evaluation only, so no training job can read them.

Catalog metadata in the specs: every id column names the entity it identifies (user, pin,
board, engagement), so one user is one entity across datasets (pseudonyms and the
mixed-exposure check depend on it); ``pin_pairs`` and ``gold`` declare that they derive
from ``engagements``, so the catalog classes them at least as strictly (pii), however
public their own columns look.

Determinism: every component draws from its own ``SeedSequence([seed, component])``;
there is no wall-clock dependence (timestamps are offsets from ``EPOCH``). The same
(scale, seed) gives byte-identical files with the same library versions.
"""

from __future__ import annotations

import gzip
import importlib.util
import os
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa

from warden.catalog.columns import ColumnInfo
from warden.tastegraph.specs import SCALES, DatasetSpec, ScaleConfig

EPOCH = datetime(2024, 1, 1)  # naive, read as UTC; engagements fall in [EPOCH, EPOCH+90d)
WINDOW_DAYS = 90
N_TASTES = 20
N_DIGITS = 10
IMAGE_BYTES = 64

REGIONS = ("NA", "EU", "APAC", "LATAM")
REGION_P = (0.40, 0.30, 0.20, 0.10)
CATEGORIES = (
    "home_decor",
    "fashion",
    "food",
    "travel",
    "diy",
    "art",
    "beauty",
    "fitness",
    "garden",
    "tech",
    "kids",
    "wedding",
)
ACTIONS = ("save", "click", "closeup")
ACTION_P = (0.20, 0.35, 0.45)
SURFACES = ("home", "search", "related")
SURFACE_P = (0.50, 0.25, 0.25)
GOLD_SLICES = ("heldout_edge", "next_pin", "cold_start")
EVENT_NOISE = (
    0.10  # share of engagements whose pin ignores the user's taste (any pin, by popularity)
)

_US_PER_DAY = 86_400_000_000
_EPOCH_US = int(EPOCH.replace(tzinfo=UTC).timestamp()) * 1_000_000
_WINDOW_US = WINDOW_DAYS * _US_PER_DAY

ALL_PURPOSES = ("training", "evaluation", "inference", "analytics")
PERSON_PURPOSES = ("training", "evaluation", "analytics")

# Component ids for the per-component seed streams. Append only: renumbering changes data.
_C_TASTES, _C_USERS, _C_BOARDS, _C_PINS, _C_EVENTS, _C_HOLDOUT, _C_WALKS, _C_COLD = range(8)

Progress = Callable[[str], None]


# --------------------------------------------------------------------------- helpers


def _rng(seed: int, component: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, component]))


def _pick(rng: np.random.Generator, counts: np.ndarray) -> np.ndarray:
    """Uniform index in [0, counts) for each entry (counts >= 1)."""
    idx = (rng.random(counts.shape[0]) * counts).astype(np.int64)
    return np.minimum(idx, counts - 1)


def _categorical(rng: np.random.Generator, p: tuple[float, ...], n: int) -> np.ndarray:
    cum = np.cumsum(np.asarray(p, dtype=np.float64))
    cum /= cum[-1]
    return np.minimum(np.searchsorted(cum, rng.random(n), side="right"), len(p) - 1).astype(np.int8)


def _weighted(rng: np.random.Generator, weights: np.ndarray, n: int) -> np.ndarray:
    """n indices drawn with replacement, proportionally to weights."""
    cum = np.cumsum(weights, dtype=np.float64)
    idx = np.searchsorted(cum, rng.random(n) * cum[-1], side="right")
    return np.minimum(idx, weights.shape[0] - 1)


def _tickets(weights: np.ndarray) -> np.ndarray:
    """Ticket array for O(1) sampling: index i appears weights[i] (an integer >= 0) times."""
    return np.repeat(np.arange(weights.shape[0], dtype=np.int64), weights)


def _int_weights(rng: np.random.Generator, n: int, scale: float, sigma: float) -> np.ndarray:
    """Heavy-tailed integer weights >= 1 (ceil of a scaled lognormal)."""
    return np.ceil(rng.lognormal(0.0, sigma, n) * scale).astype(np.int64)


def _sorted_times(rng: np.random.Generator, n: int) -> np.ndarray:
    """n uniform times in [0, window) already sorted, in O(n): normalised exponential
    spacings are distributed as the order statistics of uniforms."""
    gaps = rng.standard_exponential(n + 1)
    cum = np.cumsum(gaps)
    ts = (cum[:-1] / cum[-1] * _WINDOW_US).astype(np.int64)
    return np.minimum(ts, _WINDOW_US - 1)


def _sort(keys: np.ndarray) -> np.ndarray:
    """Sorted copy of an int64 array (polars' multi-threaded sort; values only, so
    the result is deterministic)."""
    return pl.Series(keys, dtype=pl.Int64).sort().to_numpy()


def _unique_counts(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sorted distinct values of an int64 array and how often each occurs."""
    s = _sort(keys)
    if s.shape[0] == 0:
        return s, np.zeros(0, dtype=np.int64)
    head = np.empty(s.shape[0], dtype=bool)
    head[0] = True
    np.not_equal(s[1:], s[:-1], out=head[1:])
    starts = np.flatnonzero(head)
    return s[starts], np.diff(np.append(starts, s.shape[0]))


def _member(values: np.ndarray, pool: np.ndarray) -> np.ndarray:
    """values[i] in pool, by hashing (np.isin sorts and is slow at 10M rows)."""
    other = pl.Series(pool, dtype=pl.Int64).implode()
    return pl.Series(values, dtype=pl.Int64).is_in(other).to_numpy()


def _csr(keys: np.ndarray, n_keys: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Group positions by key: (order, start, count) with order stable."""
    order = np.argsort(keys, kind="stable")
    count = np.bincount(keys, minlength=n_keys)
    start = np.zeros(n_keys, dtype=np.int64)
    np.cumsum(count[:-1], out=start[1:])
    return order, start, count


def _strings(labels: tuple[str, ...], codes: np.ndarray) -> pl.Series:
    return pl.Series(list(labels), dtype=pl.String).gather(codes.astype(np.int64))


def _datetime(offset_us: np.ndarray) -> pl.Series:
    """Microsecond offsets from EPOCH as a naive Datetime(us) series."""
    return pl.Series(offset_us.astype(np.int64) + _EPOCH_US, dtype=pl.Int64).cast(pl.Datetime("us"))


def _binary_images(pixels: np.ndarray) -> pl.Series:
    """(n, 64) uint8 array -> Binary series of 64-byte values, without a Python loop."""
    n = pixels.shape[0]
    data = np.ascontiguousarray(pixels, dtype=np.uint8).tobytes()
    offsets = np.arange(0, (n + 1) * IMAGE_BYTES, IMAGE_BYTES, dtype=np.int64)
    arr = pa.Array.from_buffers(
        pa.large_binary(), n, [None, pa.py_buffer(offsets.tobytes()), pa.py_buffer(data)]
    )
    series = pl.from_arrow(arr)
    assert isinstance(series, pl.Series)
    return series.rename("image").cast(pl.Binary)


DIGITS_CSV = "digits.csv.gz"  # in sklearn/datasets/data/, what load_digits reads


def load_digit_images() -> tuple[np.ndarray, np.ndarray]:
    """The bundled scikit-learn digits: ((1797, 64) uint8 pixels 0-16, (1797,) labels).

    Read from the file scikit-learn ships, as its `load_digits` reads it, without importing
    scikit-learn: its import costs about a CPU-second in every process that seeds a graph."""
    spec = importlib.util.find_spec("sklearn")  # finds the package's folder, imports nothing
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the digits come with scikit-learn, which is not installed")
    csv = Path(next(iter(spec.submodule_search_locations))) / "datasets" / "data" / DIGITS_CSV
    with gzip.open(csv, mode="rt", encoding="utf-8") as text:
        data = np.loadtxt(text, delimiter=",")  # 64 pixels, then the label, per row
    pixels = data[:, :-1].round().astype(np.uint8)
    return pixels, data[:, -1].astype(np.int64)


def _write(df: pl.DataFrame, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    df.write_parquet(tmp, compression="zstd", statistics=True)
    os.replace(tmp, path)


# --------------------------------------------------------------------------- graph pieces


class _Tastes:
    def __init__(self, rng: np.random.Generator) -> None:
        t = np.arange(N_TASTES)
        self.digit_a = t % N_DIGITS
        self.digit_b = (self.digit_a + rng.integers(1, N_DIGITS, N_TASTES)) % N_DIGITS
        self.p_a = np.where(rng.random(N_TASTES) < 0.5, 0.65, 1.0)
        self.category = rng.permutation(N_TASTES) % len(CATEGORIES)
        self.popularity = rng.dirichlet(np.full(N_TASTES, 4.0))


class _Users:
    def __init__(self, rng: np.random.Generator, n: int, tastes: _Tastes) -> None:
        self.n = n
        self.region = _categorical(rng, REGION_P, n)
        self.signup_days_before = rng.integers(1, 3 * 365 + 1, n)
        self.k = (_categorical(rng, (0.3, 0.5, 0.2), n) + 1).astype(np.int64)
        self.tastes = _weighted(rng, tastes.popularity, n * 3).reshape(n, 3)
        self.activity = _int_weights(rng, n, 3.0, 1.0)


class _Boards:
    def __init__(self, rng: np.random.Generator, n: int, users: _Users) -> None:
        self.n = n
        # Users (in random order) first get one board per taste slot while boards last;
        # the remaining boards go to random owners.
        perm = rng.permutation(users.n)
        base = np.repeat(perm, users.k[perm])[:n]
        owner = np.concatenate([base, rng.integers(0, users.n, n - base.shape[0])])
        self.owner = owner.astype(np.int64)
        order, start, count = _csr(self.owner, users.n)
        rank = np.empty(n, dtype=np.int64)
        rank[order] = np.arange(n) - start[self.owner[order]]
        self.by_owner, self.owner_start, self.owner_count = order, start, count
        slot = rank % users.k[self.owner]
        self.primary = users.tastes[self.owner, slot]
        self.secondary = np.where(rng.random(n) < 0.35, rng.integers(0, N_TASTES, n), self.primary)
        self.activity = rng.lognormal(0.0, 0.8, n)


class _Pins:
    def __init__(
        self,
        rng: np.random.Generator,
        cfg: ScaleConfig,
        tastes: _Tastes,
        boards: _Boards,
        labels: np.ndarray,
    ) -> None:
        n = cfg.n_pins
        self.n = n
        self.board = _weighted(rng, boards.activity, n)
        r = rng.random(n)
        taste = np.where(r < 0.65, boards.primary[self.board], boards.secondary[self.board])
        self.taste = np.where(r >= 0.90, rng.integers(0, N_TASTES, n), taste)
        use_a = rng.random(n) < tastes.p_a[self.taste]
        digit = np.where(use_a, tastes.digit_a[self.taste], tastes.digit_b[self.taste])
        self.digit = np.where(rng.random(n) < 0.15, rng.integers(0, N_DIGITS, n), digit)
        class_order, class_start, class_count = _csr(labels, N_DIGITS)
        self.image_index = class_order[
            class_start[self.digit] + _pick(rng, class_count[self.digit])
        ]
        self.category = np.where(
            rng.random(n) < 0.8,
            tastes.category[self.taste],
            rng.integers(0, len(CATEGORIES), n),
        )
        per_category = max(4, n // (200 * len(CATEGORIES)))
        self.n_merchants = per_category * len(CATEGORIES)
        merchant_cat = np.where(
            rng.random(n) < 0.9, self.category, rng.integers(0, len(CATEGORIES), n)
        )
        self.merchant = merchant_cat + len(CATEGORIES) * rng.integers(0, per_category, n)
        n_cold = int(round(n * cfg.cold_start_fraction))
        self.cold = np.zeros(n, dtype=bool)
        self.cold[rng.permutation(n)[:n_cold]] = True
        # Warm pins exist before the window; cold-start pins appear in its last 14 days.
        before = rng.integers(1, 365 * _US_PER_DAY, n)
        late = _WINDOW_US - 14 * _US_PER_DAY + rng.integers(0, 14 * _US_PER_DAY, n)
        self.created_us = np.where(self.cold, late, -before)
        self.popularity = np.where(self.cold, 0, _int_weights(rng, n, 3.0, 1.0))


# --------------------------------------------------------------------------- events


class _Events:
    """Columns of an engagement log, all the same length."""

    def __init__(self, **cols: np.ndarray) -> None:
        self.cols = cols

    def __getitem__(self, name: str) -> np.ndarray:
        return self.cols[name]

    def take(self, idx: np.ndarray) -> _Events:
        return _Events(**{k: v[idx] for k, v in self.cols.items()})

    def __len__(self) -> int:
        return int(next(iter(self.cols.values())).shape[0])


def _draw_events(
    rng: np.random.Generator,
    n: int,
    users: _Users,
    boards: _Boards,
    pins: _Pins,
) -> _Events:
    """n engagements, already in time order (every other column is drawn i.i.d. per row).

    Weighted draws use ticket arrays (one gather per draw), not binary searches.
    """
    ts = _sorted_times(rng, n)
    user = _tickets(users.activity)[rng.integers(0, int(users.activity.sum()), n)]
    slot = _pick(rng, users.k[user])
    taste = users.tastes.ravel()[user * 3 + slot]

    # Pin of the chosen taste, by popularity: tickets grouped by taste.
    by_taste = np.argsort(pins.taste, kind="stable")
    tickets = np.repeat(by_taste, pins.popularity[by_taste])
    t_count = np.bincount(pins.taste, weights=pins.popularity, minlength=N_TASTES)
    t_count = t_count.astype(np.int64)
    t_start = np.concatenate([[0], np.cumsum(t_count)[:-1]])
    noise = (rng.random(n) < EVENT_NOISE) | (t_count[taste] == 0)
    pin = tickets[t_start[taste] + _pick(rng, np.maximum(t_count[taste], 1))]
    n_noise = int(noise.sum())
    pin[noise] = tickets[rng.integers(0, tickets.shape[0], n_noise)]

    action = _categorical(rng, ACTION_P, n)
    has_board = boards.owner_count[user] > 0
    action[(action == 0) & ~has_board] = 1  # a user without boards cannot save
    count = np.maximum(boards.owner_count[user], 1)
    rank = np.where(slot < count, slot, slot % count)
    save_board = boards.by_owner[np.minimum(boards.owner_start[user] + rank, boards.n - 1)]
    board = np.where(action == 0, save_board, pins.board[pin])

    surface = _categorical(rng, SURFACE_P, n)
    mean_ms = np.log(np.array([2500.0, 1500.0, 4000.0]))[action]
    dwell = np.rint(np.exp(mean_ms + 0.6 * rng.standard_normal(n))).astype(np.int64)
    return _Events(
        user=user, pin=pin, board=board, action=action, ts=ts, surface=surface, dwell=dwell
    )


def _hold_out(
    rng: np.random.Generator, cfg: ScaleConfig, events: _Events, n_users: int, n_pins: int
) -> tuple[_Events, pl.DataFrame]:
    """Split the time-ordered log into the training log and gold events (no queries yet).

    Held-out pairs (user, pin) lose *all* their events from the training log. At most
    ``cfg.holdout_rows`` events are removed; any surplus over ``cfg.n_engagements`` is
    then dropped at random, so the training log has exactly ``cfg.n_engagements`` rows.
    """
    n = len(events)
    user, pin, ts = events["user"], events["pin"], events["ts"]
    pair = user * n_pins + pin
    budget = cfg.holdout_rows

    # next_pin: the last event of some users with at least three events.
    per_user = np.bincount(user, minlength=n_users)
    last = np.full(n_users, -1, dtype=np.int64)
    np.maximum.at(last, user, np.arange(n, dtype=np.int64))
    eligible = np.flatnonzero(per_user >= 3)
    n_next = min(int(round(cfg.next_pin_fraction * n_users)), eligible.shape[0])
    next_users = np.sort(rng.permutation(eligible)[:n_next])
    next_keys = pair[last[next_users]]

    # heldout_edge: distinct pairs met by uniform event draws, in order of first draw.
    drawn = pair[rng.integers(0, n, max(budget, 1))]
    _, first_draw = np.unique(drawn, return_index=True)
    held_keys = drawn[np.sort(first_draw)]
    held_keys = held_keys[~np.isin(held_keys, next_keys)]
    cand = np.concatenate([next_keys, held_keys])
    cand_slice = np.concatenate(
        [np.full(next_keys.shape[0], 1, np.int8), np.zeros(held_keys.shape[0], np.int8)]
    )

    # Rows of candidate pairs: count them, find each pair's first row.
    hit_rows = np.flatnonzero(_member(pair, cand))
    hit_keys, first_hit, hit_count = np.unique(
        pair[hit_rows], return_index=True, return_counts=True
    )
    at_cand = np.searchsorted(hit_keys, cand)
    keep = np.cumsum(hit_count[at_cand]) <= budget  # next_pin pairs come first
    cand, cand_slice, at_cand = cand[keep], cand_slice[keep], at_cand[keep]

    removed = np.zeros(n, dtype=bool)
    removed[hit_rows[np.isin(pair[hit_rows], cand)]] = True
    remaining = np.flatnonzero(~removed)
    surplus = remaining.shape[0] - cfg.n_engagements
    if surplus < 0:  # cannot happen: at most `budget` rows are removed
        raise AssertionError("hold-out removed more rows than budgeted")
    if surplus:
        drop = rng.choice(remaining.shape[0], size=surplus, replace=False)
        mask = np.ones(remaining.shape[0], dtype=bool)
        mask[drop] = False
        remaining = remaining[mask]

    # next_pin gold events sit at the user's last event; heldout_edge at the pair's first.
    first_row = hit_rows[first_hit[at_cand]]
    at = np.where(cand_slice == 1, last[user[first_row]], first_row)
    gold = pl.DataFrame(
        {
            "slice_code": cand_slice,
            "user": user[at],
            "target": pin[at],
            "ts": ts[at],
        }
    )
    return events.take(remaining), gold


# --------------------------------------------------------------------------- random walks


def _pin_pairs(
    rng: np.random.Generator, cfg: ScaleConfig, train: _Events, n_pins: int, n_boards: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Random-walk co-occurrence over the bipartite pin-board graph of the training log.

    From every pin with a training edge, ``walks_per_pin`` walks of ``walk_length``
    steps pin -> board -> pin (uniform over distinct neighbours). Directed weight
    w(a->b) = visits of b from a / (walks_per_pin * walk_length); self-visits count in
    the denominator only. Output is undirected, one row per pair with pin_a < pin_b
    and weight = (w(a->b) + w(b->a)) / 2, sorted by (pin_a, pin_b). Indices are 0-based.
    """
    edges, _ = _unique_counts(train["pin"] * n_boards + train["board"])
    e_pin, e_board = edges // n_boards, edges % n_boards
    # edges are sorted by pin, then board: a CSR for pin -> boards for free.
    p_count = np.bincount(e_pin, minlength=n_pins)
    p_start = np.concatenate([[0], np.cumsum(p_count)[:-1]])
    b_order, b_start, b_count = _csr(e_board, n_boards)
    b_pins = e_pin[b_order]

    starts = np.repeat(np.flatnonzero(p_count > 0), cfg.walks_per_pin)
    cur = starts
    visits = []
    for _ in range(cfg.walk_length):
        board = e_board[p_start[cur] + _pick(rng, p_count[cur])]
        cur = b_pins[b_start[board] + _pick(rng, b_count[board])]
        visits.append(cur)
    src = np.tile(starts, cfg.walk_length)
    dst = np.concatenate(visits)
    other = src != dst
    src, dst = src[other], dst[other]
    directed, d_count = _unique_counts(src * n_pins + dst)
    a, b = directed // n_pins, directed % n_pins
    # Undirected: both directions of a pair share the key min*n+max. Each key occurs
    # once or twice, so the float sum per key does not depend on summation order.
    und = (
        pl.DataFrame(
            {
                "key": np.minimum(a, b) * n_pins + np.maximum(a, b),
                "w": d_count / float(cfg.walks_per_pin * cfg.walk_length),
            }
        )
        .group_by("key")
        .agg(pl.col("w").sum())
        .sort("key")
    )
    keys = und["key"].to_numpy()
    return keys // n_pins, keys % n_pins, und["w"].to_numpy() / 2.0


# --------------------------------------------------------------------------- gold


def _attach_queries(gold: pl.DataFrame, train: _Events) -> pl.DataFrame:
    """Query = the user's latest training pin at or before the gold event, else the
    user's next one; rows of users with no training event are dropped.

    Training rows are in time order, so the row index is a time rank: sorting
    user * n + row gives each user's history in time order, searched per gold row.
    """
    n = len(train)
    user = gold["user"].to_numpy()
    keys = _sort(train["user"] * n + np.arange(n, dtype=np.int64))
    pos = np.searchsorted(train["ts"], gold["ts"].to_numpy(), side="right")
    j = np.searchsorted(keys, user * n + pos, side="left")
    back = np.maximum(j - 1, 0)
    fwd = np.minimum(j, n - 1)
    use_back = (j > 0) & (keys[back] // n == user)
    use_fwd = ~use_back & (keys[fwd] // n == user)
    row = np.where(use_back, keys[back] % n, keys[fwd] % n)
    query = train["pin"][row]
    ok = use_back | use_fwd
    return gold.with_columns(pl.Series("query", query)).filter(pl.Series(ok))


def _pick_member(
    rng: np.random.Generator, group: np.ndarray, n_groups: int, want: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """For each entry of want, a uniform random position i with group[i] == want.

    Returns (found, position); position is meaningless where found is False.
    """
    order, start, count = _csr(group, n_groups)
    found = count[want] > 0
    if order.shape[0] == 0:
        return found, np.zeros(want.shape[0], dtype=np.int64)
    at = np.minimum(start[want] + _pick(rng, np.maximum(count[want], 1)), order.shape[0] - 1)
    return found, order[at]


def _cold_start(
    rng: np.random.Generator, pins: _Pins, boards: _Boards, warm: np.ndarray
) -> pl.DataFrame:
    """One row per cold pin: target = a warm pin from its home board, else of its taste."""
    cold = np.flatnonzero(pins.cold)
    warm_idx = np.flatnonzero(warm)
    hb, taste = pins.board[cold], pins.taste[cold]
    on_board, by_board = _pick_member(rng, pins.board[warm_idx], boards.n, hb)
    of_taste, by_taste = _pick_member(rng, pins.taste[warm_idx], N_TASTES, taste)
    ok = on_board | of_taste
    target = warm_idx[np.where(on_board, by_board, by_taste)] if ok.any() else cold
    return pl.DataFrame(
        {
            "slice_code": np.full(int(ok.sum()), 2, np.int8),
            "user": boards.owner[hb][ok],
            "target": target[ok],
            "ts": pins.created_us[cold][ok],
            "query": cold[ok],
        }
    )


# --------------------------------------------------------------------------- specs


def _specs(out: Path, rows: dict[str, int]) -> list[DatasetSpec]:
    c = ColumnInfo
    synthetic = "Synthetic taste graph (generated); pin images are real sklearn digits."

    def spec(
        name: str,
        description: str,
        columns: tuple[ColumnInfo, ...],
        *,
        identifier_columns: tuple[str, ...] = (),
        allowed_purposes: tuple[str, ...],
        derived_from: tuple[str, ...] = (),
    ) -> DatasetSpec:
        """`name`'s file in `out`, with the row count written."""
        return DatasetSpec(
            name,
            out / f"{name}.parquet",
            f"{synthetic} {description}",
            columns,
            identifier_columns,
            allowed_purposes,
            rows[name],
            derived_from,
        )

    return [
        spec(
            "users",
            "One row per user: region and signup day.",
            (
                c("user_id", "Int64", "pii", "user"),
                c("region", "Utf8", "internal"),
                c("signup_day", "Datetime(us)", "public"),
            ),
            identifier_columns=("user_id",),
            allowed_purposes=PERSON_PURPOSES,
        ),
        spec(
            "pins",
            (
                "One row per pin: home board, category, merchant, and a real "
                "8x8 handwritten-digit image (64 bytes, values 0-16, row-major) with its label."
            ),
            (
                c("pin_id", "Int64", "public", "pin"),
                c("board_id", "Int64", "internal", "board"),
                c("category", "Utf8", "public"),
                c("merchant", "Utf8", "internal"),
                c("digit", "Int64", "public"),
                c("image", "Binary", "public"),
                c("created_at", "Datetime(us)", "public"),
            ),
            allowed_purposes=ALL_PURPOSES,
        ),
        spec(
            "engagements",
            (
                "Training engagement log (save/click/closeup) over 90 days, "
                "sorted by ts; gold edges are already removed."
            ),
            (
                c("engagement_id", "Int64", "internal", "engagement"),
                c("user_id", "Int64", "pii", "user"),
                c("pin_id", "Int64", "public", "pin"),
                c("board_id", "Int64", "internal", "board"),
                c("action", "Utf8", "public"),
                c("ts", "Datetime(us)", "public"),
                c("region", "Utf8", "internal"),
                c("surface", "Utf8", "public"),
                c("dwell_ms", "Int64", "internal"),
            ),
            identifier_columns=("user_id",),
            allowed_purposes=PERSON_PURPOSES,
        ),
        spec(
            "pin_pairs",
            (
                "Co-engaged pin pairs from short random walks "
                "(pin->board->pin) over the training log's pin-board graph; one row per "
                "unordered pair with pin_a < pin_b, weight = mean of the two directed visit "
                "frequencies."
            ),
            (
                c("pin_a", "Int64", "public", "pin"),
                c("pin_b", "Int64", "public", "pin"),
                c("weight", "Float64", "public"),
            ),
            allowed_purposes=ALL_PURPOSES,
            # random walks over the graph of users' engagements: as strict as engagements
            derived_from=("engagements",),
        ),
        spec(
            "gold",
            (
                "Evaluation set: heldout_edge (user-pin edges removed from "
                "training), next_pin (a user's last engagement; query = previous pin) and "
                "cold_start (pins with no training engagement; target = a warm pin of the "
                "same board or taste). No (query, target) pair is in pin_pairs."
            ),
            (
                c("slice", "Utf8", "public"),
                c("user_id", "Int64", "pii", "user"),
                c("query_pin_id", "Int64", "public", "pin"),
                c("target_pin_id", "Int64", "public", "pin"),
                c("ts", "Datetime(us)", "public"),
            ),
            identifier_columns=("user_id",),
            allowed_purposes=("evaluation",),
            # held-out engagements: the same users' events
            derived_from=("engagements",),
        ),
        spec(
            "latent_users",
            (
                "The generator's latent model, per user: n_tastes (1-3) and the "
                "taste ids of the slots; an engagement picks one of the first n_tastes slots "
                "uniformly. Evaluation only (the oracle scorer): never for training."
            ),
            (
                c("user_id", "Int64", "pii", "user"),
                c("n_tastes", "Int64", "internal"),
                c("taste_1", "Int64", "internal"),
                c("taste_2", "Int64", "internal"),
                c("taste_3", "Int64", "internal"),
            ),
            identifier_columns=("user_id",),
            allowed_purposes=("evaluation",),
        ),
        spec(
            "latent_pins",
            (
                "The generator's latent model, per pin: its taste, its popularity "
                "weight (0 for cold-start pins) and the event noise rate. An engagement of taste "
                "t picks a pin of taste t by popularity, or with probability event_noise any "
                "pin by popularity. Evaluation only (the oracle scorer): never for training."
            ),
            (
                c("pin_id", "Int64", "public", "pin"),
                c("taste", "Int64", "internal"),
                c("popularity", "Int64", "internal"),
                c("event_noise", "Float64", "internal"),
            ),
            allowed_purposes=("evaluation",),
        ),
    ]


def described_specs() -> list[DatasetSpec]:
    """The datasets `generate` writes, described without generating anything (paths are
    placeholders, row counts 0): what policy lint checks rule files against."""
    names = ("users", "pins", "engagements", "pin_pairs", "gold", "latent_users", "latent_pins")
    return _specs(Path("."), dict.fromkeys(names, 0))


# --------------------------------------------------------------------------- entry point


def generate(
    out_dir: Path,
    scale: str = "small",
    seed: int = 0,
    progress: Progress | None = None,
) -> list[DatasetSpec]:
    """Write users, pins, engagements, pin_pairs, gold, latent_users and latent_pins as
    Parquet into out_dir.

    Files are overwritten. Ids in the files are 1-based. Returns the dataset specs.
    """
    if scale not in SCALES:
        raise ValueError(f"unknown scale {scale!r}; valid scales: {', '.join(SCALES)}")
    cfg = SCALES[scale]
    say: Progress = progress or (lambda _msg: None)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows: dict[str, int] = {}

    pixels, labels = load_digit_images()
    tastes = _Tastes(_rng(seed, _C_TASTES))
    users = _Users(_rng(seed, _C_USERS), cfg.n_users, tastes)
    boards = _Boards(_rng(seed, _C_BOARDS), cfg.n_boards, users)
    pins = _Pins(_rng(seed, _C_PINS), cfg, tastes, boards, labels)

    signup_us = -users.signup_days_before * _US_PER_DAY
    rows["users"] = _emit(
        out,
        "users",
        say,
        [
            pl.Series("user_id", np.arange(1, users.n + 1, dtype=np.int64)),
            _strings(REGIONS, users.region).alias("region"),
            _datetime(signup_us).alias("signup_day"),
        ],
    )

    merchant_names = tuple(f"merchant_{m:05d}" for m in range(pins.n_merchants))
    rows["pins"] = _emit(
        out,
        "pins",
        say,
        [
            pl.Series("pin_id", np.arange(1, pins.n + 1, dtype=np.int64)),
            pl.Series("board_id", pins.board.astype(np.int64) + 1),
            _strings(CATEGORIES, pins.category).alias("category"),
            _strings(merchant_names, pins.merchant).alias("merchant"),
            pl.Series("digit", pins.digit.astype(np.int64)),
            _binary_images(pixels[pins.image_index]).alias("image"),
            _datetime(pins.created_us).alias("created_at"),
        ],
        f" ({int(pins.cold.sum()):,} cold-start)",
    )

    events = _draw_events(_rng(seed, _C_EVENTS), cfg.generated_events, users, boards, pins)
    say(f"events drawn: {len(events):,}")
    train, gold_events = _hold_out(_rng(seed, _C_HOLDOUT), cfg, events, users.n, pins.n)
    del events

    n = len(train)
    rows["engagements"] = _emit(
        out,
        "engagements",
        say,
        [
            pl.Series("engagement_id", np.arange(1, n + 1, dtype=np.int64)),
            pl.Series("user_id", train["user"].astype(np.int64) + 1),
            pl.Series("pin_id", train["pin"].astype(np.int64) + 1),
            pl.Series("board_id", train["board"].astype(np.int64) + 1),
            _strings(ACTIONS, train["action"]).alias("action"),
            _datetime(train["ts"]).alias("ts"),
            _strings(REGIONS, users.region[train["user"]]).alias("region"),
            _strings(SURFACES, train["surface"]).alias("surface"),
            pl.Series("dwell_ms", train["dwell"]),
        ],
    )

    pa_idx, pb_idx, weight = _pin_pairs(_rng(seed, _C_WALKS), cfg, train, pins.n, boards.n)
    rows["pin_pairs"] = _emit(
        out,
        "pin_pairs",
        say,
        [
            pl.Series("pin_a", pa_idx + 1),
            pl.Series("pin_b", pb_idx + 1),
            pl.Series("weight", weight),
        ],
    )

    warm = np.zeros(pins.n, dtype=bool)
    warm[train["pin"]] = True
    gold = pl.concat(
        [
            _attach_queries(gold_events, train),
            _cold_start(_rng(seed, _C_COLD), pins, boards, warm),
        ],
        how="vertical_relaxed",
    )
    # Drop any (query, target) pair that the walks happened to connect.
    q = gold["query"].to_numpy().astype(np.int64)
    t = gold["target"].to_numpy().astype(np.int64)
    gkey = np.minimum(q, t) * pins.n + np.maximum(q, t)
    pkey = pa_idx * pins.n + pb_idx  # sorted, unique
    in_pairs = np.zeros(gkey.shape[0], dtype=bool)
    if pkey.shape[0]:
        hit = np.minimum(np.searchsorted(pkey, gkey), pkey.shape[0] - 1)
        in_pairs = pkey[hit] == gkey
    gold_df = (
        gold.filter(pl.Series(~in_pairs & (q != t)))
        .select(
            "slice_code",
            (pl.col("user").cast(pl.Int64) + 1).alias("user_id"),
            (pl.col("query").cast(pl.Int64) + 1).alias("query_pin_id"),
            (pl.col("target").cast(pl.Int64) + 1).alias("target_pin_id"),
            pl.col("ts").cast(pl.Int64).alias("ts"),
        )
        .sort("slice_code", "ts", "user_id", "query_pin_id", "target_pin_id")
    )
    gold_df = gold_df.select(
        _strings(GOLD_SLICES, gold_df["slice_code"].to_numpy()).alias("slice"),
        "user_id",
        "query_pin_id",
        "target_pin_id",
        _datetime(gold_df["ts"].to_numpy()).alias("ts"),
    )
    counts = gold_df["slice"].value_counts(sort=True)
    detail = ", ".join(f"{s} {c:,}" for s, c in counts.iter_rows())
    dropped = f" ({detail}; {int(in_pairs.sum()):,} dropped as in pin_pairs)"
    rows["gold"] = _emit(out, "gold", say, gold_df, dropped)

    rows |= _write_latent(out, users, pins, say)
    return _specs(out, rows)


def _write_latent(out: Path, users: _Users, pins: _Pins, say: Progress) -> dict[str, int]:
    """The latent model the events were drawn from (ids 1-based, like every other file)."""
    only = " (evaluation only)"
    latent_users = [
        pl.Series("user_id", np.arange(1, users.n + 1, dtype=np.int64)),
        pl.Series("n_tastes", users.k.astype(np.int64)),
        *(pl.Series(f"taste_{j + 1}", users.tastes[:, j].astype(np.int64)) for j in range(3)),
    ]
    latent_pins = [
        pl.Series("pin_id", np.arange(1, pins.n + 1, dtype=np.int64)),
        pl.Series("taste", pins.taste.astype(np.int64)),
        pl.Series("popularity", pins.popularity.astype(np.int64)),
        pl.Series("event_noise", np.full(pins.n, EVENT_NOISE)),
    ]
    return {
        "latent_users": _emit(out, "latent_users", say, latent_users, only),
        "latent_pins": _emit(out, "latent_pins", say, latent_pins, only),
    }


def _emit(
    out: Path, name: str, say: Progress, columns: list[pl.Series] | pl.DataFrame, note: str = ""
) -> int:
    """Write `name`'s file into `out` and say so; its row count."""
    df = columns if isinstance(columns, pl.DataFrame) else pl.DataFrame(columns)
    _write(df, out / f"{name}.parquet")
    say(f"{name}: {df.height:,} rows{note}")
    return df.height
