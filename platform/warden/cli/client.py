"""How the CLI reaches the API: WARDEN_URL, and a token from WARDEN_TOKEN or the user config."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, NoReturn

import httpx
import typer
from rich.console import Console

from warden.config import get_settings

err_console = Console(stderr=True)
console = Console()


def config_file() -> Path:
    return get_settings().config_dir / "credentials.json"


def load_token() -> str | None:
    settings = get_settings()
    if settings.token:
        return settings.token
    path = config_file()
    if path.exists():
        data = json.loads(path.read_text())
        token = data.get("token")
        return str(token) if token else None
    return None


def save_token(token: str, url: str, principal: str) -> Path:
    path = config_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"token": token, "url": url, "principal": principal}, indent=2))
    path.chmod(0o600)
    return path


def fail(message: str, code: int = 1) -> NoReturn:
    err_console.print(f"[bold red]error:[/] {message}")
    raise typer.Exit(code)


def given(**params: Any) -> dict[str, Any]:
    """The query parameters a command was given: those left unset (None, "", []) left out."""
    return {k: v for k, v in params.items() if v is not None and v != "" and v != []}


class ApiClient:
    """A thin httpx wrapper that turns the API's error shape into a clean CLI message."""

    def __init__(self, url: str | None = None, token: str | None = None) -> None:
        self.url = (url or get_settings().url).rstrip("/")
        self.token = token or load_token()
        headers = {"authorization": f"Bearer {self.token}"} if self.token else {}
        self.http = httpx.Client(base_url=self.url, headers=headers, timeout=300.0)

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        if not self.token:
            fail("no token: run `warden init`, or set WARDEN_TOKEN")
        try:
            response = self.http.request(method, path, **kwargs)
        except httpx.ConnectError:
            fail(f"cannot reach the Warden API at {self.url}: is `warden serve` running?")
        if response.status_code >= 400:
            fail(describe_error(response), code=2 if response.status_code < 500 else 3)
        return response

    def get(self, path: str, **kwargs: Any) -> Any:
        return self.request("GET", path, **kwargs).json()

    def post(self, path: str, **kwargs: Any) -> Any:
        return self.request("POST", path, **kwargs).json()

    def stream_logs(self, path: str, *, follow: bool) -> None:
        """Copy a log (a job's, a sandbox's) to stdout as it arrives; `follow` until it ends."""
        if not self.token:
            fail("no token: run `warden init`, or set WARDEN_TOKEN")
        try:
            with self.http.stream("GET", path, params={"follow": follow}, timeout=None) as got:
                if got.status_code >= 400:
                    got.read()
                    fail(describe_error(got), code=2)
                out = sys.stdout.buffer
                for chunk in got.iter_bytes():
                    out.write(chunk)
                    out.flush()
        except httpx.ConnectError:
            fail(f"cannot reach the Warden API at {self.url}: is `warden serve` running?")

    def stream_frames(self, path: str, body: dict[str, Any]) -> int:
        """POST, copy an exec's framed output to stdout; its exit code (1 when unknown)."""
        from warden.sandbox import frames

        if not self.token:
            fail("no token: run `warden init`, or set WARDEN_TOKEN")
        code = 1
        try:
            with self.http.stream("POST", path, json=body, timeout=None) as got:
                if got.status_code >= 400:
                    got.read()
                    fail(describe_error(got), code=2 if got.status_code < 500 else 3)
                out = sys.stdout.buffer
                for kind, data in frames.read_frames(got.iter_bytes()):
                    if kind == frames.OUTPUT:
                        out.write(data)
                        out.flush()
                    elif kind == frames.END:
                        end = frames.parse_end(data)
                        if end.get("error"):
                            err_console.print(f"[bold red]error:[/] {end['error']}")
                        code = 1 if end.get("exit_code") is None else int(end["exit_code"])
        except httpx.ConnectError:
            fail(f"cannot reach the Warden API at {self.url}: is `warden serve` running?")
        return code if 0 <= code < 256 else 1


def describe_error(response: httpx.Response) -> str:
    try:
        body = response.json()
        return f"{body['error']} ({response.status_code}): {body['detail']}"
    except (ValueError, KeyError, TypeError):
        return f"HTTP {response.status_code}: {response.text[:200]}"
