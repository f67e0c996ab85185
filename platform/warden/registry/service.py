"""Registering a finished job's result, resolving model references, and lineage.

Lineage is assembled from records, never from what the workload says about itself: the
datasets, versions, grants and policy versions come from the audit events of the job's own
reads (its actor is the sandbox's job name), the image digest from the sandbox launch.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from warden.audit.models import AuditEvent
from warden.catalog.service import file_digest
from warden.config import REPO_ROOT
from warden.db.sealed import RowTampered, check
from warden.errors import NotFound, Unavailable, Unprocessable
from warden.jobs.models import Job
from warden.policy.reads import missing_model, seen_by_all
from warden.registry import repository as repo
from warden.registry.models import Model
from warden.sandbox.models import Sandbox

# A reference: a model id, NAME (the latest version) or NAME@VERSION; ":FILE" picks an artifact.
REF_RE = re.compile(
    r"^(?P<model>[a-z0-9][a-z0-9_.-]{0,63}(?:@[0-9]{1,9})?)(?::(?P<file>[\w.-]+))?$"
)
CODE_DIRS = ("platform/warden_ml", "platform/warden/sdk")


def parse_ref(ref: str) -> tuple[str, str | None]:
    match = REF_RE.fullmatch(ref)
    if match is None:
        raise Unprocessable(f"{ref[:80]!r} is not a model reference (ID, NAME or NAME@VERSION)")
    return match.group("model"), match.group("file")


def resolve(db: Session, tenant: str, ref: str) -> Model:
    """The model an id, NAME or NAME@VERSION names in the tenant, or NotFound."""
    model_ref, _ = parse_ref(ref)
    row = db.get(Model, model_ref) if "@" not in model_ref else None
    if row is not None and row.tenant == tenant:
        return check(db, row)
    name, _, version = model_ref.partition("@")
    row = repo.by_name(db, tenant, name, int(version) if version else None)
    if row is None:
        raise missing(ref)
    return check(db, row)


# The one answer for a model that does not exist and for one the caller may not use.
missing = missing_model


def pick_artifact(model: Model, wanted: str | None, role: str | None) -> dict[str, Any]:
    """The artifact a reference means: the named file, else the model's only .pt file, else
    its *stack* (a *tower* where the role is `tower`)."""
    files = list(model.artifacts)
    if wanted is not None:
        for artifact in files:
            if artifact["name"] == wanted:
                return artifact
        raise NotFound(f"model {model.ref} has no artifact {wanted!r}")
    weights = [a for a in files if str(a["name"]).endswith(".pt")]
    if len(weights) == 1:
        return weights[0]
    hint = "tower" if role == "tower" else "stack"
    preferred = [a for a in weights if hint in str(a["name"])]
    if len(preferred) == 1:
        return preferred[0]
    names = ", ".join(str(a["name"]) for a in weights) or "none"
    raise Unprocessable(f"model {model.ref} has several weights files ({names}); name one")


ARTIFACT_DIRS = ("jobs",)  # under the data folder: where jobs leave models' files


def report_path(model: Model, name: str, data_dir: Path | str) -> Path:
    """A report file of the model, by its name; only files the job listed as reports (never
    weights, which may memorise governed data)."""
    if name not in model.reports:
        listed = ", ".join(model.reports) or "none"
        raise NotFound(f"model {model.ref} has no report {name!r} (reports: {listed})")
    for artifact in model.artifacts:
        if artifact["name"] == name:
            return artifact_file(model, artifact, data_dir)
    raise NotFound(f"the report {name!r} of {model.ref} is no longer on disk")


def artifact_file(model: Model, artifact: dict[str, Any], data_dir: Path | str) -> Path:
    """Where one of the model's files is, checked: under the folder jobs leave their files in
    (never the datasets' or the keys'), and still the bytes the job left (its SHA-256)."""
    root = Path(data_dir).resolve()
    path = (root / str(artifact.get("path", ""))).resolve()
    if not any(path.is_relative_to(root / d) for d in ARTIFACT_DIRS) or not path.is_file():
        raise NotFound(f"the file {artifact.get('name')!r} of {model.ref} is no longer on disk")
    if file_digest(path) != f"sha256:{artifact.get('sha256')}":
        raise NotFound(f"the file {artifact.get('name')!r} of {model.ref} was changed on disk")
    return path


def next_version(db: Session, tenant_id: str, name: str) -> int:
    return repo.newest_version(db, tenant_id, name) + 1


def register(
    db: Session,
    job: Job,
    *,
    metrics: dict[str, Any],
    artifacts: list[dict[str, Any]],
    reports: list[str],
    lineage: dict[str, Any],
) -> Model:
    model = Model(
        tenant_id=job.tenant_id,
        tenant=job.tenant,
        name=job.name,
        version=next_version(db, job.tenant_id, job.name),
        job_id=job.id,
        launcher=job.launcher,
        kind=job.kind,
        step=job.step,
        metrics=metrics,
        artifacts=artifacts,
        reports=reports,
        lineage=lineage,
    )
    db.add(model)
    db.flush()
    return model


def code_version(root: Path = REPO_ROOT) -> dict[str, Any]:
    """A hash of the workload's sources (what the ML image carries besides its wheels)."""
    sha = hashlib.sha256()
    files = 0
    for folder in CODE_DIRS:
        for path in sorted((root / folder).rglob("*.py")):
            if "__pycache__" in path.parts:
                continue
            sha.update(str(path.relative_to(root)).encode() + b"\0")
            sha.update(path.read_bytes())
            files += 1
    return {"sha256": sha.hexdigest(), "files": files, "sources": list(CODE_DIRS)}


