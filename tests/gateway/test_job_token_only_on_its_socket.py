"""Red team 16b: a job token speaks only on its own sandbox's gateway socket.

The attack (medium): the TCP API accepted a live job's token as well (same scope, same
audit). A job's log is read by more people than its launcher (the job's owner, admins, anyone
its output is shared with); a job that prints its `WARDEN_TOKEN` (a debug line, a traceback
of its environment) let each of them read as the job, with its datasets and purpose, from
anywhere that reaches the API, for as long as it ran. Over TCP a job token is now any bad
token: 401 "invalid token" in the one error shape, audited like other bad tokens, the same
answer a made-up one gets, so the refusal does not say that the token is a live job's.
"""

from __future__ import annotations

import secrets
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.sealed_rows import alices_sandbox
from warden.identity.caller import JOB_TOKEN_PREFIX, TOKEN_PREFIX
from warden.sandbox.gateway_socket import GatewaySocket

READ = "/v1/datasets/engagements/read"
BODY = {"purpose": "training", "columns": ["pin_id", "action"], "limit": 3}


@pytest.fixture
def live_job(warden: Any) -> Iterator[tuple[str, str]]:
    """alice's running ML sandbox, its job token and its gateway socket (the API's app)."""
    sandbox_id, token = alices_sandbox(warden)
    folder = Path(tempfile.mkdtemp(prefix="wgs-", dir="/tmp"))
    sock = GatewaySocket(warden.app, folder, sandbox_id, token)
    sock.start()
    try:
        yield str(sock.path), token
    finally:
        sock.stop()


def _bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def test_a_live_jobs_token_reads_on_its_socket(live_job: tuple[str, str]) -> None:
    path, token = live_job
    with httpx.Client(transport=httpx.HTTPTransport(uds=path), timeout=60) as http:
        assert http.get("http://warden/v1/me", headers=_bearer(token)).json()["kind"] == "job"
        answer = http.post(f"http://warden{READ}", json=BODY, headers=_bearer(token))
    assert answer.status_code == 200, answer.text[:300]


@pytest.mark.parametrize(("method", "path"), [("GET", "/v1/me"), ("POST", READ)])
def test_a_live_jobs_token_over_tcp_is_any_bad_token(
    warden: Any, live_job: tuple[str, str], method: str, path: str
) -> None:
    _, token = live_job
    made_up = {
        "job": JOB_TOKEN_PREFIX + secrets.token_urlsafe(32),
        "api": TOKEN_PREFIX + secrets.token_urlsafe(32),
    }
    answers = {
        who: warden.http.request(method, path, json=BODY, headers=_bearer(secret))
        for who, secret in [("live", token), *made_up.items()]
    }
    for who, answer in answers.items():
        assert answer.status_code == 401, (who, answer.text[:300])
        assert answer.json() == {"error": "Unauthenticated", "detail": "invalid token"}, who
    # audited like any bad token: a refusal of someone anonymous, never a read by the job
    action = "dataset.read" if method == "POST" else "http.refused"
    refused = [e for e in warden.audit_events(action=action, decision="deny")]
    assert len([e for e in refused if e["actor"] == "anonymous"]) >= len(answers)
    assert not [e for e in refused if e["actor"].startswith("job-")]
    assert not warden.audit_events(action="dataset.read", decision="allow")
