"""`warden workspace …`: your project trees, kept by the platform for app-dev sandboxes."""

from __future__ import annotations

import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer

from warden.cli.client import ApiClient, console, describe_error, err_console, fail
from warden.cli.options import Everyone
from warden.cli.output import Format, show
from warden.workspace.archive import pack, walk

app = typer.Typer(help="Workspaces: project trees mounted at /workspace in app-dev sandboxes.")


def _params(ref: str) -> tuple[str, dict[str, str]]:
    owner, _, name = ref.rpartition("/")
    return name, ({"owner": owner} if owner else {})


def tree_entries(folder: Path) -> list[str]:
    """What to upload: git's view of the folder (tracked and untracked files, .gitignore
    honoured) in a git work tree; otherwise everything but .git folders."""
    try:
        listed = subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],  # noqa: S607
            cwd=folder,
            capture_output=True,
            check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return list(walk(folder, skip=(".git",)))
    files = [p for p in listed.decode("utf-8", "surrogateescape").split("\0") if p]
    # Deleted but still in the index: nothing to send.
    files = [p for p in files if (folder / p).is_symlink() or (folder / p).exists()]
    parents = {str(Path(p).parent) for p in files} - {"."}
    folders = {str(parent) for p in parents for parent in [Path(p), *Path(p).parents]} - {"."}
    return sorted(folders) + files


def upload(client: ApiClient, ref: str, folder: Path) -> dict[str, Any]:
    name, params = _params(ref)
    entries = tree_entries(folder)
    chunks: Iterator[bytes] = pack(folder, iter(entries))
    try:
        response = client.request(
            "PUT",
            f"/v1/workspaces/{name}/archive",
            params=params,
            content=chunks,
            headers={"content-type": "application/x-tar"},
        )
    except httpx.TransportError as exc:
        # The server answers a refusal (e.g. over the quota) before the body ends.
        fail(f"the upload was cut off ({type(exc).__name__}): over the workspace quota?", 2)
    return dict(response.json())


@app.command()
def create(
    name: Annotated[str, typer.Argument(help="A name: lowercase letters, digits, . _ -")],
    from_: Annotated[
        Path | None, typer.Option("--from", help="Upload this folder (.gitignore honoured)")
    ] = None,
) -> None:
    """Create a workspace, and fill it from a folder."""
    client = ApiClient()
    if from_ is not None and not from_.is_dir():
        fail(f"{from_} is not a folder")
    client.post("/v1/workspaces", json={"name": name})
    if from_ is not None:
        row = upload(client, name, from_)
        console.print(f"{row['ref']}: {row['file_count']} files, {row['byte_size']} bytes")
    else:
        console.print(f"{name}: created, empty")


@app.command()
def push(
    name: Annotated[str, typer.Argument(help="Your workspace")],
    from_: Annotated[Path, typer.Option("--from", help="The folder (.gitignore honoured)")] = Path(
        "."
    ),
) -> None:
    """Replace a workspace's files with a folder's."""
    if not from_.is_dir():
        fail(f"{from_} is not a folder")
    row = upload(ApiClient(), name, from_)
    console.print(f"{row['ref']}: {row['file_count']} files, {row['byte_size']} bytes")


@app.command(name="list")
def list_(all_: Everyone = False, fmt: Format = "table") -> None:
    """Your workspaces and those shared with your tenant."""
    rows = ApiClient().get("/v1/workspaces", params={"all": all_})["workspaces"]
    columns = ["ref", "shared", "file_count", "byte_size", "updated_at"]
    show(rows, columns, fmt, title="workspaces")


@app.command()
def pull(
    name: Annotated[str, typer.Argument(help="NAME, or OWNER/NAME for a shared one")],
    into: Annotated[Path, typer.Option("--into", help="Where the files go")] = Path("."),
) -> None:
    """Bring a workspace's files back (files of the same name are overwritten)."""
    client = ApiClient()
    short, params = _params(name)
    into.mkdir(parents=True, exist_ok=True)
    try:
        with client.http.stream(
            "GET", f"/v1/workspaces/{short}/archive", params=params, timeout=None
        ) as got:
            if got.status_code >= 400:
                got.read()
                fail(describe_error(got), code=2)
            count = _extract(got.iter_bytes(), into)
    except httpx.ConnectError:
        fail(f"cannot reach the Warden API at {client.url}: is `warden serve` running?")
    err_console.print(f"{count} entries into {into}")


class _Stream:
    def __init__(self, chunks: Iterator[bytes]) -> None:
        self.chunks = chunks
        self.pending = b""

    def read(self, size: int = -1) -> bytes:
        while size < 0 or len(self.pending) < size:
            chunk = next(self.chunks, None)
            if chunk is None:
                break
            self.pending += chunk
        size = len(self.pending) if size < 0 else size
        data, self.pending = self.pending[:size], self.pending[size:]
        return data


def _extract(chunks: Iterator[bytes], into: Path) -> int:
    count = 0
    with tarfile.open(fileobj=_Stream(chunks), mode="r|*") as tar:  # type: ignore[call-overload]
        for member in tar:
            # The data filter: nothing lands outside `into`, no devices, no absolute links.
            target = into / member.name
            replaced = target.is_symlink() or (target.exists() and not target.is_dir())
            if replaced and not member.isdir():
                target.unlink()  # never write through a link that is there now
            try:
                tar.extract(member, into, filter="data")
            except tarfile.FilterError as exc:
                err_console.print(f"[yellow]skipped[/] {member.name}: {exc}")
                continue
            count += 1
    return count


@app.command()
def share(
    name: Annotated[str, typer.Argument(help="Your workspace")],
    team: Annotated[
        bool, typer.Option("--team/--private", help="Share with your tenant, or stop")
    ] = True,
) -> None:
    """Share a workspace with your tenant (teammates use it as OWNER/NAME)."""
    row = ApiClient().post(f"/v1/workspaces/{name}/share", json={"shared": team})
    console.print(f"{row['ref']}: {'shared with the tenant' if row['shared'] else 'private'}")


@app.command()
def delete(
    name: Annotated[str, typer.Argument(help="NAME (or OWNER/NAME, for admins)")],
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask")] = False,
) -> None:
    """Delete a workspace and its files."""
    if not yes:
        typer.confirm(f"delete workspace {name} and all its files?", abort=True)
    short, params = _params(name)
    ApiClient().request("DELETE", f"/v1/workspaces/{short}", params=params)
    console.print(f"{name}: deleted")
