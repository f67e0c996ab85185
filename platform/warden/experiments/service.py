"""Experiments: start (arms, split, guardrails, KPI and MDE registered before any traffic),
serve through one (stable split by a hash of the user, an optional shadow that answers
nobody), stop, decide by the pre-registered rule, promote or refuse, roll back.

Every state change is audited with the caller (`audit.outcomes`), in the route's transaction;
refusals are audited on their own (`refusals_audited`). Services never commit.
"""

from __future__ import annotations

import hashlib
import math
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.orm import Session

from warden.audit.outcomes import by
from warden.audit.service import append
from warden.core.platform import Platform
from warden.db.base import new_id
from warden.errors import Conflict, NotFound
from warden.experiments import repository as repo
from warden.experiments.models import Experiment, ServingDefault
from warden.experiments.schemas import ExperimentCreate
from warden.identity.service import Caller, get_tenant
from warden.policy.authz import require
from warden.registry import service as registry
from warden.registry import serving
from warden.registry.models import Model

RIGHT = ("sandbox:ml", "manage")  # ML work: who may run experiments and set the default
Z95 = 1.959964
KEEP_LATENCIES = 2000


def require_runner(platform: Platform, caller: Caller) -> None:
    require(platform, caller, *RIGHT, f"{caller.name} may not run experiments")


def missing(name: str) -> NotFound:
    """The one answer for an experiment that does not exist and one the caller may not see."""
    return NotFound(f"no experiment {name[:64]!r}")


def get(db: Session, caller: Caller, name: str, *, lock: bool = False) -> Experiment:
    row = repo.by_name(db, caller.tenant, name[:64], lock=lock)
    if row is None:
        raise missing(name)
    return row


def get_visible(
    platform: Platform, db: Session, caller: Caller, name: str, *, lock: bool = False
) -> Experiment:
    """The experiment, if the caller may use every model in it (its arms' refs, plan and
    numbers tell what those models learned); otherwise as if it did not exist."""
    row = get(db, caller, name, lock=lock)
    for model_id in (row.control_id, row.challenger_id, row.shadow_id):
        model = registry.get_model(db, model_id, row.tenant_id) if model_id else None
        if model_id and model is None:
            raise missing(name)
        if model is not None:
            serving.authorize(platform, db, caller, model, hidden=missing(name))
    return row


def start(platform: Platform, db: Session, caller: Caller, body: ExperimentCreate) -> Experiment:
    require_runner(platform, caller)
    if repo.by_name(db, caller.tenant, body.name) is not None:
        raise Conflict(f"experiment {body.name!r} exists")
    control = _usable(platform, db, caller, body.control)
    challenger = _usable(platform, db, caller, body.challenger)
    shadow = _usable(platform, db, caller, body.shadow) if body.shadow else None
    if control.id == challenger.id:
        raise Conflict("the control and the challenger are the same model")
    for m in (control, challenger, *([shadow] if shadow else [])):
        registry.pick_artifact(m, None, "stack")  # a servable weights file, or 422 now
    plan = {
        "kpi": body.kpi,
        "mde": body.mde,
        "guardrails": body.guardrails.model_dump(),
        "alpha": 0.05,
        "rule": "promote iff the challenger's KPI lift over the control has a 95% interval "
        "above zero AND the challenger holds every guardrail (P95 latency, error rate, cost "
        "per 1k requests); otherwise refuse and name each failed criterion",
    }
    row = Experiment(
        tenant_id=get_tenant(db, caller.tenant).id,
        tenant=caller.tenant,
        name=body.name,
        owner=caller.name,
        state="running",
        control_id=control.id,
        challenger_id=challenger.id,
        shadow_id=shadow.id if shadow else None,
        split=body.split,
        plan=plan,
        results={"arms": {}, "shadow": []},
        decision={},
    )
    db.add(row)
    db.flush()
    refs = {"control": control.ref, "challenger": challenger.ref}
    refs |= {"shadow": shadow.ref} if shadow else {}
    append(
        db,
        by(
            caller,
            "experiment.start",
            "allow",
            details={"experiment": row.name, **refs, "split": row.split, "plan": plan},
        ),
    )
    return row


