"""`warden experiments …`: start (the plan registered first), status, stop, simulate, decide,
rollback, report. `warden models recommend` serves one request."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markdown import Markdown

from warden.cli.client import ApiClient, console

app = typer.Typer(help="Shadow, A/B on simulated users, a pre-registered decision, rollback.")
Name = Annotated[str, typer.Argument(help="The experiment's name")]


def _print(body: Any) -> None:
    print(json.dumps(body, indent=2, sort_keys=True, default=str))


@app.command()
def start(
    name: Name,
    control: Annotated[str, typer.Option(help="The serving model now (ref)")],
    challenger: Annotated[str, typer.Option(help="The model to test (ref)")],
    mde: Annotated[float, typer.Option(help="Minimum detectable effect (KPI per request)")],
    p95_ms: Annotated[float, typer.Option(help="Guardrail: challenger P95 latency, ms")],
    error_rate: Annotated[float, typer.Option(help="Guardrail: challenger error rate")] = 0.01,
    cost_per_1k: Annotated[float, typer.Option(help="Guardrail: USD per 1k requests")] = 0.01,
    shadow: Annotated[str | None, typer.Option(help="A shadow model (answers nobody)")] = None,
    split: Annotated[float, typer.Option(help="Share of users on the challenger")] = 0.5,
    kpi: Annotated[str, typer.Option(help="clicks or saves per request")] = "clicks",
) -> None:
    """Register the plan (arms, split, KPI, MDE, guardrails) and start serving through it."""
    body: dict[str, Any] = {
        "name": name, "control": control, "challenger": challenger, "split": split,
        "kpi": kpi, "mde": mde,
        "guardrails": {"p95_ms": p95_ms, "error_rate": error_rate, "cost_per_1k_usd": cost_per_1k},
    }  # fmt: skip
    if shadow:
        body["shadow"] = shadow
    _print(ApiClient().post("/v1/experiments", json=body))


@app.command()
def status(name: Name) -> None:
    """The experiment's state, plan, KPI per arm, lift and decision."""
    _print(ApiClient().get(f"/v1/experiments/{name}"))


@app.command()
def stop(name: Name) -> None:
    """Stop serving through the experiment (its numbers stay for `decide`)."""
    _print(ApiClient().post(f"/v1/experiments/{name}/stop"))


@app.command()
def simulate(
    name: Name,
    requests: Annotated[int, typer.Option(help="Simulated requests")] = 500,
    seed: Annotated[int, typer.Option()] = 0,
) -> None:
    """Simulated users (the generator's latent model, read for evaluation) through the arms."""
    body = {"requests": requests, "seed": seed}
    _print(ApiClient().post(f"/v1/experiments/{name}/simulate", json=body))


@app.command()
def decide(name: Name) -> None:
    """Apply the pre-registered rule: promote the challenger, or refuse and say why."""
    _print(ApiClient().post(f"/v1/experiments/{name}/decide"))


@app.command()
def rollback(name: Name) -> None:
    """Restore the serving default the experiment's promotion replaced."""
    _print(ApiClient().post(f"/v1/experiments/{name}/rollback"))


@app.command()
def report(
    name: Name,
    out: Annotated[Path | None, typer.Option(help="Write report.json, .md and .png here")] = None,
) -> None:
    """The report: shadow agreement, KPI per arm, latency and cost, the decision."""
    client = ApiClient()
    md = client.request("GET", f"/v1/experiments/{name}/report", params={"format": "md"}).text
    if out is None:
        console.print(Markdown(md))
        return
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.md").write_text(md)
    body = client.get(f"/v1/experiments/{name}/report")
    (out / "report.json").write_text(json.dumps(body, indent=2, default=str) + "\n")
    image = client.request("GET", f"/v1/experiments/{name}/report", params={"format": "png"})
    (out / "report.png").write_bytes(image.content)
    console.print(f"wrote report.md, report.json and report.png in {out}")
