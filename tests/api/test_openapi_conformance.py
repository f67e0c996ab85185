"""The OpenAPI document matches the server: a bounded schemathesis run, every check, no failure.

Schemathesis (the CLI, as a user would run it) tests a real uvicorn serving a seeded Warden on
SQLite, authenticated as the tenant's admin so it reaches the real routes. Bounded: a fixed
seed, the coverage phase (every operation's boundary and invalid inputs), three fuzzed examples
per operation, short stateful sequences, one worker; about 30 s on a loaded 2-core machine.

So that nothing the run does can hide a failure later in the run:
- the edge's rate limit is set out of reach (its 429s are tested in test_edge.py); a run
  answered 429 from some point on would test nothing after it;
- no Docker engine answers (sandbox launches are 503, a documented answer) and no job worker
  runs, so no container starts;
- afterwards the admin must still be allowed everything it was, and most operations must
  have answered 2xx at least once (the run was not locked out).

Where a service checks more than JSON Schema can say (cross-field rules, an opaque cursor), the
operation may also answer 400 or 422 to schema-valid input: listed in CONFIG, each with why.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Seeded, WardenHarness, open_seeded

# positive_data_acceptance: schema-valid input the service may still refuse, and why.
SEMANTIC = {
    ("GET", "/v1/audit/events"): "the cursor is opaque: only one the server made is valid (400)",
    ("POST", "/v1/jobs"): "a job needs a dataset unless it brings a command; steps by kind (422)",
    ("POST", "/v1/sandboxes"): "a command is required unless interactive (422)",
    ("POST", "/v1/policy/rules"): "each line must parse as a Casbin rule of a known type (422)",
    ("POST", "/v1/policy/check"): "the subject and object must name known things (422)",
}
ACCEPTED = ["2xx", "3xx", "401", "403", "404", "409", "429", "5xx"]


def config() -> str:
    lines = [
        "# 405 with a full `Allow` on every path, probed with two methods (not all eight): time.",
        "[phases.coverage]",
        'unexpected-methods = ["PATCH", "TRACE"]',
        "",
        "[phases.stateful]",
        "max-steps = 6",
        "",
    ]
    for (method, path), why in SEMANTIC.items():
        statuses = json.dumps([*ACCEPTED, "400", "422"])
        lines += [
            f"# {why}",
            "[[operations]]",
            f'include-path = "{path}"',
            f'include-method = "{method}"',
            f"checks.positive_data_acceptance.expected-statuses = {statuses}",
            "",
        ]
    return "\n".join(lines)


@pytest.fixture
def served(
    seeded_sqlite: Seeded, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[WardenHarness, str]]:
    from warden.api.background import serve_in_thread
    from warden.config import Settings

    monkeypatch.setenv("WARDEN_JOBS_WORKER", "false")
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    db = tmp_path / "warden.db"
    assert seeded_sqlite.sqlite is not None
    shutil.copyfile(seeded_sqlite.sqlite, db)  # the harness's seeded state, not seeded again
    settings = Settings(
        data_dir=tmp_path / "data",
        config_dir=tmp_path / "config",
        database_url=f"sqlite:///{db}",
        mask_key="test-mask-key",
        edge_refusals_per_window=10**9,
    )
    harness = open_seeded(seeded_sqlite, settings)
    server = serve_in_thread(harness.app)  # type: ignore[arg-type]
    yield harness, server.url
    server.stop()
    harness.close()


@pytest.mark.slow
def test_the_openapi_document_matches_the_server(
    served: tuple[WardenHarness, str], tmp_path: Path
) -> None:
    warden, url = served
    (tmp_path / "schemathesis.toml").write_text(config())
    report = tmp_path / "report.ndjson"
    command = [
        str(Path(sys.executable).with_name("schemathesis")),
        "--config-file",
        str(tmp_path / "schemathesis.toml"),
        "run",
        f"{url}/openapi.json",
        "--checks",
        "all",
        "--header",
        f"Authorization: Bearer {warden.tokens['admin']}",
        "--max-examples",
        "3",
        "--seed",
        "20261202",
        "--workers",
        "1",
        "--no-shrink",
        "--request-timeout",
        "20",
        "--report",
        "ndjson",
        "--report-ndjson-path",
        str(report),
    ]
    env = {**os.environ, "NO_COLOR": "1"}
    done = subprocess.run(  # noqa: S603
        command, capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path
    )
    assert done.returncode == 0, done.stdout[-12000:] + done.stderr[-4000:]

    # The run reached the real routes, as the admin, to the end.
    answered = statuses_by_operation(report)
    assert len(answered) >= 40, sorted(answered)
    succeeded = [op for op, codes in answered.items() if any(200 <= c < 300 for c in codes)]
    assert len(succeeded) >= 15, answered
    for path in ("/v1/policy/rules", "/v1/audit/events", "/v1/principals"):
        r = warden.http.get(path, headers=warden.as_("admin"))
        assert r.status_code == 200, (path, r.text)


def statuses_by_operation(report: Path) -> dict[str, set[int]]:
    """{"GET /v1/…": {status codes}} from the run's NDJSON event stream."""
    answered: dict[str, set[int]] = {}

    def walk(node: Any, label: str | None) -> None:
        if isinstance(node, dict):
            label = node.get("label", label) if isinstance(node.get("label"), str) else label
            status = node.get("status_code")
            if label and isinstance(status, int):
                answered.setdefault(label, set()).add(status)
            for value in node.values():
                walk(value, label)
        elif isinstance(node, list):
            for value in node:
                walk(value, label)

    for line in report.read_text().splitlines():
        walk(json.loads(line), None)
    return answered


