# ruff: noqa: F811 - fixtures are imported by name
"""OAuth2 in the admin web, in a real Chromium: the authorization-code flow end to end.

An administrator adds a mailbox that signs in with OAuth2 (generic provider:
the test token server; the oauth2-passdb Dovecot), clicks Connect, passes the
token server's /authorize (it signs the login_hint user in at once), comes
back through /oauth2/callback, sees the mailbox connected and tests it green
with its token steps. No token or client secret may appear in any page, any
answer of the web (bodies and headers), the JSON API or a log line.
Screenshots go to test-artifacts/web-oauth2/.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from services.web.server import serve_in_thread
from tests.integration.oauth_helpers import Capture, stored_tokens
from tests.integration.web_support import ADMIN, admin, chromium_page  # noqa: F401
from tests.support import dovecot as dv
from tests.support import oauth
from tests.support.oauth import TokenServer

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "web-oauth2"


@pytest.fixture
def web(app, admin) -> Iterator[str]:
    """Only the web (no pipeline stages), in a thread; its base URL."""
    server, thread = serve_in_thread(app)
    yield f"http://127.0.0.1:{server.bound_port()}"
    server.stop()
    thread.join(timeout=20)


@pytest.fixture
def logs() -> Iterator[Capture]:
    capture = Capture()
    root = logging.getLogger()
    old = root.level
    root.addHandler(capture)
    root.setLevel(logging.DEBUG)
    yield capture
    root.removeHandler(capture)
    root.setLevel(old)


def test_connect_an_oauth2_mailbox_in_chromium(app, web, logs):
    dv.ensure_dovecot()
    provider = TokenServer.new_client()  # starts the token server and the oauth2 Dovecot if needed
    user = dv.new_user("web-oauth")
    dv.append(user, [f"From: a@example.com\r\nTo: {user}@example.test\r\nSubject: hi\r\n\r\nhello\r\n".encode()])
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    seen: list[str] = []  # every page and every answer of the web, for the leak check

    with chromium_page(web) as page:
        def shot(step: str) -> None:
            seen.append(page.content())
            page.screenshot(path=str(ARTIFACTS / f"{step}.png"), full_page=True)

        def keep(response) -> None:
            if response.url.startswith(web):
                seen.append(str(response.headers))
                if response.status < 300 or response.status >= 400:
                    seen.append(response.text())

        page.on("response", keep)
        page.goto("/login")
        page.fill("input[name=username]", ADMIN[0])
        page.fill("input[name=password]", ADMIN[1])
        page.click("button[type=submit]")
        page.wait_for_url(re.compile(r"/$"))

        # The form: OAuth2 hides the password; generic shows the URLs, hides the tenant.
        page.goto("/mailboxes/new")
        assert page.locator("#oauth-settings").is_hidden() and page.locator("input[name=password]").is_visible()
        page.select_option("#auth_method", "oauth2")
        assert page.locator("#oauth-settings").is_visible() and page.locator("input[name=password]").is_hidden()
        assert page.locator("input[name=oauth_tenant]").is_visible()  # Microsoft is the preset
        page.select_option("#oauth_provider", "generic")
        assert page.locator("input[name=oauth_tenant]").is_hidden() and page.locator("#oauth_token_url").is_visible()
        assert page.locator("input[name=oauth_refresh_token]").is_hidden()  # only for a pasted token
        page.fill("#from_name", "Support")
        page.fill("input[name=address]", f"{user}@example.test")
        page.select_option("#security", "none")
        page.fill("input[name=host]", oauth.HOST)
        page.fill("#port", str(oauth.IMAP_PORT))
        page.fill("input[name=username]", user)
        page.fill("#oauth_client_id", provider.client_id)
        page.fill("#oauth_client_secret", provider.client_secret)
        page.fill("input[name=oauth_scopes]", "mail")
        page.fill("#oauth_token_url", provider.token_url)
        page.fill("#oauth_authorize_url", provider.authorize_url)
        shot("01-new-oauth2-mailbox")
        page.click("button[value=save]")
        page.wait_for_url(re.compile(r"/mailboxes/\d+\?"))
        mailbox_url = page.url.split("?")[0]
        assert "Needs reconnect" in page.inner_text("#oauth-status")  # not connected yet
        assert page.input_value("#oauth_client_secret") == ""  # write-only
        assert "(saved; leave blank to keep it)" in (page.get_attribute("#oauth_client_secret", "placeholder") or "")
        shot("02-saved-not-connected")
        page.goto("/mailboxes")
        row = page.locator(f"tr:has-text('{user}@example.test')")
        assert "health-failing" in (row.get_attribute("class") or "") and "needs reconnect" in row.inner_text()
        shot("03-list-needs-reconnect")

        # Connect: the provider's sign-in page, the callback, back on the mailbox.
        page.goto(mailbox_url)
        page.click("#oauth-connect")
        page.wait_for_url(re.compile(r"/mailboxes/\d+\?done="))
        assert "Connected" in page.content() and "OAuth2: connected" in page.inner_text("#oauth-status")
        assert any(e.get("authorize") for e in provider.events())
        shot("04-connected")

        # Test connection signs in with the stored token; after the provider expired it, with a refreshed one.
        page.click("button[value=test]")
        page.wait_for_selector("#test-result")
        result = page.inner_text("#test-result")
        assert "All steps passed" in result, result
        assert "OAuth2 token: stored access token valid" in result and "accepted the OAuth2 sign-in" in result
        shot("05-tested-stored-token")
        provider.expire(user)
        page.click("button[value=test]")
        page.wait_for_selector("#test-result")
        steps = page.locator("#test-result li")
        names = [steps.nth(i).get_attribute("data-step") for i in range(steps.count())]
        assert "token_endpoint" in names and names.count("login") == 1, names
        assert page.locator("#test-result li.failed").count() == 0, page.inner_text("#test-result")
        assert "access token refreshed" in page.inner_text("#test-result")
        shot("06-tested-refreshed")
        assert provider.grant_types() == ["authorization_code", "refresh_token"]

        api = page.request.get(f"/api/v1/mailboxes/{mailbox_url.rsplit('/', 1)[1]}")
        body = api.json()
        assert body["auth_method"] == "oauth2" and body["oauth_connected"] and not body["needs_reconnect"]
        assert body["oauth_has_client_secret"] and "oauth_client_secret" not in body
        seen.append(api.text())

    secrets = stored_tokens(app) | provider.issued() | {provider.client_secret}
    assert len(secrets) >= 4, "the test issued no tokens to look for"
    found = [(s[:6] + "...", text[:120]) for s in secrets for text in seen + logs.lines if s in text]
    assert not found, f"tokens or secrets in pages, answers or logs: {found}"
