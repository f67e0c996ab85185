"""`Client(...).read(dataset, columns=…, purpose=…, where=…) -> polars.DataFrame`, and
`Client(...).iter_batches(...)`, which yields the answer a record batch at a time as it
arrives (bounded memory, however large the answer)."""

from __future__ import annotations

import io
import json
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, BinaryIO, TypedDict, Unpack

import httpx
import polars as pl
import pyarrow as pa
import pyarrow.ipc as pa_ipc

from warden.sdk import direct

DEFAULT_URL = "http://127.0.0.1:8765"
# Ask for inline text in Arrow's view layout: polars takes it without a copy.
_LAYOUT = {"x-warden-arrow-layout": "view"}
# The client's own headers that a read sent past httpx carries too.
_SENT = ("authorization", "user-agent")
READ_AHEAD = 1 << 20  # bytes asked of the socket per receive, for a large answer
Where = Iterable[Mapping[str, Any] | Sequence[Any]]


class ReadOptions(TypedDict, total=False):
    """What a read may narrow besides its purpose (each optional): columns, `where` clauses
    (`{"column", "op", "value"}` or `(column, op, value)`), a row limit, a shard, a version."""

    columns: Sequence[str] | None
    where: Where | None
    limit: int | None
    shard: tuple[int, int] | None
    version: str | None


class WardenAPIError(Exception):
    """An error answer from the API, in its one shape: error class name and detail."""

    def __init__(self, status: int, error: str, detail: Any) -> None:
        super().__init__(f"{error} ({status}): {detail}")
        self.status = status
        self.error = error
        self.detail = detail