def witnessed_reads(db: Session, sandbox: Sandbox) -> None:
    """Refuse (503) a job whose reads in the log are not those its exit event named."""
    repo.witnessed_reads(db, sandbox.actor_name, sandbox.id)


def lineage_for(
    db: Session, job: Job, sandbox: Sandbox | None, parents: list[Model]
) -> dict[str, Any]:
    """Datasets (versions read), grants, rules and policy versions from the job's audited
    reads; image digest from its sandbox; parents from its model_in."""
    reads: list[AuditEvent] = []
    if sandbox is not None:
        reads = repo.reads_by(db, sandbox.actor_name)
    declared = dict(job.decisions.get("datasets", {}))
    datasets: dict[str, dict[str, Any]] = {}
    for name in job.datasets:
        datasets[name] = {
            "name": name,
            "versions": [],
            "snapshots": [],  # the Iceberg snapshot of each version read
            "launch_version": declared.get(name, {}).get("version"),
            "launch_snapshot": declared.get(name, {}).get("snapshot"),
            "reads": 0,
            "denied_reads": 0,
            "rows": 0,
            "grant_ids": [],
            "rules": [],
        }
    for event in reads:
        entry = datasets.setdefault(
            event.dataset or "?",
            {
                "name": event.dataset,
                "versions": [],
                "snapshots": [],
                "launch_version": None,
                "reads": 0,
                "denied_reads": 0,
                "rows": 0,
                "grant_ids": [],
                "rules": [],
            },
        )
        if event.decision != "allow":
            entry["denied_reads"] += 1
            continue
        entry["reads"] += 1
        entry["rows"] += int(event.rows or 0)
        _add(entry["versions"], event.dataset_version)
        _add(entry["snapshots"], (event.details or {}).get("snapshot"))
        for grant in event.grant_ids or []:
            _add(entry["grant_ids"], grant)
        _add(entry["rules"], event.rule)
    allowed = [e for e in reads if e.decision == "allow"]
    for name, record in seen_in_reads(allowed).items():  # what it read, whenever it read it
        datasets[name]["seen"] = record["seen"]
    policy_versions = sorted({e.policy_version for e in allowed if e.policy_version is not None})
    return {
        "job": job.id,
        "kind": job.kind,
        "step": job.step,
        "launcher": job.launcher,
        "actor": sandbox.actor_name if sandbox else None,
        "purpose": job.purpose,
        "datasets": list(datasets.values()),
        "grant_ids": sorted({g for e in allowed for g in (e.grant_ids or [])}),
        "policy_version": policy_versions[-1] if policy_versions else None,
        "policy_versions": policy_versions,
        "launch_policy_version": job.decisions.get("policy_version"),
        "audit_events": [e.id for e in reads],
        "image": sandbox.image if sandbox else None,
        "image_digest": sandbox.image_digest if sandbox else None,
        "sandbox": sandbox.id if sandbox else None,
        "code_version": code_version(),
        "parents": [{"id": p.id, "ref": p.ref, "job": p.job_id} for p in parents],
        "seed": job.spec.get("seed"),
    }


def seen_in_reads(reads: Sequence[AuditEvent]) -> dict[str, dict[str, Any]]:
    """What a job's allowed reads showed of each dataset, as `seen_at_launch` records it: a
    job reads with its launcher's rights of the moment, so a right gained after its launch
    (and lost after the build) is counted here, not in its launch's record."""
    found: dict[str, list[dict[str, Any]]] = {}
    for e in reads:
        masked = list(e.masked_columns or [])
        found.setdefault(e.dataset or "?", []).append(
            {
                "raw": [c for c in e.columns or [] if c not in masked],
                "masked": masked,
                "row_filters": [
                    [f.get("column"), f.get("op"), f.get("value")] for f in e.row_filter or []
                ],
            }
        )
    return {name: {"seen": seen_by_all(records)} for name, records in found.items()}


def _add(values: list[Any], value: Any) -> None:
    if value is not None and value not in values:
        values.append(value)


