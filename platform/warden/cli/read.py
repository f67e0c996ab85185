"""`warden read DATASET`: a governed read from the command line."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from warden.cli.client import console, err_console, fail, load_token
from warden.config import get_settings

if TYPE_CHECKING:
    import polars as pl

FORMATS = ("table", "csv", "parquet")


def parse_where(clauses: list[str]) -> list[dict[str, Any]]:
    """`column:op:value`; the value is JSON when it parses as JSON (numbers, lists), else text."""
    parsed = []
    for clause in clauses:
        parts = clause.split(":", 2)
        if len(parts) < 2:
            fail(f"--where {clause!r}: use COLUMN:OP[:VALUE], e.g. region:eq:EU or pin_id:in:[1,2]")
        column, op = parts[0], parts[1]
        value: Any = None
        if len(parts) == 3:
            try:
                value = json.loads(parts[2])
            except ValueError:
                value = parts[2]
        parsed.append({"column": column, "op": op, "value": value})
    return parsed


def read(
    dataset: Annotated[str, typer.Argument(help="Dataset name, e.g. engagements")],
    purpose: Annotated[str, typer.Option(help="Why: training, evaluation, inference, analytics")],
    columns: Annotated[
        str | None, typer.Option(help="Comma-separated columns (default: all you may see)")
    ] = None,
    where: Annotated[
        list[str] | None,
        typer.Option(
            help="Filter COLUMN:OP:VALUE (ops eq ne lt le gt ge in not_in is_null not_null)"
        ),
    ] = None,
    limit: Annotated[int | None, typer.Option(min=0, help="At most this many rows")] = 20,
    fmt: Annotated[str, typer.Option("--format", help="table, csv or parquet")] = "table",
    out: Annotated[Path | None, typer.Option(help="Write to this file instead of stdout")] = None,
) -> None:
    """Read a dataset through policy. Masked columns come back masked; the read is audited."""
    if fmt not in FORMATS:
        fail(f"--format must be one of {', '.join(FORMATS)}")
    if fmt == "parquet" and out is None:
        fail("--format parquet needs --out FILE")
    from warden.sdk import Client, WardenAPIError  # polars and pyarrow: only when reading

    client = Client(url=get_settings().url, token=load_token())
    try:
        frame, info = client.read_with_info(
            dataset,
            purpose=purpose,
            columns=[c.strip() for c in columns.split(",")] if columns else None,
            where=parse_where(where or []),
            limit=limit,
        )
    except WardenAPIError as exc:
        fail(f"{exc.error} ({exc.status}): {exc.detail}", code=2)
    except OSError as exc:
        fail(f"cannot reach the Warden API at {client.url}: {exc}")
    if fmt == "parquet" and out is not None:
        frame.write_parquet(out)
    elif fmt == "csv":
        if out is not None:
            frame.write_csv(out)
        else:
            sys.stdout.write(frame.write_csv())
    else:
        console.print(render(frame, info))
    err_console.print(
        f"{frame.height} rows · audit event {info.get('x-warden-audit-event')} · "
        f"masked: {info.get('x-warden-masked-columns') or 'none'}"
    )


def render(frame: pl.DataFrame, info: dict[str, str]) -> Table:
    masked = set(filter(None, info.get("x-warden-masked-columns", "").split(",")))
    table = Table(title=f"version {info.get('x-warden-dataset-version', '?')[:19]}…")
    for name in frame.columns:
        table.add_column(name + (" (masked)" if name in masked else ""))
    for row in frame.head(200).iter_rows():
        table.add_row(*[_cell(v) for v in row])
    return table


def _cell(value: Any) -> str:
    if isinstance(value, bytes):
        return f"<{len(value)} bytes>"
    return "" if value is None else str(value)