class Client:
    """Talks to the Warden API over TCP, or over a unix socket inside an ML sandbox."""

    def __init__(
        self,
        url: str | None = None,
        token: str | None = None,
        *,
        socket: str | None = None,
        timeout: float = 600.0,
    ) -> None:
        socket = socket or os.environ.get("WARDEN_SOCKET")
        self.url = (url or os.environ.get("WARDEN_URL") or DEFAULT_URL).rstrip("/")
        self.token = token or os.environ.get("WARDEN_TOKEN")
        self._socket, self._timeout = socket, timeout
        transport = httpx.HTTPTransport(uds=socket) if socket else None
        headers = {"authorization": f"Bearer {self.token}"} if self.token else {}
        base = "http://warden" if socket else self.url
        self._http = httpx.Client(
            base_url=base, headers=headers, timeout=timeout, transport=transport
        )

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def read(self, dataset: str, *, purpose: str, **options: Unpack[ReadOptions]) -> pl.DataFrame:
        """Read through policy: masked columns come back masked, and the read is audited.
        `shard=(rank, world)`: only this process's part of the answer (the rows whose position
        in the dataset's file is rank modulo world): the parts of all ranks of one dataset
        version are disjoint and together are the whole answer; pass `version` (a digest,
        `x-warden-dataset-version`, or an Iceberg snapshot id, `x-warden-dataset-snapshot`)
        so that every rank reads the same one."""
        frame, _ = self.read_with_info(dataset, purpose=purpose, **options)
        return frame

    def iter_batches(
        self,
        dataset: str,
        *,
        purpose: str,
        info: dict[str, str] | None = None,
        **options: Unpack[ReadOptions],
    ) -> Iterator[pl.DataFrame]:
        """Like read, one polars frame per Arrow record batch as the stream arrives; memory
        stays about one batch. Stopping early closes the connection (the server records the
        read as incomplete). `info`, when given, is filled with the answer's headers."""
        body = _body(purpose, options)
        if not direct.reachable_directly(self.url, self._socket):
            with self._answer(dataset, body, _LAYOUT) as response:
                if info is not None:
                    info.update(_info(response))
                raw = io.BufferedReader(_ChunkReader(response.iter_raw()), buffer_size=1 << 20)
                yield from _frames(raw)
            return
        headers = {k: v for k, v in self._http.headers.items() if k in _SENT} | _LAYOUT
        path = f"/v1/datasets/{dataset}/read"
        with direct.post(self.url, self._socket, path, body, headers, self._timeout) as answer:
            if answer.status >= 400:
                raise _error_of(answer.status, answer.body.read())
            if info is not None:
                info.update({k: v for k, v in answer.headers.items() if k.startswith("x-warden-")})
            yield from _frames(answer.body)

    def read_with_info(
        self, dataset: str, *, purpose: str, **options: Unpack[ReadOptions]
    ) -> tuple[pl.DataFrame, dict[str, str]]:
        """Like read, plus the audit event id, versions and masked columns from the headers
        (a streamed answer names its stream, `x-warden-stream`, instead of its rows)."""
        with self._answer(dataset, _body(purpose, options), _LAYOUT) as response:
            info = _info(response)
            table = _read_table(response)
        return pl.DataFrame(pl.from_arrow(table)), info

    @contextmanager
    def _answer(
        self, dataset: str, body: dict[str, Any], headers: Mapping[str, str] | None = None
    ) -> Iterator[httpx.Response]:
        """The answer to a read of `dataset`, streamed; an error answer raises."""
        path = f"/v1/datasets/{dataset}/read"
        with self._http.stream("POST", path, json=body, headers=headers) as response:
            if response.status_code >= 400:
                response.read()
                raise _error(response)
            with _reading_ahead(response):
                yield response

    def get(self, path: str, **params: Any) -> Any:
        response = self._http.get(path, params={k: v for k, v in params.items() if v is not None})
        if response.status_code >= 400:
            raise _error(response)
        return response.json()

    def post(self, path: str, body: Mapping[str, Any] | None = None) -> Any:
        response = self._http.post(path, json=dict(body) if body is not None else None)
        if response.status_code >= 400:
            raise _error(response)
        return response.json()

    def recommend(
        self,
        user: str,
        history: Sequence[int] = (),
        *,
        k: int = 10,
        model: str | None = None,
        experiment: str | None = None,
    ) -> dict[str, Any]:
        """Top-k pins for a user from a model (default: the tenant's serving default) or
        through an experiment: ``{"pins", "model", "experiment", "arm", "audit_event"}``."""
        body = {"user": user, "history": list(history), "k": k}
        body |= {"model": model} if model else {}
        body |= {"experiment": experiment} if experiment else {}
        return dict(self.post("/v1/recommend", body))

    def experiment(self, name: str, action: str | None = None, **body: Any) -> dict[str, Any]:
        """An experiment's status, or an action on it (stop, simulate, decide, rollback)."""
        if action is None:
            return dict(self.get(f"/v1/experiments/{name}"))
        return dict(self.post(f"/v1/experiments/{name}/{action}", body or None))


def _body(purpose: str, options: ReadOptions) -> dict[str, Any]:
    if unknown := sorted(options.keys() - ReadOptions.__optional_keys__):
        # a misspelt option would otherwise read more than asked (e.g. every column)
        raise TypeError(f"a read takes no option {', '.join(map(repr, unknown))}")
    columns, shard, version = options.get("columns"), options.get("shard"), options.get("version")
    body: dict[str, Any] = {
        "purpose": purpose,
        "columns": list(columns) if columns is not None else None,
        "where": [_clause(c) for c in (options.get("where") or [])],
        "limit": options.get("limit"),
    }
    if shard is not None:
        rank, world = shard
        body["shard"] = {"rank": rank, "world": world}
    if version is not None:
        body["version"] = version
    return body


def _info(response: httpx.Response) -> dict[str, str]:
    return {k: v for k, v in response.headers.items() if k.startswith("x-warden-")}


