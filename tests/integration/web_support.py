"""Fixtures for the admin web tests: the app in-process, an administrator, a token, a logged-in client.

Import the fixtures by name in a test module:
    from tests.integration.web_support import admin, api, browser_client, web_app  # noqa: F401
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
from fastapi.testclient import TestClient

from services.admin import users
from services.app import App
from services.web.app import create_app
from shared.db import transaction

ADMIN = ("admin", "correct horse battery")


@pytest.fixture
def web_app(app: App):
    return create_app(app)


@pytest.fixture
def admin(app: App) -> str:
    """The first administrator, and a bearer token of theirs."""
    with transaction(app.pool) as conn:
        users.create_user(conn, *ADMIN)
        return users.create_token(conn, ADMIN[0], "tests")


@pytest.fixture
def api(web_app, admin: str) -> Iterator[TestClient]:
    """An API client with a bearer token."""
    with TestClient(web_app, headers={"Authorization": f"Bearer {admin}"}) as client:
        yield client


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found, "no CSRF token in the page"
    return found.group(1)


def log_in(client: TestClient, username: str = ADMIN[0], password: str = ADMIN[1]):
    page = client.get("/login")
    return client.post("/login", data={"username": username, "password": password,
                                       "csrf_token": csrf_of(page.text), "next": "/"},
                       follow_redirects=False)


@pytest.fixture
def browser_client(web_app, admin: str) -> Iterator[TestClient]:
    """A logged-in page client (session cookie); `.csrf` holds the session's CSRF token."""
    with TestClient(web_app) as client:
        assert log_in(client).status_code == 303
        client.csrf = csrf_of(client.get("/mailboxes").text)  # type: ignore[attr-defined]
        yield client


CHROMIUM = "/usr/bin/chromium"


@contextmanager
def chromium_page(base_url: str) -> Iterator[Any]:
    """A Playwright page in Debian's Chromium (no browser download) that may reach only the loopback.

    Any request to another host is aborted and fails the test afterwards, as
    does a Content-Security-Policy violation reported on the console.
    """
    # scripts/setup.sh --test installs it: missing, the browser tests fail rather than hide.
    assert Path(CHROMIUM).exists(), "Debian's chromium package is not installed (apt-get install -y chromium)"
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        context = browser.new_context(base_url=base_url)
        blocked: list[str] = []

        def loopback_only(route: Any) -> None:
            if urlparse(route.request.url).hostname in ("127.0.0.1", "localhost"):
                route.continue_()
            else:
                blocked.append(route.request.url)
                route.abort()

        context.route("**/*", loopback_only)
        tab = context.new_page()
        errors: list[str] = []
        tab.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        try:
            yield tab
        finally:
            browser.close()
        assert not blocked, f"the pages tried to reach other hosts: {blocked}"
        assert not [e for e in errors if "Content Security Policy" in e], errors


class _FormReader(HTMLParser):
    """The fields of the forms of a page as a browser would submit them (no buttons)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.forms: list[tuple[dict[str, str], dict[str, str]]] = []  # (form attributes, fields)
        self._select: str | None = None
        self._first_option: str | None = None
        self._textarea: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "form":
            self.forms.append((a, {}))
        if not self.forms:
            return
        fields = self.forms[-1][1]
        name = a.get("name")
        if tag == "input" and name and a.get("type") not in ("submit", "button"):
            if a.get("type") in ("checkbox", "radio"):
                if "checked" in a:
                    fields[name] = a.get("value") or "on"
            else:
                fields[name] = a.get("value", "")
        elif tag == "select" and name:
            self._select, self._first_option = name, None
        elif tag == "option" and self._select:
            value = a.get("value", "")
            if self._first_option is None:
                self._first_option = value
                fields.setdefault(self._select, value)
            if "selected" in a:
                fields[self._select] = value
        elif tag == "textarea" and name:
            self._textarea = name
            fields[name] = ""

    def handle_endtag(self, tag: str) -> None:
        if tag == "select":
            self._select = None
        elif tag == "textarea":
            self._textarea = None

    def handle_data(self, data: str) -> None:
        if self._textarea and self.forms:
            self.forms[-1][1][self._textarea] += data.lstrip("\n") if not self.forms[-1][1][self._textarea] else data


def form_fields(page: str, action: str | None = None) -> dict[str, str]:
    """What submitting the page's form (the one posting to `action`, else the largest) sends, buttons aside."""
    reader = _FormReader()
    reader.feed(page)
    forms = [f for a, f in reader.forms if action is None or a.get("action") == action]
    assert forms, f"no form posting to {action!r} in the page"
    return dict(max(forms, key=len))
