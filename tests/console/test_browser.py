"""The console end to end in a real headless Chromium against a live uvicorn server: two
stewards reach a quorum, the requester reads through the API, a revoke in the console refuses
the next read; self-approval, a CSRF-less POST, a stored script, an expired session, and an
auditor's search. Each test keeps a screenshot of its last page (test-artifacts/console/)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.access.conftest import Access
from tests.console.browser import Page, chromium  # noqa: F401 - the module's browser

# One backend is enough here: the fast tests (test_security.py) cover both.
pytestmark = [pytest.mark.slow, pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)]


@pytest.fixture
def access(warden: Any) -> Access:
    return Access(warden)


@pytest.fixture
def page(
    chromium: Any,  # noqa: F811
    access: Access,
    live_warden: Any,
    request: pytest.FixtureRequest,
) -> Iterator[Page]:
    shown = Page(chromium, live_warden.url)
    yield shown
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.name)
    try:
        shown.screenshot(name)
    finally:
        chromium.delete_all_cookies()


def _read(access: Access, url: str, who: str) -> httpx.Response:
    return httpx.post(
        f"{url}/v1/datasets/users/read",
        json={"purpose": "analytics", "limit": 3},
        headers=access.as_(who),
        timeout=60,
    )


def test_two_stewards_reach_quorum_the_read_succeeds_and_a_revoke_refuses_the_next(
    page: Page, access: Access
) -> None:
    req = access.ask(
        "alice",
        dataset="users",
        purpose="analytics",
        duration="3d",
        justification="Churn model for the EU launch; pseudonymous user ids are enough.",
    )
    rid = req["id"]
    assert _read(access, page.url, "alice").status_code in (403, 404)

    page.sign_in(access.w.tokens["sam"], "/console/reviews")
    card = page.find(f"#request-{rid}")
    assert "0 of 2 approvals" in card.text and "Churn model" in card.text
    assert "masked" in card.text and "pii" in card.text
    page.screenshot("review-page")
    page.find(f"#comment-{rid}").send_keys("Fine for churn work")
    page.submit_and_wait(page.find(f"#approve-{rid}"))
    assert "recorded" in page.find("#done").text
    assert _read(access, page.url, "alice").status_code in (403, 404)  # one of two
    page.sign_out()

    # The second steward, by keyboard only: type a comment, Tab to Approve, Enter.
    from selenium.webdriver.common.keys import Keys

    page.sign_in(access.w.tokens["tess"], "/console/reviews")
    assert "1 of 2 approvals (sam)" in page.find(f"#request-{rid}").text
    comment = page.find(f"#comment-{rid}")
    comment.send_keys("ok")
    comment.send_keys(Keys.TAB)
    focused = page.driver.switch_to.active_element
    assert focused.get_attribute("id") == f"approve-{rid}"
    page.submit_and_wait(focused, keys=True)
    done = page.find("#done").text
    assert "Approved: quorum reached" in done
    grant_id = access.show("alice", rid)["grant_id"]
    assert grant_id in done

    read = _read(access, page.url, "alice")
    assert read.status_code == 200, read.text

    page.open("/console/grants")
    page.find(f"#reason-{grant_id}").send_keys("study finished")
    page.submit_and_wait(page.find(f"#revoke-{grant_id}"))
    assert "revoked" in page.find("#done").text
    assert _read(access, page.url, "alice").status_code in (403, 404)
    events = [e for e in access.events("access.") if e["details"].get("channel") == "console"]
    assert {e["action"] for e in events} >= {
        "access.request.reviewed",
        "access.grant.created",
        "access.grant.revoked",
    }


def test_self_approval_is_refused_in_the_browser(page: Page, access: Access) -> None:
    access.add_person("stella", ["steward", "ml_engineer"])
    req = access.ask("stella", dataset="pins", purpose="analytics", duration="1d")
    page.sign_in(access.w.tokens["stella"], f"/console/requests/{req['id']}")
    page.submit_and_wait(page.find(f"#approve-{req['id']}"))
    error = page.find("#error").text
    assert "Forbidden" in error
    assert "a requester never reviews their own request, whatever their roles" in error
    assert access.show("stella", req["id"])["approvals"] == []


def test_a_post_without_its_csrf_token_is_refused_in_the_browser(
    page: Page, access: Access
) -> None:
    req = access.ask("alice", dataset="pins", purpose="analytics", duration="1d")
    page.sign_in(access.w.tokens["sam"], "/console/reviews")
    page.find(f"#approve-{req['id']}")
    page.driver.execute_script(
        "document.querySelectorAll('input[name=csrf]').forEach(function (e) { e.remove(); });"
    )
    page.submit_and_wait(page.find(f"#approve-{req['id']}"))
    assert "CSRF" in page.find("#error").text
    assert access.show("alice", req["id"])["approvals"] == []
    assert access.events("console.csrf")[-1]["actor"] == "sam"


def test_a_stored_script_in_a_justification_does_not_run(page: Page, access: Access) -> None:
    evil = "<script>document.title='pwned'</script><img src=x onerror=\"document.title='pwned'\">"
    req = access.ask(
        "alice", dataset="pins", purpose="analytics", duration="1d", justification=evil
    )
    page.sign_in(access.w.tokens["sam"], f"/console/requests/{req['id']}")
    shown = page.find(f"#request-{req['id']} .justification").text
    assert shown == evil  # shown as text, every character
    assert page.driver.title != "pwned"
    assert page.all(f"#request-{req['id']} .justification script") == []
    assert page.all(f"#request-{req['id']} .justification img") == []
    page.open("/console/reviews")
    assert page.driver.title != "pwned"


def test_an_expired_session_is_sent_to_sign_in_and_back(page: Page, access: Access) -> None:
    page.sign_in(access.w.tokens["sam"], "/console/grants")
    access.clock.advance(seconds=access.w.settings.console_idle_timeout_s + 1)
    page.open("/console/reviews")
    assert "idle too long" in page.find("#ended").text
    assert "/console/sign-in" in page.driver.current_url
    page.find("#token").send_keys(access.w.tokens["sam"])
    page.submit_and_wait(page.find("#sign-in"))
    assert page.driver.current_url.endswith("/console/reviews")
    assert page.find("#signed-in-as").text == "sam"


def test_an_auditor_finds_the_approval_in_the_log(page: Page, access: Access) -> None:
    req = access.ask("alice", dataset="pins", purpose="analytics", duration="1d")
    access.approve("sam", req["id"])
    page.sign_in(access.w.tokens["admin"], "/console/audit")
    page.find("#action").send_keys("access.request.reviewed")
    page.find("#actor").send_keys("sam")
    page.submit_and_wait(page.find("#search"))
    rows = page.all("#events tbody tr")
    assert len(rows) == 1 and "access.request.reviewed" in rows[0].text
    page.submit_and_wait(rows[0].find_element("css selector", "a"))
    record = page.text()
    assert req["id"] in record and "prev_hash" in record
    page.open("/console/audit")
    page.submit_and_wait(page.find("#verify"))
    assert "Verified" in page.find("#chain-status").text
