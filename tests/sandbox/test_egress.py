"""Egress from app-dev through the platform's allowlisting proxy (Squid from Debian), on the
real Docker Engine: two HTTP servers on this host, one allowed and one not; the platform's own
API refused; no direct route; every connection audited with the sandbox and the person."""

from __future__ import annotations

import dataclasses
import http.server
import shutil
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import WardenHarness
from tests.debian import apt_install, can_install
from tests.sandbox.conftest import DEVELOPER, REQUIRE, Sandboxes

pytestmark = pytest.mark.docker

PROBE = """
import os, sys, socket, urllib.request, urllib.error
def get(url):
    try:
        with urllib.request.urlopen(url, timeout=20) as answer:
            return f"{answer.status}:{answer.read().decode()}"
    except urllib.error.HTTPError as exc:
        return f"{exc.code}:refused"
    except Exception as exc:
        return f"error:{type(exc).__name__}"
gateway = os.environ["HTTP_PROXY"].split("//")[1].split(":")[0]
for name, port in zip(("allowed", "other", "api"), sys.argv[1:4]):
    print(name, get(f"http://127.0.0.1:{port}/"))
try:
    socket.create_connection((gateway, int(sys.argv[1])), timeout=5)
    print("direct connected")
except OSError as exc:
    print("direct", type(exc).__name__)
"""


@pytest.fixture(scope="session")
def squid() -> str:
    found = shutil.which("squid") or shutil.which("squid", path="/usr/sbin")
    if found is None and can_install():
        apt_install("squid")
        found = shutil.which("squid", path="/usr/sbin:/usr/bin")
    if found is None:
        if REQUIRE:
            pytest.fail("WARDEN_REQUIRE_DOCKER is set but Squid could not be installed")
        pytest.skip("Squid is not installed (apt-get install -y squid)")
    return found


class _Answer(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
        body = self.server.body  # type: ignore[attr-defined]
        self.send_response(200)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def servers() -> Iterator[tuple[int, int]]:
    made = []
    for body in (b"allowed-server", b"other-server"):
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Answer)
        server.body = body  # type: ignore[attr-defined]
        threading.Thread(target=server.serve_forever, daemon=True).start()
        made.append(server)
    yield made[0].server_address[1], made[1].server_address[1]
    for server in made:
        server.shutdown()
        server.server_close()


def allow_app_dev(sandboxes: Sandboxes, monkeypatch: pytest.MonkeyPatch, *allow: str) -> None:
    """The app-dev profile with `allow` as its egress allowlist, for this test."""
    runtime = sandboxes.runtime
    profiles = runtime.profiles()
    widened = dataclasses.replace(profiles["app-dev"], egress_allow=allow)
    monkeypatch.setattr(runtime, "profiles", lambda: {**profiles, "app-dev": widened})


