"""Options and arguments several commands take, declared once so they read the same everywhere."""

from __future__ import annotations

from typing import Annotated

import typer

Yes = Annotated[bool, typer.Option("--yes", "-y", help="Do not ask")]
Follow = Annotated[bool, typer.Option("--follow", "-f", help="Keep streaming")]
Everyone = Annotated[bool, typer.Option("--all", help="Everyone's (admins)")]
Limit = Annotated[int, typer.Option(min=1, max=1000)]
OnlyDataset = Annotated[str | None, typer.Option(help="Only this dataset")]
DatasetName = Annotated[str, typer.Argument(help="Dataset name")]
Purpose = Annotated[str, typer.Option(help="training, evaluation, inference or analytics")]
AuditReason = Annotated[str, typer.Option(help="Why, for the audit log")]
Timeout = Annotated[int | None, typer.Option(min=1, help="Wall-clock limit, seconds")]
Cpus = Annotated[float | None, typer.Option(help="CPU limit")]
SandboxId = Annotated[str, typer.Argument(help="The sandbox id")]


def column_names(value: str | None) -> list[str] | None:
    """`--columns a,b`: the names (spaces around each dropped), or None where none was given.
    An empty name (`a,,b`, `a,`, "") is a usage error (exit 2) before anything is sent: read
    as "no such column" or dropped, a typo would ask for other columns than were meant."""
    if value is None:
        return None
    names = [c.strip() for c in value.split(",")]
    if not all(names):
        raise typer.BadParameter(f"{value!r} names an empty column; write NAME,NAME,…")
    return names


def _checked_columns(value: str | None) -> str | None:
    column_names(value)
    return value


Columns = Annotated[
    str | None,
    typer.Option(callback=_checked_columns, help="Comma-separated column names (default: all)"),
]
