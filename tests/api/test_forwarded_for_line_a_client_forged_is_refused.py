"""A trusted proxy that appends its own `X-Forwarded-For` line (HAProxy's `option forwardfor`
does) after one the client sent is read as one list, in order, as RFC 9110 combines repeated
fields: the client's first line is not the source.

Red team 16a: the edge read only the first `X-Forwarded-For` line, the one the client wrote,
so behind such a proxy every request could name its own source: refusals were recorded under
an address the caller chose, and one caller split into as many sources as it liked (each with
its own refusal allowance)."""

from __future__ import annotations

from fastapi.testclient import TestClient

from tests.api import test_edge
from tests.api.test_edge import Clock, edge_of, refused
from tests.conftest import WardenHarness

# the edge tests' fixtures: small windows, a clock the test moves
edge_env = test_edge.edge_env
edged = test_edge.edged

PROXY = ("10.1.2.3", 4000)


def _behind_proxy(warden: WardenHarness) -> None:
    edge = edge_of(warden)
    edge.settings = edge.settings.model_copy(update={"edge_trusted_proxies": ["10.0.0.0/8"]})


def test_a_second_forwarded_line_is_read_after_the_first(
    edged: tuple[WardenHarness, Clock],
) -> None:
    warden, _ = edged
    _behind_proxy(warden)
    edge = edge_of(warden)
    # the client forged the first line; the proxy appended the address it saw
    lines = [(b"x-forwarded-for", b"198.51.100.66"), (b"x-forwarded-for", b"203.0.113.7")]
    assert edge.address({"client": PROXY, "headers": lines}) == "203.0.113.7"
    # a proxy that joins into one line gives the same source
    joined = [(b"x-forwarded-for", b"198.51.100.66, 203.0.113.7")]
    assert edge.address({"client": PROXY, "headers": joined}) == "203.0.113.7"
    # behind two trusted proxies, each appending a line, the first untrusted hop from the right
    three = [*lines, (b"X-Forwarded-For", b"10.9.9.9")]
    assert edge.address({"client": PROXY, "headers": three}) == "203.0.113.7"


def test_a_refusal_behind_an_appending_proxy_records_the_address_the_proxy_saw(
    edged: tuple[WardenHarness, Clock],
) -> None:
    warden, _ = edged
    _behind_proxy(warden)
    client = TestClient(warden.app, client=PROXY)  # type: ignore[arg-type]
    headers = [("x-forwarded-for", "198.51.100.66"), ("x-forwarded-for", "203.0.113.7")]
    r = client.get("/v1/audit/events", headers=headers)
    assert r.status_code == 401
    [event] = refused(warden)
    assert event.details["source"] == "203.0.113.7"
