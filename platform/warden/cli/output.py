"""Printing results: a rich table for people, JSON for scripts."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Annotated, Any

import typer
from rich.table import Table

from warden.cli.client import ApiClient, console, fail

FORMATS = ("table", "json")
Format = Annotated[str, typer.Option("--format", help="table or json")]


def check_format(fmt: str) -> None:
    if fmt not in FORMATS:
        fail(f"--format must be one of {', '.join(FORMATS)}")


def print_one(path: str, fmt: str, as_tables: Callable[[dict[str, Any]], None]) -> None:
    """GET one object for a command with --format: JSON for json, else printed by
    `as_tables`."""
    check_format(fmt)
    print_body(ApiClient().get(path), fmt, as_tables)


def print_body(body: dict[str, Any], fmt: str, as_tables: Callable[[dict[str, Any]], None]) -> None:
    """One answer for a command with --format: a JSON object for json, else printed by
    `as_tables`."""
    check_format(fmt)
    if fmt == "json":
        console.print_json(json.dumps(body, default=str))
    else:
        as_tables(body)


def show(
    rows: Sequence[dict[str, Any]],
    columns: Sequence[str],
    fmt: str,
    title: str = "",
    table_row: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
) -> None:
    """Rows as a JSON list, or as a table of `columns`, each row first put by `table_row`
    (JSON keeps the rows as they came)."""
    check_format(fmt)
    if fmt == "json":
        console.print_json(json.dumps(list(rows), default=str))
        return
    table = Table(title=title or None)
    shaped = [table_row(row) for row in rows] if table_row else rows
    cells = [[_text(row.get(c)) for c in columns] for row in shaped]
    for i, column in enumerate(columns):
        if i == 0:  # the key (an id, a name): never folded, people copy it into commands
            widest = max([len(column), *(len(r[0]) for r in cells)])
            table.add_column(column, no_wrap=True, min_width=min(widest, 40))
        else:
            table.add_column(column)
    for cell in cells:
        table.add_row(*cell)
    console.print(table)


def show_one(row: dict[str, Any], columns: Sequence[str], fmt: str, title: str = "") -> None:
    """One object: a JSON object (never a one-element list) for scripts, a one-row table."""
    check_format(fmt)
    if fmt == "json":
        console.print_json(json.dumps(row, default=str))
        return
    show([row], columns, fmt, title)


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, list | tuple):
        return ", ".join(str(v) for v in value)
    return str(value)