def test_egress_allows_only_the_profile_s_hosts_and_audits_each_connection(
    squid: str,
    sandboxes: Sandboxes,
    live_warden: WardenHarness,
    servers: tuple[int, int],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    allowed, other = servers
    api_port = int(str(live_warden.url).rsplit(":", 1)[1])  # type: ignore[attr-defined]
    runtime = sandboxes.runtime
    allow_app_dev(sandboxes, monkeypatch, f"127.0.0.1:{allowed}")

    row, out = sandboxes.run(
        DEVELOPER,
        ["python3", "-c", PROBE, str(allowed), str(other), str(api_port)],
        segment="app-dev",
    )
    assert row["status"] == "succeeded", out
    assert "allowed 200:allowed-server" in out
    assert "other 403:refused" in out
    assert "api 403:refused" in out
    assert "direct connected" not in out and "direct " in out

    def egress() -> list[dict[str, Any]]:
        return live_warden.audit_events(action="sandbox.egress")

    deadline = time.monotonic() + 60
    while len(egress()) < 3 and time.monotonic() < deadline:
        time.sleep(0.2)
    events = egress()
    by_port = {e["details"]["destination"].rsplit(":", 1)[-1].strip("/"): e for e in events}
    assert by_port[str(allowed)]["decision"] == "allow"
    assert by_port[str(other)]["decision"] == "deny"
    assert by_port[str(api_port)]["decision"] == "deny"

    for event in events:
        assert event["details"]["sandbox"] == row["id"]
        assert event["details"]["person"] == DEVELOPER
        assert event["on_behalf_of"] == DEVELOPER
    # A line Squid writes just after the sandbox is gone (a connection closed as it died) is
    # still that sandbox's, until its network's subnet is another sandbox's.
    from warden.sandbox.egress import Hit

    address = events[0]["details"]["client"]
    owner = runtime.egress_clients.owner(address)
    assert owner is not None and owner.id == row["id"]
    late = "http://127.0.0.1:9/late"
    runtime._audit_egress(Hit(address, False, "GET", late, "TCP_DENIED/403"))
    (event,) = [e for e in egress() if e["details"]["destination"] == late]
    assert event["details"]["sandbox"] == row["id"] and event["on_behalf_of"] == DEVELOPER
    # the session record names where it went (not what it sent)
    got = live_warden.http.get(
        "/v1/sandboxes/sessions", params={"sandbox": row["id"]}, headers=live_warden.as_(DEVELOPER)
    )
    (session,) = got.json()["sessions"]
    assert {f"127.0.0.1:{allowed}", f"127.0.0.1:{other}"} <= set(session["egress"])


NAMED_PROBE = """
import sys, urllib.request, urllib.error
try:
    with urllib.request.urlopen(sys.argv[1], timeout=20) as answer:
        print("named", answer.status, answer.read().decode())
except urllib.error.HTTPError as exc:
    print("named", exc.code)
"""


def test_an_allowed_name_that_resolves_to_this_host_is_refused(
    squid: str,
    sandboxes: Sandboxes,
    servers: tuple[int, int],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A name on the allowlist is no way to this host's loopback services (SeaweedFS's filer
    checks no credentials): `localhost` resolves to 127.0.0.1 (as a name whose DNS the
    developer controls could), and only an entry naming the address allows it."""
    allowed, _ = servers
    allow_app_dev(sandboxes, monkeypatch, f"localhost:{allowed}")
    row, out = sandboxes.run(
        DEVELOPER,
        ["python3", "-c", NAMED_PROBE, f"http://localhost:{allowed}/"],
        segment="app-dev",
    )
    assert row["status"] == "succeeded", out
    assert "named 403" in out and "allowed-server" not in out, out


def test_without_an_allowlist_there_is_no_proxy_at_all(sandboxes: Sandboxes) -> None:
    row, out = sandboxes.run(
        DEVELOPER,
        ["sh", "-c", 'echo "proxy=${HTTP_PROXY:-none}"'],
        segment="app-dev",
    )
    assert "proxy=none" in out


def test_profiles_keep_egress_to_app_dev_and_well_formed(tmp_path: Any) -> None:
    import tomllib

    from warden.config import get_settings
    from warden.errors import Unprocessable
    from warden.sandbox.egress import parse_line
    from warden.sandbox.profiles import _profile

    path = get_settings().sandbox.profiles_path
    segments = tomllib.loads(path.read_text())["segments"]
    with pytest.raises(Unprocessable, match="egress_allow needs network 'internal'"):
        _profile(path, "ml", {**segments["ml"], "egress_allow": ["pypi.org:443"]})
    with pytest.raises(Unprocessable, match="use host:port"):
        _profile(path, "app-dev", {**segments["app-dev"], "egress_allow": ["pypi.org"]})
    hit = parse_line("1764681600.123 172.21.0.2 TCP_DENIED/403 CONNECT evil.example:443\n")
    assert hit is not None and not hit.allowed and hit.client == "172.21.0.2"
    assert parse_line("1 127.0.0.1 NONE_NONE/000 NONE error:transaction-end-before-headers") is None


def test_a_busy_database_delays_an_egress_event_and_never_drops_it(tmp_path: Any) -> None:
    """The proxy's log follower hands each hit on until it is audited: a write that fails (the
    SQLite writer queue timing out on a loaded host) is tried again, and the hit counts as read
    only once it is taken, exactly once."""
    from warden.sandbox.egress import EgressProxy, Hit

    taken: list[Hit] = []
    failures = {"left": 3}

    def on_hit(hit: Hit) -> None:
        if failures["left"]:
            failures["left"] -= 1
            raise RuntimeError("database is locked (writer queue)")
        taken.append(hit)

    proxy = EgressProxy(tmp_path, [], [], on_hit)
    log = tmp_path / "access.log"
    log.write_text(
        "1.0 172.21.0.2 TCP_DENIED/403 GET http://127.0.0.1:9/\n"
        "2.0 172.21.0.2 TCP_MISS/200 GET http://127.0.0.1:8/\n"
    )
    follower = threading.Thread(target=proxy._follow, args=(log,), daemon=True)
    follower.start()
    try:
        assert proxy.caught_up(timeout=60)
    finally:
        proxy._stop.set()
        follower.join(timeout=10)
    assert [h.destination for h in taken] == ["http://127.0.0.1:9/", "http://127.0.0.1:8/"]
    assert failures["left"] == 0


def test_a_proxy_client_is_named_by_its_sandbox_s_subnet_until_another_has_it() -> None:
    from warden.sandbox.egress import Attribution

    names: Attribution[str] = Attribution(kept=2)
    names.note("172.30.0.0/16", "a", "row a")
    assert names.owner("172.30.0.2") == "row a" and names.noted("a")
    assert names.owner("172.31.0.2") is None and names.owner("not an address") is None
    names.end("a")  # ended: its late lines are still its own
    assert names.owner("172.30.0.2") == "row a" and not names.noted("a")
    names.note("172.30.0.0/16", "b", "row b")  # the subnet is another sandbox's now
    assert names.owner("172.30.0.2") == "row b"
    names.end("b")
    for i, subnet in enumerate(("10.1.0.0/24", "10.2.0.0/24")):
        names.note(subnet, str(i), f"row {i}")
        names.end(str(i))
    assert names.owner("172.30.0.2") is None  # only the newest `kept` ended ones are kept
    assert names.owner("10.2.0.9") == "row 1"
