"""Red team 15b: a sandbox's gateway socket serves its own job token and nothing else, however
the request names its token.

The attack (high): the socket checked the *last* `Authorization` header (a dict of the raw
headers keeps the last), the read path authenticated the *first* (Starlette's `get`). A job
that sent someone else's token first and its own last was let through and read as that
someone: a person or service-account token its launcher put into the job (an env variable,
its command), or another live job's. The read escaped the job's scope (datasets, purpose,
segment) and the job's lineage (read from its own audited reads), so a `train` job could read
the generator's latent model for `evaluation` and its model would not say so.
"""

from __future__ import annotations

import secrets
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from warden.api.gateway_app import create_gateway_app
from warden.identity.caller import JOB_TOKEN_PREFIX
from warden.sandbox.gateway_socket import GatewaySocket

READ = "/v1/datasets/engagements/read"
BODY = {"purpose": "training", "columns": ["pin_id", "action"]}


@pytest.fixture
def socket_of_a_job(warden: Any) -> Iterator[tuple[str, str]]:
    """A gateway socket (the worker's app) and the job token it serves."""
    token = JOB_TOKEN_PREFIX + secrets.token_urlsafe(32)
    folder = Path(tempfile.mkdtemp(prefix="wgs-", dir="/tmp"))
    sock = GatewaySocket(create_gateway_app(warden.state), folder, "sbx-rt15b", token)
    sock.start()
    try:
        yield str(sock.path), token
    finally:
        sock.stop()


def _post(path: str, headers: list[tuple[str, str]]) -> httpx.Response:
    with httpx.Client(transport=httpx.HTTPTransport(uds=path), timeout=60) as http:
        return http.post(f"http://warden{READ}", json=BODY, headers=headers)


def test_a_second_token_sent_before_the_jobs_own_is_refused(
    warden: Any, socket_of_a_job: tuple[str, str]
) -> None:
    path, own = socket_of_a_job
    person = warden.tokens["alice"]  # may read engagements for training herself
    sent = [("authorization", f"Bearer {person}"), ("authorization", f"Bearer {own}")]
    answer = _post(path, sent)
    assert answer.status_code == 403, answer.text[:200]
    assert "x-warden-audit-event" not in answer.headers


@pytest.mark.parametrize("order", ["own first", "own twice"])
def test_any_second_authorization_header_is_refused(
    warden: Any, socket_of_a_job: tuple[str, str], order: str
) -> None:
    path, own = socket_of_a_job
    other = own if order == "own twice" else warden.tokens["alice"]
    sent = [("authorization", f"Bearer {own}"), ("authorization", f"Bearer {other}")]
    answer = _post(path, sent)
    assert answer.status_code == 403, answer.text[:200]


def test_a_persons_token_alone_is_refused_at_the_socket(
    warden: Any, socket_of_a_job: tuple[str, str]
) -> None:
    path, _ = socket_of_a_job
    answer = _post(path, [("authorization", f"Bearer {warden.tokens['alice']}")])
    assert answer.status_code == 403
