"""/v1/recommend (online serving) and /v1/experiments (start, status, stop, simulate,
decide, rollback, report). People only; the decisions live in registry.serving and
experiments.service. An experiment's status and report carry numbers computed from governed
data (the arms' KPIs, guardrails, the shadow's overlap), so showing them is audited
(`experiment.status`, `experiment.report`) before the answer, as a model's report is."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query
from fastapi.responses import PlainTextResponse, Response

from warden.api.deps import CurrentCaller, DbSession, State
from warden.audit.outcomes import by, refusals_audited
from warden.audit.service import record
from warden.core.platform import Platform
from warden.errors import Forbidden
from warden.experiments import report, service, simulate
from warden.experiments.schemas import NAME, ExperimentCreate, RecommendIn, RecommendOut, SimulateIn
from warden.identity.service import Caller
from warden.registry import service as registry
from warden.registry import serving

router = APIRouter(tags=["experiments"])
Name = Annotated[str, Path(pattern=NAME)]


def _people_only(caller: Caller) -> None:
    if caller.kind == "job":
        raise Forbidden("jobs cannot serve models or run experiments")


@router.post("/v1/recommend", response_model=RecommendOut, summary="Top-k pins for a user")
def recommend(
    body: RecommendIn, caller: CurrentCaller, db: DbSession, state: State
) -> RecommendOut:
    # refusals before serving are audited here; serving audits its own (allowed or refused)
    with refusals_audited(state.sessions, caller, serving.ACTION):
        _people_only(caller)
        row = None
        if body.experiment:
            # whether it exists, runs, and which models it serves: only for who may see it
            row = service.get_visible(state, db, caller, body.experiment)
            service.check_running(row)
            model = None
        elif body.model:
            model = registry.resolve(db, caller.tenant, body.model)
            hidden_as = None  # the model's own answer, as the caller named it
        else:
            model = service.default_model(db, caller)
            hidden_as = service.no_default()
    if row is not None:
        arm, answer, _ = service.serve(state, db, caller, row, body.user, body.history, body.k)
        ref = service.model_of(db, row, arm).ref
        return RecommendOut(
            pins=answer.pins, model=ref, experiment=row.name, arm=arm, audit_event=answer.event_id
        )
    assert model is not None
    answer = serving.recommend(
        state, db, caller, model, body.user, body.history, body.k,
        ref=body.model, hidden_as=hidden_as,
    )  # fmt: skip
    return RecommendOut(pins=answer.pins, model=model.ref, audit_event=answer.event_id)


@router.post("/v1/experiments", status_code=201, summary="Start an experiment (plan first)")
def start(body: ExperimentCreate, caller: CurrentCaller, db: DbSession, state: State) -> Any:
    with refusals_audited(state.sessions, caller, "experiment.start"):
        _people_only(caller)
        row = service.start(state, db, caller, body)
    return simulate._finite(service.describe(db, row))


def _shown(
    state: Platform, db: Any, caller: Caller, name: str, action: str, **details: Any
) -> dict[str, Any]:
    """The experiment `name` described, once `caller` being shown it is audited: durably,
    before the answer (AuditUnavailable, 503, if it cannot be). Refusals are audited too."""
    with refusals_audited(state.sessions, caller, action, details={"experiment": name}):
        _people_only(caller)
        described = service.describe(db, service.get_visible(state, db, caller, name))
    arms = {arm: described[arm] for arm in ("control", "challenger", "shadow")}
    shown = {"experiment": name, "state": described["state"], **arms, **details}
    record(state.sessions, by(caller, action, "allow", details=shown))
    return described


@router.get("/v1/experiments/{name}", summary="An experiment's state and numbers")
def status(name: Name, caller: CurrentCaller, db: DbSession, state: State) -> Any:
    return simulate._finite(_shown(state, db, caller, name, "experiment.status"))


def _act(action: str, name: str, caller: Caller, db: Any, state: Any) -> Any:
    fn = {"stop": service.stop, "decide": service.decide, "rollback": service.rollback}[action]
    with refusals_audited(state.sessions, caller, f"experiment.{action}"):
        _people_only(caller)
        row = fn(state, db, caller, name)
    return simulate._finite(service.describe(db, row))


@router.post("/v1/experiments/{name}/stop", summary="Stop serving through it")
def stop(name: Name, caller: CurrentCaller, db: DbSession, state: State) -> Any:
    return _act("stop", name, caller, db, state)


@router.post("/v1/experiments/{name}/decide", summary="Apply the pre-registered rule")
def decide(name: Name, caller: CurrentCaller, db: DbSession, state: State) -> Any:
    return _act("decide", name, caller, db, state)


@router.post("/v1/experiments/{name}/rollback", summary="Restore the previous default")
def rollback(name: Name, caller: CurrentCaller, db: DbSession, state: State) -> Any:
    return _act("rollback", name, caller, db, state)


@router.post("/v1/experiments/{name}/simulate", summary="Simulated users through the arms")
def run_simulation(
    name: Name, body: SimulateIn, caller: CurrentCaller, db: DbSession, state: State
) -> Any:
    with refusals_audited(state.sessions, caller, "experiment.simulate"):
        _people_only(caller)
        service.require_runner(state, caller)
        row = service.get_visible(state, db, caller, name, lock=True)
        return simulate.run(state, db, caller, row, body.requests, body.seed, body.k)


@router.get("/v1/experiments/{name}/report", summary="The report: JSON, Markdown or PNG")
def get_report(
    name: Name,
    caller: CurrentCaller,
    db: DbSession,
    state: State,
    format: Annotated[str, Query(pattern="^(json|md|png)$")] = "json",  # noqa: A002
) -> Any:
    built = report.build(_shown(state, db, caller, name, "experiment.report", format=format))
    if format == "md":
        return PlainTextResponse(report.markdown(built), media_type="text/markdown")
    if format == "png":
        return Response(report.png(built), media_type="image/png")
    return simulate._finite(built)
