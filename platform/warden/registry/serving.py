"""Online serving: the top-k pins for a user from a registered stack, governed like a read.

* **Decided** by `policy.reads.authorize_model` (over the one read decision) on every dataset in
  the model's lineage (its own reads and its ancestors'): `inference` where the dataset allows
  that purpose (what serving reads: the pins it scores), and otherwise some purpose the dataset
  allows (the lineage must be readable by the caller; a dataset such as `engagements` never
  allows inference, and the model only carries what was learned from it). A refusal is
  audited (`audit.outcomes`).
* **Audited** per request: one `model.recommend` event (allowed, refused or failed), committed
  before the answer leaves, so every request is countable in the audit log.
* **Measured**: wall latency and CPU-seconds per request, kept per model in a rolling window
  (`Stats`: P50/P95, error rate, cost per 1k) and exported as OpenTelemetry metrics.
* **Loaded once per process**: models are cached by id and artifact digest (a model version).

The served model is `warden_ml.serving.Server` (the same code the eval measures), imported
lazily: torch loads on the first request, not with the API.
"""

from __future__ import annotations

import functools
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from opentelemetry import metrics
from opentelemetry.metrics import CallbackOptions, MeterProvider, Observation
from sqlalchemy.orm import Session

from warden.audit.outcomes import by, refusal
from warden.audit.service import record
from warden.catalog.service import load_view, pin_version
from warden.catalog.storage import data_file
from warden.catalog.view import DatasetView
from warden.core.platform import Platform
from warden.db.generation import CacheAt, read_stamp
from warden.db.sealed import RowTampered, check
from warden.errors import Forbidden, NotFound, Unprocessable, WardenError
from warden.identity.service import Caller
from warden.policy import reads
from warden.registry import service as registry
from warden.registry.models import Model
from warden.registry.service import lineage_datasets

ACTION = "model.recommend"
PRICE_PER_CPU_HOUR = 0.05  # USD, the eval's default price
WINDOW = 4096  # latencies kept per model for P50/P95


# --------------------------------------------------------------------------- telemetry


@dataclass
class ModelStats:
    latencies: deque[float] = field(default_factory=lambda: deque(maxlen=WINDOW))
    requests: int = 0
    errors: int = 0
    cpu_s: float = 0.0

    def summary(self) -> dict[str, float]:
        lat = np.asarray(self.latencies, dtype=np.float64)
        per = self.cpu_s / self.requests if self.requests else 0.0
        return {
            "requests": self.requests,
            "errors": self.errors,
            "error_rate": self.errors / self.requests if self.requests else 0.0,
            "p50_ms": float(np.percentile(lat, 50) * 1e3) if lat.size else 0.0,
            "p95_ms": float(np.percentile(lat, 95) * 1e3) if lat.size else 0.0,
            "cpu_s_per_request": per,
            "cost_per_1k_usd": per * 1000.0 / 3600.0 * PRICE_PER_CPU_HOUR,
        }