def _usable(platform: Platform, db: Session, caller: Caller, ref: str) -> Model:
    """The model `ref` names, if the caller may use it (`serving.authorize`); one at a time:
    a hidden model before a missing one must answer as a missing one."""
    model = registry.resolve(db, caller.tenant, ref)
    serving.authorize(platform, db, caller, model, ref)
    return model


def check_running(experiment: Experiment) -> None:
    if experiment.state != "running":
        raise Conflict(f"experiment {experiment.name!r} is {experiment.state}, not serving")


def arm_of(experiment: Experiment, user: str) -> str:
    """control or challenger: a stable hash of (experiment, user), never random per request."""
    digest = hashlib.sha256(f"{experiment.id}\0{user}".encode()).digest()
    share = int.from_bytes(digest[:8], "big") / 2**64
    return "challenger" if share < experiment.split else "control"


def model_of(db: Session, experiment: Experiment, arm: str) -> Model:
    model_id = {
        "control": experiment.control_id,
        "challenger": experiment.challenger_id,
        "shadow": experiment.shadow_id,
    }[arm]
    model = registry.get_model(db, model_id, experiment.tenant_id)
    if model is None:
        raise NotFound(f"the {arm} model of {experiment.name!r} is gone")
    return model


def serve(
    platform: Platform,
    db: Session,
    caller: Caller,
    experiment: Experiment,
    user: str,
    history: list[int],
    k: int,
) -> tuple[str, serving.Answer, list[int] | None]:
    """The arm's answer (shown) and the shadow's (never shown; None without a shadow)."""
    check_running(experiment)
    arm = arm_of(experiment, user)
    info: dict[str, Any] = {"experiment": experiment.name, "arm": arm}
    shadow_pins: list[int] | None = None
    if experiment.shadow_id:
        shadow = model_of(db, experiment, "shadow")
        try:
            shadow_pins = serving.recommend(
                platform,
                db,
                caller,
                shadow,
                user,
                history,
                k,
                details={"arm": "shadow"},
                audit=False,
            ).pins
        except Exception:  # noqa: BLE001 - a failing shadow never changes the answer
            shadow_pins = []
        info["shadow"] = {"model": shadow.ref, "pins": shadow_pins}
    answer = serving.recommend(
        platform,
        db,
        caller,
        model_of(db, experiment, arm),
        user,
        history,
        k,
        details=info,
        hidden_as=missing(experiment.name),  # its arms are what the caller may not learn
    )
    return arm, answer, shadow_pins


def stop(platform: Platform, db: Session, caller: Caller, name: str) -> Experiment:
    require_runner(platform, caller)
    row = get_visible(platform, db, caller, name, lock=True)
    if row.state != "running":
        raise Conflict(f"experiment {row.name!r} is {row.state}, not running")
    row.state = "stopped"
    row.ended_at = datetime.now(UTC)
    append(db, by(caller, "experiment.stop", "allow", details=ended(row)))
    return row


def ended(row: Experiment, default: ServingDefault | None = None) -> dict[str, Any]:
    """What an experiment's end holds to the log (identity/revocations.py): its id and new
    state, and the serving default row it set, if any."""
    state, results = repo.held_by(row)
    held = {"experiment": row.name, "experiment_id": row.id, "state": state, "results": results}
    if default is not None:
        held |= {"tenant_id": default.tenant_id, "serving_default": default.id}
    return held


# --------------------------------------------------------------------------- the decision


