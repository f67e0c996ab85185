"""Fixtures for the console tests: the access harness (stewards sam and tess, owner olga,
second admin ada) and a cookie jar per person that signs in through the console's form."""

from __future__ import annotations

import re
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.access.conftest import Access

_CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def csrf_in(html: str) -> str:
    match = _CSRF.search(html)
    assert match, "no CSRF field on the page"
    return match.group(1)


class Person:
    """One person's browser-like client (its own cookies), signed in with their API token."""

    def __init__(self, app: Any, token: str, *, base_url: str = "http://testserver") -> None:
        self.token = token
        self.http = TestClient(app, base_url=base_url, follow_redirects=False)

    def sign_in(self) -> Any:
        page = self.http.get("/console/sign-in")
        assert page.status_code == 200, page.text
        r = self.http.post(
            "/console/sign-in",
            data={"csrf": csrf_in(page.text), "token": self.token, "next": "/console/reviews"},
        )
        assert r.status_code == 303, r.text
        return r

    def get(self, path: str, **params: Any) -> Any:
        return self.http.get(path, params=params) if params else self.http.get(path)

    def post(self, path: str, form: dict[str, str], *, page: str = "/console") -> Any:
        """POST `form` with the CSRF token a page of this session carries."""
        shown = self.http.get(page)
        assert shown.status_code == 200, shown.text
        return self.http.post(path, data={"csrf": csrf_in(shown.text), **form})

    def close(self) -> None:
        self.http.close()


@pytest.fixture
def access(warden: Any) -> Access:
    return Access(warden)


@pytest.fixture
def people(access: Access) -> Any:
    made: list[Person] = []

    def person(name: str, **kwargs: Any) -> Person:
        p = Person(access.w.app, access.w.tokens[name], **kwargs)
        made.append(p)
        return p

    yield person
    for p in made:
        p.close()