def list_models(
    db: Session, tenant: str, name: str | None, limit: int, offset: int = 0
) -> list[Model]:
    return [check(db, m) for m in repo.models(db, tenant, name, limit, offset)]


def get_model(db: Session, model_id: str | None, tenant_id: str) -> Model | None:
    """The tenant's model with this id, once its seal checks out (db/sealed.py: its lineage
    decides who may use it, its artifacts what is copied and served); None if the tenant
    has none (another tenant's model is none of its business). The one way Warden reads a
    model by id."""
    model = db.get(Model, model_id) if model_id else None
    return None if model is None or model.tenant_id != tenant_id else check(db, model)


def built_with(db: Session, model: Model) -> dict[str, Any]:
    """What the model's builders could read of each dataset it carries, as their jobs recorded
    it at launch (policy/reads.py `authorize_use`): its own job's, and every ancestor's (a
    model built on a parent carries what the parent's job saw of the parent's datasets, which
    its own job never read, so its own launch says nothing of them). Sealed with each job; a
    job that is not there was deleted past Warden (it deletes none): fail closed."""
    return _built_with(db, [model], [])


def job_built_with(db: Session, job: Job) -> dict[str, Any]:
    """The same for what a job makes as it runs (its log): its own launch's record, and those
    of the models it builds on and their ancestors."""
    parents = [_parent(db, model_id, job.tenant_id) for model_id in job.model_in or []]
    reads = repo.reads_by(db, f"job-{job.sandbox_id}") if job.sandbox_id else []
    mine = [
        job.decisions.get("datasets", {}),
        seen_in_reads([e for e in reads if e.decision == "allow"]),
    ]
    return _built_with(db, parents, mine)


def _built_with(
    db: Session, models: list[Model], records: list[dict[str, Any]]
) -> dict[str, dict[str, Any]]:
    seen, frontier = {m.id for m in models}, list(models)
    while frontier:  # every ancestor, as `lineage_datasets` walks them
        if len(seen) > MAX_ANCESTORS:
            raise Unavailable(f"a model has over {MAX_ANCESTORS} ancestors")
        for m in frontier:
            job = db.get(Job, m.job_id) if m.job_id else None
            if job is None:
                raise RowTampered(f"the job that built {m.ref} is not in the database")
            records.append(dict(check(db, job).decisions.get("datasets", {})))
            # what its job's reads showed (lineage_for), sealed with the model
            records.append({e.get("name"): e for e in m.lineage.get("datasets", [])})
        parents = [p for m in frontier for p in parents_of(db, m) if p.id not in seen]
        seen.update(p.id for p in parents)
        frontier = parents
    names = dict.fromkeys(n for r in records for n in r)
    return {n: {"seen": seen_by_all(r.get(n, {}).get("seen") for r in records)} for n in names}


def parents_of(db: Session, model: Model) -> list[Model]:
    """Every parent its lineage names; one not found fails closed (Warden never deletes a
    model: skipping it would drop its datasets from who may use this one)."""
    return [_parent(db, p.get("id"), model.tenant_id) for p in model.lineage.get("parents", [])]


def _parent(db: Session, model_id: str | None, tenant_id: str) -> Model:
    parent = get_model(db, model_id, tenant_id)
    if parent is None:
        raise RowTampered(
            f"parent model {str(model_id)[:12]!r} is not in the database (deleted past Warden)"
        )
    return parent


def inputs_of(
    db: Session, tenant_id: str, datasets: Sequence[str], model_ids: Sequence[str | None]
) -> list[str]:
    """What a job's output carries: the datasets it read, then those its parent models (and
    their ancestors) were built from, each once, in that order."""
    names = list(dict.fromkeys(datasets))
    for model_id in model_ids:
        if model_id is not None:
            model = _parent(db, model_id, tenant_id)
            names += [n for n in lineage_datasets(db, model) if n not in names]
    return names


MAX_DEPTH = 32  # ancestors shown (api/routes/registry.py); decisions walk them all
MAX_ANCESTORS = 10_000  # more than this and no decision is made (refused)


def lineage_datasets(db: Session, model: Model) -> dict[str, list[str]]:
    """Dataset name -> versions read, over the model and its ancestors."""
    out: dict[str, list[str]] = {}
    seen, frontier = {model.id}, [model]
    while frontier:  # every ancestor: one left out would leave its datasets out
        if len(seen) > MAX_ANCESTORS:
            raise Unavailable(f"model {model.ref} has over {MAX_ANCESTORS} ancestors")
        for m in frontier:
            for entry in m.lineage.get("datasets", []):
                versions = out.setdefault(str(entry.get("name")), [])
                versions += [v for v in entry.get("versions", []) if v not in versions]
        parents = [p for m in frontier for p in parents_of(db, m) if p.id not in seen]
        seen.update(p.id for p in parents)
        frontier = parents
    return out