def arm_summary(node: dict[str, Any]) -> dict[str, Any]:
    n = int(node.get("n", 0))
    out: dict[str, Any] = {"requests": n, "errors": int(node.get("errors", 0))}
    for kpi in ("clicks", "saves"):
        s, sq = float(node.get(kpi, 0.0)), float(node.get(f"{kpi}_sq", 0.0))
        mean = s / n if n else math.nan
        var = (sq - n * mean * mean) / (n - 1) if n > 1 else math.nan
        out[kpi] = {
            "mean": mean,
            "var": max(var, 0.0) if var == var else var,
            "ci95": Z95 * math.sqrt(max(var, 0.0) / n) if n > 1 else math.nan,
        }
    lat = sorted(float(x) for x in node.get("latencies_ms", []))
    total = n + out["errors"]
    out["p50_ms"] = _quantile(lat, 0.50)
    out["p95_ms"] = _quantile(lat, 0.95)
    out["error_rate"] = out["errors"] / total if total else 0.0
    cpu = float(node.get("cpu_s", 0.0))
    out["cpu_s_per_request"] = cpu / n if n else math.nan
    out["cost_per_1k_usd"] = cpu / n * 1000 / 3600 * serving.PRICE_PER_CPU_HOUR if n else math.nan
    return out


def _quantile(values: list[float], q: float) -> float:
    if not values:
        return math.nan
    pos = q * (len(values) - 1)
    lo, hi = math.floor(pos), math.ceil(pos)
    return values[lo] + (values[hi] - values[lo]) * (pos - lo)


def summary(row: Experiment) -> dict[str, Any]:
    arms = {a: arm_summary(v) for a, v in (row.results or {}).get("arms", {}).items()}
    kpi = row.plan["kpi"]
    out: dict[str, Any] = {"arms": arms}
    c, t = arms.get("control"), arms.get("challenger")
    if c and t and c["requests"] > 1 and t["requests"] > 1:
        lift = t[kpi]["mean"] - c[kpi]["mean"]
        half = Z95 * math.sqrt(t[kpi]["var"] / t["requests"] + c[kpi]["var"] / c["requests"])
        out["lift"] = {
            "kpi": kpi,
            "value": lift,
            "ci95": [lift - half, lift + half],
            "relative": lift / c[kpi]["mean"] if c[kpi]["mean"] else math.nan,
        }
    shadow = (row.results or {}).get("shadow", [])
    if shadow:
        out["shadow_agreement"] = shadow
    return out


def evaluate_rule(row: Experiment) -> tuple[bool, list[str], dict[str, Any]]:
    """(promote?, failed criteria, the numbers each criterion was judged on)."""
    s = summary(row)
    failed: list[str] = []
    lift = s.get("lift")
    if lift is None:
        failed.append("kpi: no traffic on both arms")
    elif not lift["ci95"][0] > 0:
        lo, hi = lift["ci95"]
        failed.append(
            f"kpi: the {lift['kpi']} lift's 95% interval [{lo:.4f}, {hi:.4f}] "
            "does not exclude zero on the positive side"
        )
    t = s["arms"].get("challenger", {})
    for key, label in (
        ("p95_ms", "P95 latency (ms)"),
        ("error_rate", "error rate"),
        ("cost_per_1k_usd", "cost per 1k requests (USD)"),
    ):
        limit = float(row.plan["guardrails"][key])
        value = t.get(key, math.nan)
        if not (value == value and value <= limit):
            failed.append(f"guardrail {label}: challenger {value:.6g} over the limit {limit:.6g}")
    return not failed, failed, s


def decide(platform: Platform, db: Session, caller: Caller, name: str) -> Experiment:
    require_runner(platform, caller)
    row = get_visible(platform, db, caller, name, lock=True)
    if row.state not in ("running", "stopped"):
        raise Conflict(f"experiment {row.name!r} was already decided ({row.state})")
    promote, failed, numbers = evaluate_rule(row)
    row.decision = {
        "promote": promote,
        "failed": failed,
        "rule": row.plan["rule"],
        "numbers": numbers,
        "by": caller.name,
        "at": datetime.now(UTC).isoformat(),
    }
    row.ended_at = row.ended_at or datetime.now(UTC)
    default = None
    if promote:
        row.state = "promoted"
        previous = repo.current_default(db, row.tenant_id)
        challenger = model_of(db, row, "challenger")
        db.add(
            default := ServingDefault(
                id=new_id(),
                tenant_id=row.tenant_id,
                model_id=challenger.id,
                previous_id=previous.model_id if previous else row.control_id,
                experiment_id=row.id,
                set_by=caller.name,
                reason=f"promoted by experiment {row.name}",
            )
        )
    else:
        row.state = "refused"
    append(
        db,
        by(
            caller,
            "experiment.decide",
            "allow" if promote else "deny",
            reason=None if promote else "; ".join(failed)[:2000],
            details={**ended(row, default), "promote": promote, "failed": failed},
        ),
    )
    return row