def _read_table(response: httpx.Response) -> pa.Table:
    """The body as an Arrow table. With a known length it lands in one buffer, which the
    table (and the polars frame after it) then uses in place, without a copy."""
    declared = response.headers.get("content-length", "")
    if not declared.isdigit():
        stream = io.BufferedReader(_ChunkReader(response.iter_raw()), buffer_size=1 << 20)
        return pa_ipc.open_stream(pa.PythonFile(stream, mode="r")).read_all()
    size = int(declared)
    # From Arrow's memory pool, which keeps freed pages: a fresh bytearray of this size
    # costs more in page faults than the copy into it.
    body = pa.allocate_buffer(size)
    view = memoryview(body).cast("B")
    got = 0
    for chunk in response.iter_raw():
        end = got + len(chunk)
        if end > size:
            raise httpx.RemoteProtocolError("the response body is longer than its length")
        view[got:end] = chunk
        got = end
    if got != size:
        raise httpx.RemoteProtocolError(f"the response body ended after {got} of {size} bytes")
    return pa_ipc.open_stream(body).read_all()


@contextmanager
def _reading_ahead(response: httpx.Response) -> Iterator[None]:
    """Receive a large body READ_AHEAD bytes at a time, not httpcore's 64 KiB: each receive
    runs the whole HTTP stack in Python once (h11, httpcore, httpx), which cost more than the
    bytes (10M rows streamed, 720 MB: client CPU 0.50 -> 0.30 s, read time -16%). The
    connection's socket stream (httpcore's `network_stream` extension) is asked for more per
    read while this response is read, then left as it was; a small answer is read as before."""
    declared = response.headers.get("content-length", "")
    stream: Any = response.extensions.get("network_stream")
    read = getattr(stream, "read", None)
    if (declared.isdigit() and int(declared) <= READ_AHEAD) or not callable(read):
        yield
        return

    def read_ahead(max_bytes: int, timeout: float | None = None) -> bytes:
        data: bytes = read(max(max_bytes, READ_AHEAD), timeout)
        return data

    try:
        own = "read" in vars(stream)
        stream.read = read_ahead
    except (TypeError, AttributeError):  # a stream that takes no attribute: read as before
        own = None
    if own is None:
        yield
        return
    try:
        yield
    finally:
        if own:
            stream.read = read
        else:
            del stream.read


class _ChunkReader(io.RawIOBase):
    """A readable file over an iterator of byte chunks (an HTTP body as it arrives)."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._pending = memoryview(b"")

    def readable(self) -> bool:
        return True

    def readinto(self, target: Any) -> int:
        while not self._pending:
            chunk = next(self._chunks, None)
            if chunk is None:
                return 0
            self._pending = memoryview(chunk)
        n = min(len(target), len(self._pending))
        target[:n] = self._pending[:n]
        self._pending = self._pending[n:]
        return n


def _frames(body: BinaryIO) -> Iterator[pl.DataFrame]:
    """One polars frame per Arrow record batch of an IPC stream, as they arrive."""
    reader = pa_ipc.open_stream(pa.PythonFile(body, mode="r"))
    sent = False
    for batch in reader:
        sent = True
        yield pl.DataFrame(pl.from_arrow(batch))
    if not sent:  # no rows: one empty frame, so the caller still learns the columns
        yield pl.DataFrame(pl.from_arrow(reader.schema.empty_table()))


def _clause(clause: Mapping[str, Any] | Sequence[Any]) -> dict[str, Any]:
    if isinstance(clause, Mapping):
        return dict(clause)
    column, op, *rest = clause
    return {"column": column, "op": op, "value": rest[0] if rest else None}


def _error(response: httpx.Response) -> WardenAPIError:
    return _error_of(response.status_code, response.content)


def _error_of(status: int, content: bytes) -> WardenAPIError:
    try:
        body = json.loads(content)
        return WardenAPIError(status, body["error"], body["detail"])
    except (ValueError, KeyError, TypeError):
        return WardenAPIError(status, "HTTPError", content.decode(errors="replace")[:200])
