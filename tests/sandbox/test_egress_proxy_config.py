"""The app-dev egress proxy runs on the host: a name on an allowlist must not lead to the
host's own loopback services, link-local metadata or private networks (red team, round 13;
the Docker test beside it, test_egress.py, tries it through a real sandbox).

Attack (a developer in an app-dev sandbox whose profile allows some `egress_allow` host):

1. Squid (`sandbox/egress.py::squid_config`) listens on the host and allows a request when
   its *name* is on the allowlist (`dstdomain`, subdomains included for a `.domain` entry)
   and its port matches; it refuses only the platform API's port (`refuse_ports`).
2. Make an allowlisted name resolve to 127.0.0.1 (a name under an allowlisted `.domain`
   whose DNS you control, DNS rebinding, or an operator's `localhost:PORT` for a dev
   server), on the port of a loopback-only service: SeaweedFS's filer
   (`scripts/seaweedfs-up.sh`: "the filer's own HTTP port does not check S3 credentials, so
   nothing but this host may reach any of them"), its S3 port, PostgreSQL, the OTLP
   collector, or a cloud metadata address (169.254.169.254).
3. Squid, being "this host", connects: the dataset files in the bucket (every tenant's) are
   one GET away from the app-dev segment, which must never reach data.

Leak: governed data files (and other host-only services) to the app-dev segment, through
the one door it has. Severity: low/medium (needs a suitable allowlist entry or DNS), but the
guard is one line.

Suggested fix (`warden/sandbox/egress.py::squid_config`): before any allow, `http_access
deny to_localhost`, `acl to_linklocal dst 169.254.0.0/16 fe80::/10` denied, and deny the
host's own addresses and private ranges (`dst 10.0.0.0/8 172.16.0.0/12 192.168.0.0/16`)
unless an entry names that address explicitly.
"""

from __future__ import annotations

from pathlib import Path

from warden.sandbox.egress import Destination, squid_config


def _rules(config: str) -> list[str]:
    return [line for line in config.splitlines() if line.startswith("http_access")]


def test_the_egress_proxy_refuses_loopback_and_link_local_before_any_allow(
    tmp_path: Path,
) -> None:
    config = squid_config(
        tmp_path, 3128, [Destination.parse(".example.dev:443")], refuse_ports=[8000]
    )
    rules = _rules(config)
    first_allow = next(i for i, r in enumerate(rules) if r.startswith("http_access allow"))
    before = rules[:first_allow]
    assert any("to_localhost" in r and "deny" in r for r in before), (
        "an allowlisted name resolving to 127.0.0.1 reaches the host's loopback services "
        f"(SeaweedFS's credential-free filer among them): {rules}"
    )
    assert any("169.254" in config and "deny" in r for r in before), rules


def test_an_entry_naming_an_address_is_allowed_before_the_private_ranges_are_refused(
    tmp_path: Path,
) -> None:
    config = squid_config(
        tmp_path,
        3128,
        [Destination.parse("10.1.2.3:8080"), Destination.parse("pypi.org:443")],
        refuse_ports=[8000],
    )
    rules = _rules(config)
    address_allow = next(i for i, r in enumerate(rules) if "allow0_host" in r)
    private_deny = rules.index("http_access deny to_private")
    name_allow = next(i for i, r in enumerate(rules) if "allow1_host" in r)
    assert address_allow < private_deny < name_allow, rules
    assert rules[-1] == "http_access deny all"
