"""The authorization-code flow with PKCE, against the test token server's /authorize.

Not in Chromium: the admin web's Connect button and callback are driven with
its in-process test client, and the provider's sign-in page is the token
server's /authorize, which signs the login_hint user in at once and redirects.
"""

from __future__ import annotations

import http.client
import subprocess
import sys
from urllib.parse import parse_qs, urlsplit

import pytest

from services.admin import status as ops_status
from shared.db import transaction
from shared.oauth2 import authorize
from tests.conftest import stage_env
from tests.integration.fetcher_helpers import ledger, mail
from tests.integration.oauth_helpers import FetcherSession, grant_row, oauth_mailbox, stored_tokens
from tests.integration.web_support import admin, api, browser_client, web_app  # noqa: F401
from tests.support import dovecot as dv
from tests.support.oauth import TokenServer

pytestmark = pytest.mark.integration


def provider_redirect(url: str) -> str:
    """What the provider's sign-in page answers: the Location it sends the browser to."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    conn.request("GET", f"{parts.path}?{parts.query}")
    response = conn.getresponse()
    response.read()
    assert response.status == 302, response.status
    return response.getheader("Location") or ""


@pytest.fixture
def server():
    return TokenServer.new_client()


def test_flow_functions_connect_a_mailbox(app, server, monkeypatch, dovecot):  # noqa: F811
    monkeypatch.setenv("DESKMAIL_CA_FILE", str(dovecot.ca_file))
    user = dv.new_user("oauth-code")
    dv.append(user, [mail("one")])
    mailbox_id = oauth_mailbox(app, user, server, flow="authorization_code")
    assert grant_row(app, mailbox_id)["needs_reconnect"], "not connected until someone signs in"
    with app.pool.connection() as conn:
        flagged = {m.id: m for m in ops_status.mailbox_health(conn)}[mailbox_id]
    assert flagged.needs_reconnect and "deskmail mailbox connect" in flagged.detail

    with transaction(app.pool) as conn:
        url = authorize.start(conn, app.keys, grant_row(app, mailbox_id)["id"], "http://localhost/cb", user)
    query = parse_qs(urlsplit(url).query)
    assert query["code_challenge_method"] == ["S256"] and query["login_hint"] == [user]
    assert "code_verifier" not in url
    back = authorize.parse_redirect(provider_redirect(url))
    authorize.finish(app.pool, app.keys, back["state"], back["code"])

    row = grant_row(app, mailbox_id)
    assert not row["needs_reconnect"] and row["refresh_token_enc"] is not None and row["auth_state"] is None
    with pytest.raises(authorize.AuthorizationError, match="unknown or was completed"):
        authorize.finish(app.pool, app.keys, back["state"], back["code"])  # a replayed callback
    fetcher = FetcherSession(app)
    try:
        assert fetcher.serve(mailbox_id)["failures_in_row"] == 0
    finally:
        fetcher.close()
    assert len(ledger(app, mailbox_id)) == 1
    assert server.grant_types() == ["authorization_code"], "the code's access token was used as it came"


def test_declined_sign_in_is_reported_and_spends_the_state(app, server):
    user = dv.new_user("oauth-declined")
    mailbox_id = oauth_mailbox(app, user, server, flow="authorization_code")
    server.fault(server.client_id, "authorize", "deny")
    with transaction(app.pool) as conn:
        url = authorize.start(conn, app.keys, grant_row(app, mailbox_id)["id"], "http://localhost/cb", user)
    back = authorize.parse_redirect(provider_redirect(url))
    with pytest.raises(authorize.AuthorizationError, match="access_denied"):
        authorize.finish(app.pool, app.keys, back.get("state"), back.get("code"), back.get("error"),
                         back.get("error_description"))
    assert grant_row(app, mailbox_id)["auth_state"] is None and grant_row(app, mailbox_id)["needs_reconnect"]


def test_admin_web_connect_button_and_callback(app, server, browser_client, api):  # noqa: F811
    user = dv.new_user("oauth-web")
    mailbox_id = oauth_mailbox(app, user, server, flow="authorization_code")
    assert api.get(f"/api/v1/mailboxes/{mailbox_id}").json()["needs_reconnect"] is True

    sent = browser_client.post(f"/mailboxes/{mailbox_id}/oauth2/connect",
                               data={"csrf_token": browser_client.csrf}, follow_redirects=False)
    assert sent.status_code == 303 and sent.headers["location"].startswith(server.authorize_url)
    landing = urlsplit(provider_redirect(sent.headers["location"]))
    assert landing.path == "/oauth2/callback"
    done = browser_client.get(f"{landing.path}?{landing.query}", follow_redirects=False)
    assert done.status_code == 303 and done.headers["location"].startswith(f"/mailboxes/{mailbox_id}?")
    page = browser_client.get(done.headers["location"])
    replay = browser_client.get(f"{landing.path}?{landing.query}")
    assert replay.status_code == 400 and "completed already" in replay.text

    shown = api.get(f"/api/v1/mailboxes/{mailbox_id}")
    assert shown.json()["needs_reconnect"] is False and shown.json()["auth_method"] == "oauth2"
    by_api = api.post(f"/api/v1/mailboxes/{mailbox_id}/oauth2/authorize")
    assert by_api.status_code == 200 and by_api.json()["authorization_url"].startswith(server.authorize_url)
    refused = browser_client.post(f"/mailboxes/{mailbox_id}/oauth2/connect", follow_redirects=False)
    assert refused.status_code == 403, "no CSRF token, no sign-in"

    secrets = stored_tokens(app) | server.issued()
    for text in (sent.text, done.text, page.text, replay.text, shown.text, by_api.text,
                 str(sent.headers), str(done.headers)):
        assert not [s for s in secrets if s in text]


def test_cli_connect_completes_from_the_pasted_address(app, settings, server):
    user = dv.new_user("oauth-cli-connect")
    mailbox_id = oauth_mailbox(app, user, server, flow="authorization_code")
    proc = subprocess.Popen([sys.executable, "-m", "services.cli", "mailbox", "connect", str(mailbox_id),
                             "--redirect-uri", "http://localhost/oauth2/callback"],
                            env=stage_env(settings), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdin is not None
    url = next(line.strip() for line in proc.stdout if line.startswith("http"))
    proc.stdin.write(provider_redirect(url) + "\n")
    proc.stdin.flush()
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert f"mailbox {mailbox_id} connected" in out
    assert not grant_row(app, mailbox_id)["needs_reconnect"]
    secrets = stored_tokens(app) | server.issued()
    assert not [s for s in secrets if s in out + err + url]
