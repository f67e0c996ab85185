"""`warden read DATASET`: a governed read from the command line."""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from warden.cli.client import console, err_console, fail, load_token
from warden.cli.options import Columns, column_names
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
    columns: Columns = None,
    where: Annotated[
        list[str] | None,
        typer.Option(
            help="Filter COLUMN:OP:VALUE (ops eq ne lt le gt ge in not_in is_null not_null)"
        ),
    ] = None,
    limit: Annotated[int | None, typer.Option(min=0, help="At most this many rows")] = 20,
    fmt: Annotated[str, typer.Option("--format", help="table, csv or parquet")] = "table",
    out: Annotated[Path | None, typer.Option(help="Write to this file instead of stdout")] = None,
    as_of: Annotated[
        str | None,
        typer.Option(
            "--as-of",
            help="An earlier version (its sha256:… digest or Iceberg snapshot id) instead of"
            " the current",
        ),
    ] = None,
) -> None:
    """Read a dataset through policy. Masked columns come back masked; the read is audited."""
    if fmt not in FORMATS:
        fail(f"--format must be one of {', '.join(FORMATS)}")
    if fmt == "parquet" and out is None:
        fail("--format parquet needs --out FILE")
    from warden.sdk import Client, WardenAPIError  # polars and pyarrow: only when reading

    client = Client(url=get_settings().url, token=load_token())
    query: dict[str, Any] = {
        "purpose": purpose,
        "columns": column_names(columns),
        "where": parse_where(where or []),
        "limit": limit,
        "version": as_of,
    }
    info: dict[str, str] = {}
    rows = 0
    try:
        if fmt == "table":
            frame, info = client.read_with_info(dataset, **query)
            rows = frame.height
            console.print(render(frame, info))
        else:  # written as the batches arrive: an answer larger than memory still fits
            rows = _write_batches(client.iter_batches(dataset, info=info, **query), fmt, out)
    except WardenAPIError as exc:
        fail(f"{exc.error} ({exc.status}): {exc.detail}", code=2)
    except OSError as exc:
        fail(f"cannot reach the Warden API at {client.url}: {exc}")
    err_console.print(
        f"{rows} rows · audit event {info.get('x-warden-audit-event')} · "
        f"masked: {info.get('x-warden-masked-columns') or 'none'}"
    )


def _write_batches(batches: Iterator[pl.DataFrame], fmt: str, out: Path | None) -> int:
    import pyarrow.parquet as pq

    rows = 0
    writer: pq.ParquetWriter | None = None
    with contextlib.ExitStack() as stack:
        text = stack.enter_context(out.open("w")) if fmt == "csv" and out else sys.stdout
        for batch in batches:
            if fmt == "parquet":
                table = batch.to_arrow()
                if writer is None:
                    writer = stack.enter_context(pq.ParquetWriter(str(out), table.schema))
                writer.write_table(table)
            else:
                text.write(batch.write_csv(include_header=rows == 0))
            rows += batch.height
    return rows


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