def rollback(platform: Platform, db: Session, caller: Caller, name: str) -> Experiment:
    """Restore the default the promotion replaced (the control if there was none)."""
    require_runner(platform, caller)
    row = get_visible(platform, db, caller, name, lock=True)
    current = repo.current_default(db, row.tenant_id)
    if row.state != "promoted" or current is None or current.experiment_id != row.id:
        raise Conflict(f"experiment {row.name!r} set no serving default that is still current")
    restored = current.previous_id or row.control_id
    db.add(
        default := ServingDefault(
            id=new_id(),
            tenant_id=row.tenant_id,
            model_id=restored,
            previous_id=current.model_id,
            experiment_id=None,
            set_by=caller.name,
            reason=f"rollback of experiment {row.name}",
        )
    )
    row.state = "rolled_back"
    model = registry.get_model(db, restored, row.tenant_id)
    append(
        db,
        by(
            caller,
            "experiment.rollback",
            "allow",
            details={**ended(row, default), "restored": model.ref if model else restored},
        ),
    )
    return row


def default_model(db: Session, caller: Caller) -> Model:
    current = repo.current_default(db, get_tenant(db, caller.tenant).id)
    model = registry.get_model(db, current.model_id, current.tenant_id) if current else None
    if model is None:
        raise no_default()
    return model


def no_default() -> NotFound:
    """The one answer for no serving default and for one the caller may not use."""
    return NotFound("no serving default in this tenant: name a model or an experiment")


def describe(db: Session, row: Experiment) -> dict[str, Any]:
    def ref(model_id: str | None) -> str | None:
        model = registry.get_model(db, model_id, row.tenant_id)
        return model.ref if model else None

    return {
        "name": row.name,
        "state": row.state,
        "owner": row.owner,
        "control": ref(row.control_id),
        "challenger": ref(row.challenger_id),
        "shadow": ref(row.shadow_id),
        "split": row.split,
        "plan": row.plan,
        "summary": summary(row),
        "decision": row.decision,
        "created_at": row.created_at,
        "ended_at": row.ended_at,
    }


def add_outcome(
    results: dict[str, Any],
    arm: str,
    clicks: int,
    saves: int,
    answer: serving.Answer | None,
    overlap: float | None,
) -> None:
    """Count one request's outcome in `results` (a plain dict the caller stores once: no
    write transaction is held open while requests are audited)."""
    node = results.setdefault("arms", {}).setdefault(arm, {})
    if answer is None:
        node["errors"] = int(node.get("errors", 0)) + 1
    else:
        node["n"] = int(node.get("n", 0)) + 1
        for kpi, v in (("clicks", clicks), ("saves", saves)):
            node[kpi] = float(node.get(kpi, 0.0)) + v
            node[f"{kpi}_sq"] = float(node.get(f"{kpi}_sq", 0.0)) + v * v
        lat = [*node.get("latencies_ms", []), round(answer.wall_s * 1e3, 4)]
        node["latencies_ms"] = lat[-KEEP_LATENCIES:]
        node["cpu_s"] = float(node.get("cpu_s", 0.0)) + answer.cpu_s
    if overlap is not None:
        results["shadow"] = [*results.get("shadow", []), round(overlap, 4)][-KEEP_LATENCIES:]
