"""`warden models …`: the registry; `lineage` traces a model back to data, grants and code."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markdown import Markdown
from rich.table import Table

from warden.cli.client import ApiClient, console, fail
from warden.cli.output import Format, print_one, show

app = typer.Typer(help="Registered models, their metrics, reports and lineage.")
MAX_METRICS = 24
ModelRef = Annotated[str, typer.Argument(help="ID, NAME or NAME@VERSION")]


@app.command(name="list")
def list_(
    name: Annotated[str | None, typer.Option(help="Only this model name")] = None,
    fmt: Format = "table",
) -> None:
    """Registered models, newest first."""
    params = {"name": name} if name else {}
    rows = ApiClient().get("/v1/models", params=params)["models"]
    if fmt == "table":
        for row in rows:
            row["headline"] = _headline(row["metrics"], 3)
    columns = ["ref", "id", "kind", "step", "job_id", "launcher", "headline", "created_at"]
    show(rows, columns, fmt, title="models")


@app.command(name="show")
def show_(model: ModelRef, fmt: Format = "table") -> None:
    """One model: its job, metrics, artifacts and reports."""
    print_one(f"/v1/models/{model}", fmt, _model_tables)


def _model_tables(row: dict[str, Any]) -> None:
    _summary(row)
    _metrics(row)
    artifacts = Table(title="artifacts")
    for column in ("name", "bytes", "sha256", "path"):
        artifacts.add_column(column)
    for a in row["artifacts"]:
        artifacts.add_row(a["name"], str(a["bytes"]), a["sha256"][:16], a["path"])
    console.print(artifacts)


@app.command()
def report(
    model: ModelRef,
    name: Annotated[str, typer.Argument(help="Which report (see `models show`)")] = "report.md",
    out: Annotated[Path | None, typer.Option(help="Save it here instead of printing it")] = None,
    raw: Annotated[bool, typer.Option("--raw", help="Print Markdown as text")] = False,
) -> None:
    """An evaluation report: the A/B Markdown by default, or report.json or a plot (--out)."""
    body = ApiClient().request("GET", f"/v1/models/{model}/reports/{name}").content
    if out is not None:
        out.write_bytes(body)
        console.print(f"wrote {out} ({len(body):,} bytes)")
    elif name.endswith(".png"):
        fail(f"{name} is an image: save it with --out FILE")
    elif name.endswith(".md") and not raw:
        console.print(Markdown(body.decode()))
    else:
        print(body.decode())


@app.command()
def lineage(model: ModelRef, fmt: Format = "table") -> None:
    """Data → job → model: dataset versions, grants, policy version, image and code, parents."""
    print_one(f"/v1/models/{model}/lineage", fmt, _lineage_tables)


def _lineage_tables(body: dict[str, Any]) -> None:
    for row in [body["model"], *body["ancestors"]]:
        _summary(row)
        _datasets(row["lineage"])
        _metrics(row)


def _summary(row: dict[str, Any]) -> None:
    lin = row["lineage"]
    code = lin.get("code_version") or {}
    table = Table(show_header=False, title=f"{row['ref']} ({row['id']})", title_justify="left")
    fields = [
        ("job", f"{row['job_id']} · {row['kind']} {row['step']} · by {row['launcher']}"),
        ("actor", f"{lin.get('actor')} (sandbox {lin.get('sandbox')})"),
        ("purpose", lin.get("purpose")),
        ("seed", lin.get("seed")),
        (
            "policy version",
            f"{lin.get('policy_version')} (at launch {lin.get('launch_policy_version')})",
        ),
        ("grant ids", ", ".join(lin.get("grant_ids") or []) or "none (role rules only)"),
        ("image", lin.get("image")),
        ("image digest", lin.get("image_digest")),
        ("code version", f"sha256:{code.get('sha256', '')[:16]}… ({code.get('files')} files)"),
        ("parents", ", ".join(f"{p['ref']} ({p['id']})" for p in lin.get("parents", [])) or "none"),
        ("reports", ", ".join(row.get("reports") or []) or "none"),
        ("audit events", str(len(lin.get("audit_events") or []))),
    ]
    if lin.get("outputs"):
        fields.append(("outputs", ", ".join(o["dataset"] for o in lin["outputs"])))
    for key, value in fields:
        table.add_row(key, "" if value is None else str(value))
    console.print(table)


def _datasets(lin: dict[str, Any]) -> None:
    table = Table(title="datasets read")
    for column in ("dataset", "versions read", "reads", "rows", "grants", "rules"):
        table.add_column(column)
    for d in lin.get("datasets", []):
        table.add_row(
            d["name"],
            ", ".join(v[:19] for v in d["versions"])
            + "".join(f" (snapshot {s})" for s in d.get("snapshots", []))
            or f"none (at launch {str(d['launch_version'])[:19]})",
            f"{d['reads']}" + (f" ({d['denied_reads']} denied)" if d["denied_reads"] else ""),
            str(d["rows"]),
            ", ".join(d["grant_ids"]) or "-",
            "; ".join(d["rules"])[:80] or "-",
        )
    console.print(table)


def _metrics(row: dict[str, Any]) -> None:
    flat = _flat(row["metrics"])
    if not flat:
        return
    table = Table(title="metrics")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, value in list(flat.items())[:MAX_METRICS]:
        table.add_row(key, value)
    console.print(table)


def _flat(metrics: dict[str, Any]) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in metrics.items():
        if isinstance(value, bool) or not isinstance(value, int | float):
            continue
        out[key] = f"{value:.4g}" if isinstance(value, float) else str(value)
    return out


def _headline(metrics: dict[str, Any], n: int) -> str:
    return ", ".join(f"{k}={v}" for k, v in list(_flat(metrics).items())[:n])


@app.command()
def recommend(
    user: Annotated[str, typer.Argument(help="Who asks (a pseudonym; the split's key)")],
    history: Annotated[
        list[int] | None, typer.Option("--pin", help="A pin engaged, oldest first")
    ] = None,
    model: Annotated[str | None, typer.Option(help="ID, NAME or NAME@VERSION")] = None,
    experiment: Annotated[str | None, typer.Option(help="Serve through this experiment")] = None,
    k: Annotated[int, typer.Option(help="How many pins")] = 10,
) -> None:
    """Top-k pins for a user, served online (governed like a read, audited per request);
    without --model or --experiment, the tenant's serving default."""
    body: dict[str, Any] = {"user": user, "history": history or [], "k": k}
    if model:
        body["model"] = model
    if experiment:
        body["experiment"] = experiment
    answer = ApiClient().post("/v1/recommend", json=body)
    arm = f" ({answer['experiment']}: {answer['arm']})" if answer.get("experiment") else ""
    console.print(f"{answer['model']}{arm}: {answer['pins']}")