def test_every_error_is_declared_in_the_one_error_shape(warden: WardenHarness) -> None:
    document = warden.http.get("/openapi.json").json()
    schemas = document["components"]["schemas"]
    assert "HTTPValidationError" not in schemas
    assert set(schemas["Error"]["required"]) == {"error", "detail"}
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            codes = {int(c) for c in operation["responses"]}
            assert {413, 429, 500} <= codes, (method, path)
            if path.startswith("/v1/"):
                assert {401, 403, 404, 503} <= codes, (method, path)
                assert operation["security"] == [{"bearer": []}]
            for code, response in operation["responses"].items():
                if int(code) >= 400:
                    schema = response["content"]["application/json"]["schema"]
                    assert schema == {"$ref": "#/components/schemas/Error"}, (method, path, code)
            if int("401") in codes:
                assert response_header(operation, 401, "WWW-Authenticate")
            assert response_header(operation, 429, "Retry-After")
    read = document["paths"]["/v1/datasets/{name}/read"]["post"]
    body = read["requestBody"]["content"]["application/json"]["schema"]
    assert body == {"$ref": "#/components/schemas/ReadRequest"}
    assert "purpose" in schemas["ReadRequest"]["required"]
    assert "FilterClause" in schemas


def response_header(operation: dict[str, Any], code: int, name: str) -> bool:
    return bool(operation["responses"][str(code)].get("headers", {}).get(name, {}).get("required"))


def test_error_answers_carry_the_headers_http_asks_for(warden: WardenHarness) -> None:
    r = warden.http.get("/v1/audit/events")
    assert r.status_code == 401 and r.headers["www-authenticate"] == 'Bearer realm="warden"'
    r = warden.http.put("/v1/principals", headers=warden.as_("admin"))
    assert r.status_code == 405 and set(r.headers["allow"].split(", ")) == {"GET", "POST"}
    r = warden.http.post("/v1/access/requests", json={"dataset": 1}, headers=warden.as_("admin"))
    assert r.status_code == 422
    body = r.json()
    assert body["error"] == "ValidationError"
    assert all(set(p) == {"loc", "msg"} for p in body["detail"])