class Stats:
    """Per model ref: what the OTel instruments export, kept in-process for guardrails."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by: dict[str, ModelStats] = {}
        self.bind(metrics.get_meter_provider())

    def bind(self, provider: MeterProvider) -> None:
        """Create the instruments on `provider` (the global one unless a test gives its own)."""
        meter = provider.get_meter("warden.serving")
        self.duration = meter.create_histogram(
            "warden.serving.request.duration", unit="s", description="request wall time"
        )
        self.cpu = meter.create_counter(
            "warden.serving.request.cpu", unit="s", description="CPU-seconds serving requests"
        )
        self.count = meter.create_counter("warden.serving.requests", description="requests")
        for q in (50, 95):
            meter.create_observable_gauge(
                f"warden.serving.latency.p{q}",
                callbacks=[self._gauge(q)],
                unit="ms",
                description=f"P{q} request latency over the last {WINDOW} requests",
            )

    def _gauge(self, q: int) -> Any:
        def observe(_: CallbackOptions) -> list[Observation]:
            with self._lock:
                rows = [(ref, s.summary()) for ref, s in self._by.items()]
            return [Observation(v[f"p{q}_ms"], {"model": ref}) for ref, v in rows]

        return observe

    def add(self, ref: str, wall_s: float, cpu_s: float, ok: bool, arm: str | None) -> None:
        attrs = {"model": ref, "outcome": "ok" if ok else "error", "arm": arm or ""}
        self.duration.record(wall_s, attrs)
        self.cpu.add(max(cpu_s, 0.0), attrs)
        self.count.add(1, attrs)
        with self._lock:
            s = self._by.setdefault(ref, ModelStats())
            s.requests += 1
            s.errors += 0 if ok else 1
            s.cpu_s += max(cpu_s, 0.0)
            s.latencies.append(wall_s)

    def summary(self, ref: str) -> dict[str, float]:
        with self._lock:
            return self._by.get(ref, ModelStats()).summary()


STATS = Stats()


# --------------------------------------------------------------------------- loading


@dataclass
class Served:
    """A model ready to answer: the server, its pin ids and the datasets it answers for."""

    model_id: str
    ref: str
    server: Any  # warden_ml.serving.Server
    pin_ids: np.ndarray
    max_len: int
    lineage: tuple[str, ...]

    def rows(self, pin_ids: Sequence[int]) -> np.ndarray:
        ids = np.asarray(list(pin_ids), dtype=np.int64)
        pos = np.minimum(np.searchsorted(self.pin_ids, ids), self.pin_ids.shape[0] - 1)
        return pos[self.pin_ids[pos] == ids]


_cache: dict[tuple[str, str], Served] = {}
_cache_lock = threading.Lock()


def load(platform: Platform, db: Session, caller: Caller, model: Model) -> Served:
    """The model's server, from the cache or built once (per process, per model version)."""
    artifact = registry.pick_artifact(model, None, "stack")
    key = (model.id, str(artifact.get("sha256", "")))
    with _cache_lock:
        hit = _cache.get(key)
    if hit is not None:
        return hit
    path = registry.artifact_file(check(db, model), artifact, platform.settings.data_dir)
    lineage = lineage_datasets(db, model)
    pins_name = next((n for n in lineage if _has_images(db, platform, caller, n)), None)
    if pins_name is None:
        raise Unprocessable(f"{model.ref} read no pin catalog (a dataset with pin_id and image)")
    view = load_view(db, platform.settings.datasets_dir, caller.tenant, pins_name)
    if lineage[pins_name]:
        view = pin_version(db, platform.settings.datasets_dir, view, lineage[pins_name][-1])
    frame = data_file(platform.settings, view.location).scan().select("pin_id", "image")
    pins = frame.collect().sort("pin_id")
    from warden_ml.common import load_model
    from warden_ml.data import images_from_binary
    from warden_ml.models import stack_from_blob
    from warden_ml.serving import Server

    try:
        stack = stack_from_blob(load_model(path))
    except (ValueError, KeyError, RuntimeError) as exc:
        raise Unprocessable(f"{model.ref} is not a servable stack: {str(exc)[:200]}") from None
    ids = pins["pin_id"].to_numpy().astype(np.int64)
    server = Server(stack, images_from_binary(pins["image"]), 10, ids)
    served = Served(model.id, model.ref, server, ids, stack.seq.max_len, tuple(lineage))
    with _cache_lock:
        _cache[key] = served
    return served


def _has_images(db: Session, platform: Platform, caller: Caller, name: str) -> bool:
    try:
        view = load_view(db, platform.settings.datasets_dir, caller.tenant, name)
    except NotFound:
        return False
    return {"pin_id", "image"} <= set(view.column_names)


# --------------------------------------------------------------------------- deciding


def authorize(
    platform: Platform,
    db: Session,
    caller: Caller,
    model: Model,
    ref: str | None = None,
    *,
    hidden: NotFound | None = None,
) -> None:
    """May `caller` use `model` (named `ref` by them): `policy.reads.authorize_model` over the
    model's lineage and what its builders could read, on one policy snapshot. One statement
    reads the policy version and the change generation; the datasets' views come from the
    process's cache while nothing changed (db/generation.py). A lineage dataset that is not
    there was deleted past Warden (it deletes none): RowTampered, 503."""
    lineage, launch = lineage_datasets(db, model), registry.built_with(db, model)
    stamp = read_stamp(db.connection())
    with platform.policy.one_check(db, stored_version=stamp.policy_version):
        views = platform.views.at(stamp.generation)
        reads.authorize_model(
            platform,
            caller,
            ref or model.ref,
            launcher=model.launcher,
            lineage=(_view(platform, db, caller.tenant, views, name) for name in lineage),
            built_with=launch,
            hidden=hidden,
        )


