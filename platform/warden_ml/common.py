"""Specs, seeding, progress lines, artifact files and the data reader interface."""

from __future__ import annotations

import json
import os
import random
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import polars as pl
import torch

from warden_ml import PROVENANCE


class Reader(Protocol):
    """What the workload needs from ``warden.sdk.Client``: a governed read into polars."""

    def read(
        self, dataset: str, *, purpose: str, columns: Sequence[str] | None = None
    ) -> pl.DataFrame: ...


@runtime_checkable
class ShardReader(Reader, Protocol):
    """A reader the ranks of a data-parallel run can use: it reads one rank's shard of a
    given version and says which version it read (``x-warden-dataset-version``)."""

    def read_with_info(
        self,
        dataset: str,
        *,
        purpose: str,
        columns: Sequence[str] | None = None,
        shard: tuple[int, int] | None = None,
        version: str | None = None,
    ) -> tuple[pl.DataFrame, dict[str, str]]: ...


@dataclass
class Spec:
    """A step's spec: ``{"seed", "datasets", "params", "model_in", "purpose"}``.

    ``datasets`` maps a logical role (``pins``, ``pin_pairs``, ``engagements``, ``gold``) to a
    catalog dataset name, or to ``{"name": ..., "purpose": ...}`` to override the purpose.
    """

    seed: int = 0
    datasets: dict[str, Any] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)
    model_in: Any = None
    purpose: str | None = None

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> Spec:
        unknown = set(raw) - {"seed", "datasets", "params", "model_in", "purpose"}
        if unknown:
            raise ValueError(f"unknown spec fields: {sorted(unknown)}")
        return cls(
            seed=int(raw.get("seed", 0)),
            datasets=dict(raw.get("datasets") or {}),
            params=dict(raw.get("params") or {}),
            model_in=raw.get("model_in"),
            purpose=raw.get("purpose"),
        )

    @classmethod
    def load(cls, path: str | Path) -> Spec:
        return cls.from_dict(json.loads(Path(path).read_text()))

    def p(self, name: str, default: Any) -> Any:
        return self.params.get(name, default)

    def dataset(self, role: str, default_purpose: str) -> tuple[str, str]:
        """(catalog name, purpose) for a logical role."""
        entry = self.datasets.get(role, role)
        if isinstance(entry, Mapping):
            return str(entry.get("name", role)), str(
                entry.get("purpose") or self.purpose or default_purpose
            )
        return str(entry), self.purpose or default_purpose


def seed_everything(seed: int, threads: int | None = None) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True)
    if threads:
        torch.set_num_threads(int(threads))


def say(msg: str) -> None:
    """One progress line on stdout (streamed to the user as the job's log)."""
    rank = int(os.environ.get("RANK", "0"))
    if rank == 0:
        print(msg, flush=True)


class Timer:
    def __init__(self) -> None:
        self.wall = time.perf_counter()
        self.cpu = time.process_time()

    def done(self) -> dict[str, float]:
        return {
            "wall_s": round(time.perf_counter() - self.wall, 3),
            "cpu_s": round(time.process_time() - self.cpu, 3),
        }


def write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True, default=_jsonable) + "\n")
    os.replace(tmp, path)


def _jsonable(x: Any) -> Any:
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, Path):
        return str(x)
    raise TypeError(f"not JSON serialisable: {type(x).__name__}")


def write_metrics(out: Path, step: str, metrics: dict[str, Any]) -> dict[str, Any]:
    full = {"step": step, "provenance": PROVENANCE, **metrics}
    write_json(out / "metrics.json", full)
    return full


def save_model(
    path: Path,
    kind: str,
    config: dict[str, Any],
    modules: dict[str, Any],
    training: dict[str, Any] | None = None,
) -> None:
    """One artifact: ``{"kind", "config", "training", "<module>": state_dict, ...}``
    (torch.save); ``training`` is the phases that made it (see ``warden_ml.budget``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    blob: dict[str, Any] = {"kind": kind, "config": config, "provenance": PROVENANCE}
    blob["training"] = training or {}
    blob.update({name: m.state_dict() for name, m in modules.items()})
    torch.save(blob, path)


def load_model(path: str | Path) -> dict[str, Any]:
    blob = torch.load(Path(path), map_location="cpu", weights_only=True)
    if not isinstance(blob, dict) or "kind" not in blob:
        raise ValueError(f"{path} is not a warden_ml artifact")
    return blob
