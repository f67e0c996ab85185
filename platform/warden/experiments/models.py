"""An experiment (arms, split, guardrails, KPI, results, decision) and the serving default."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, DateTime, Float, ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from warden.db.base import Base, TimestampMixin, new_id
from warden.db.sealed import Sealed

STATES = ("running", "stopped", "promoted", "refused", "rolled_back")


class Experiment(Sealed, TimestampMixin, Base):
    __tablename__ = "experiment"
    # its arms, split, pre-registered plan and what it measured (db/sealed.py): `decide`
    # promotes on these, so results or a plan written in SQL decide nothing; and where it
    # stands (a stopped or decided one set back to running in SQL serves nothing, and one
    # written back whole is refused by the log: experiments/repository.py)
    __sealed__ = ("id", "tenant_id", "tenant", "name", "owner", "control_id", "challenger_id",
                  "shadow_id", "split", "plan", "results", "state", "decision",
                  "ended_at")  # fmt: skip
    __table_args__ = (UniqueConstraint("tenant_id", "name", name="uq_experiment_tenant_name"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenant.id"), index=True)
    tenant: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(64))
    owner: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(16))
    control_id: Mapped[str] = mapped_column(ForeignKey("model.id"))
    challenger_id: Mapped[str] = mapped_column(ForeignKey("model.id"))
    shadow_id: Mapped[str | None] = mapped_column(ForeignKey("model.id"), nullable=True)
    split: Mapped[float] = mapped_column(Float)  # share of users on the challenger
    # the pre-registered rule: {"kpi", "mde", "guardrails": {"p95_ms", "error_rate",
    # "cost_per_1k_usd"}, "alpha"}
    plan: Mapped[dict[str, Any]] = mapped_column(JSON)
    # {"arms": {arm: {"n", "clicks", "clicks_sq", "saves", "saves_sq", "errors",
    # "latencies_ms": [...], "cpu_s"}}, "shadow": [{"requests", "overlap"}...]}
    results: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    decision: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    ended_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class ServingDefault(Sealed, TimestampMixin, Base):
    """Each change of a tenant's serving default is a row; the newest is the default."""

    __tablename__ = "serving_default"
    __sealed__ = ("id", "tenant_id", "model_id", "previous_id", "experiment_id", "set_by")

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenant.id"), index=True)
    model_id: Mapped[str] = mapped_column(ForeignKey("model.id"))
    previous_id: Mapped[str | None] = mapped_column(ForeignKey("model.id"), nullable=True)
    experiment_id: Mapped[str | None] = mapped_column(ForeignKey("experiment.id"), nullable=True)
    set_by: Mapped[str] = mapped_column(String(64))
    reason: Mapped[str] = mapped_column(String(200))
