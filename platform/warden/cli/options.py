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