def usable(platform: Platform, db: Session, caller: Caller, model: Model) -> bool:
    """Whether `authorize` lets `caller` use `model`; a tampered lineage still raises (503)."""
    try:
        authorize(platform, db, caller, model)
    except (NotFound, Forbidden):
        return False
    return True


def usable_models(
    platform: Platform, db: Session, caller: Caller, name: str | None, limit: int
) -> list[Model]:
    """The `limit` newest models of the caller's tenant that `caller` may use. The limit counts
    only those: a listing cut before the decision would say, by falling short, how many
    hidden models stand among the newest (red team 22b)."""
    found: list[Model] = []
    offset, size = 0, max(limit, 100)  # pages of 100 at least: a query per model is too many
    while len(found) < limit:
        page = registry.list_models(db, caller.tenant, name, size, offset)
        for model in page:
            if len(found) == limit:
                break
            if usable(platform, db, caller, model):
                found.append(model)
        if len(page) < size:
            break
        offset += size
    return found


def _view(
    platform: Platform,
    db: Session,
    tenant: str,
    views: CacheAt[tuple[str, str], DatasetView],
    name: str,
) -> DatasetView:
    load = functools.partial(load_view, db, platform.settings.datasets_dir, tenant, name)
    try:
        return views.get((tenant, name), load)
    except NotFound:
        raise RowTampered("a dataset in a model's lineage is not in the database") from None


# --------------------------------------------------------------------------- serving


@dataclass
class Answer:
    pins: list[int]
    wall_s: float
    cpu_s: float
    event_id: str | None = None


def top_k(served: Served, history: Sequence[int], k: int) -> list[int]:
    """The top-k pin ids for a history of pin ids (oldest first; the last is the query)."""
    import torch

    from warden_ml.data import pad_window

    rows = served.rows(history)
    window = torch.from_numpy(pad_window(rows[-served.max_len :], served.max_len))[None]
    k = max(0, min(int(k), len(served.pin_ids) - len(set(rows.tolist()))))
    with torch.inference_mode():
        scores = served.server.request_scores(window, None)[0]  # the served request graph
        scores[torch.from_numpy(rows)] = -torch.inf  # never a pin the user engaged
        top = torch.topk(scores, k).indices
    return [int(served.pin_ids[i]) for i in top.tolist()]


def recommend(
    platform: Platform,
    db: Session,
    caller: Caller,
    model: Model,
    user: str,
    history: Sequence[int],
    k: int,
    *,
    details: dict[str, Any] | None = None,
    audit: bool = True,
    ref: str | None = None,
    hidden_as: NotFound | None = None,
) -> Answer:
    """Decide, answer, measure and audit one request (`audit=False`: a shadow's answer,
    recorded in the shown request's own event). A model the caller may not use answers as
    `authorize` says (`ref`: as the caller named it), or `hidden_as` where the caller asked
    for something else (an experiment, the serving default) answered as missing."""
    wall, cpu = time.perf_counter(), time.process_time()
    info = {"model": model.ref, "model_id": model.id, "user": user[:64], "k": k, **(details or {})}
    arm = (details or {}).get("arm")
    try:
        authorize(platform, db, caller, model, ref, hidden=hidden_as)
        served = load(platform, db, caller, model)
        pins = top_k(served, history, k)
    except WardenError as exc:
        STATS.add(model.ref, time.perf_counter() - wall, time.process_time() - cpu, False, arm)
        if audit:
            why = exc.__cause__ if isinstance(exc.__cause__, WardenError) else exc
            record(platform.sessions, refusal(caller, ACTION, why, details=info))
            exc.audited = True
        raise
    answer = Answer(pins, time.perf_counter() - wall, time.process_time() - cpu)
    STATS.add(model.ref, answer.wall_s, answer.cpu_s, True, arm)
    if audit:
        event = record(
            platform.sessions,
            by(caller, ACTION, "allow", rows=len(pins), details=info | {"pins": pins}),
        )
        answer.event_id = event.id
    return answer
