# ruff: noqa: F811 - fixtures are imported from web_support by name
"""OAuth2 settings through the JSON API and the mailbox pages (no browser): write-only secrets,
the pasted refresh token, what a test of unsaved settings says, and "needs reconnect" in red."""

from __future__ import annotations

import pytest

from tests.integration.oauth_helpers import stored_tokens
from tests.integration.web_support import admin, api, browser_client, web_app  # noqa: F401
from tests.support import dovecot as dv
from tests.support import oauth
from tests.support.oauth import TokenServer

pytestmark = pytest.mark.integration


def test_api_and_pages_keep_oauth2_secrets_write_only(app, api, browser_client):
    provider = TokenServer.new_client()
    user = dv.new_user("api-oauth")
    body = {"from_name": "Support", "address": f"{user}@example.test", "account_type": "imap",
            "security": "none", "host": oauth.HOST, "port": oauth.IMAP_PORT, "username": user,
            "auth_method": "oauth2", "oauth_provider": "generic", "oauth_flow": "authorization_code",
            "oauth_client_id": provider.client_id, "oauth_client_secret": provider.client_secret,
            "oauth_token_url": provider.token_url, "oauth_authorize_url": provider.authorize_url,
            "oauth_scopes": "mail"}
    created = api.post("/api/v1/mailboxes", json=body)
    assert created.status_code == 201, created.text
    out = created.json()
    mailbox_id = out["id"]
    assert out["auth_method"] == "oauth2" and out["oauth_token_url"] == provider.token_url
    assert out["oauth_has_client_secret"] and not out["oauth_connected"] and out["needs_reconnect"]

    # Not connected yet: the list and the page say so in red, and the page offers Connect.
    listing = browser_client.get("/mailboxes").text
    assert 'class="health-failing"' in listing and "needs reconnect" in listing
    page = browser_client.get(f"/mailboxes/{mailbox_id}")
    assert 'id="oauth-connect"' in page.text and "Needs reconnect" in page.text
    assert "form-action 'self' http://127.0.0.1:11089" in page.headers["content-security-policy"]

    # A blank secret keeps the saved one; a test of unsaved OAuth2 changes says to save first.
    kept = api.patch(f"/api/v1/mailboxes/{mailbox_id}", json={"oauth_client_secret": "", "oauth_scopes": "mail"})
    assert kept.status_code == 200 and kept.json()["oauth_has_client_secret"]
    tested = api.post(f"/api/v1/mailboxes/{mailbox_id}/test", json={"oauth_client_id": "another"})
    assert tested.status_code == 422 and "not saved yet" in tested.json()["errors"]["auth_method"]

    # A pasted refresh token connects the mailbox; the test then signs in with it.
    pasted = api.patch(f"/api/v1/mailboxes/{mailbox_id}", json={
        "oauth_flow": "refresh_token", "oauth_refresh_token": provider.grant(user)["refresh_token"]})
    assert pasted.status_code == 200 and pasted.json()["oauth_connected"], pasted.text
    tested = api.post(f"/api/v1/mailboxes/{mailbox_id}/test")
    assert tested.json()["ok"], tested.text
    assert [s["step"] for s in tested.json()["steps"]][:4] == ["connect", "token_endpoint", "token", "login"]

    # OAuth2 settings with the password sign-in: the same words as the CLI.
    wrong = api.patch(f"/api/v1/mailboxes/{mailbox_id}", json={"auth_method": "password", "oauth_scopes": "x"})
    assert wrong.status_code == 422 and "--auth oauth2" in wrong.json()["errors"]["auth_method"]

    # The form with "password" chosen ignores its hidden OAuth2 fields and switches back.
    form = {"csrf_token": browser_client.csrf, "action": "save", "from_name": "Support",
            "address": f"{user}@example.test", "account_type": "imap", "security": "none", "host": oauth.HOST,
            "port": str(oauth.IMAP_PORT), "username": user, "password": "pw", "folder": "INBOX",
            "poll_interval": "60", "max_per_poll": "500", "max_message_bytes": "1000", "smtp_id": "system",
            "auth_method": "password", "oauth_provider": "generic", "oauth_client_id": "", "enabled": "on"}
    saved = browser_client.post(f"/mailboxes/{mailbox_id}", data=form, follow_redirects=False)
    assert saved.status_code == 303, saved.text
    assert api.get(f"/api/v1/mailboxes/{mailbox_id}").json()["auth_method"] == "password"

    secrets = stored_tokens(app) | provider.issued() | {provider.client_secret}
    for text in (created.text, listing, page.text, kept.text, pasted.text, tested.text,
                 api.get("/api/v1/mailboxes").text, browser_client.get(f"/mailboxes/{mailbox_id}").text):
        assert not [s for s in secrets if s in text]


def test_smtp_settings_with_oauth2_through_api_and_pages(app, api, browser_client):
    from tests.support.oauth import OAuthSmtp

    provider = TokenServer.new_client()
    user = dv.new_user("api-oauth-smtp")
    with OAuthSmtp() as sink:
        created = api.post("/api/v1/smtp", json={
            "name": "m365", "host": sink.host, "port": sink.port, "security": "none", "username": user,
            "auth_method": "oauth2", "oauth_provider": "generic", "oauth_flow": "refresh_token",
            "oauth_client_id": provider.client_id, "oauth_client_secret": provider.client_secret,
            "oauth_token_url": provider.token_url, "oauth_refresh_token": provider.grant(user)["refresh_token"]})
        assert created.status_code == 201, created.text
        assert created.json()["auth_method"] == "oauth2" and created.json()["oauth_connected"]
        tested = api.post(f"/api/v1/smtp/{created.json()['id']}/test")
        assert tested.json()["ok"], tested.text
        assert {"smtp_token_endpoint", "smtp_token", "smtp_login"} <= {s["step"] for s in tested.json()["steps"]}
    assert sink.logins == [("XOAUTH2", user)]

    no_user = api.put("/api/v1/smtp/system", json={"host": "smtp.example.com", "auth_method": "oauth2",
                                                   "oauth_provider": "google", "oauth_client_id": "app"})
    assert no_user.status_code == 422 and "user name" in no_user.json()["errors"]["username"]
    page = browser_client.get("/settings/smtp")
    assert 'name="oauth_client_secret"' in page.text and 'name="auth_method"' in page.text
    secrets = stored_tokens(app) | provider.issued() | {provider.client_secret}
    for text in (created.text, tested.text, api.get("/api/v1/smtp").text, page.text):
        assert not [s for s in secrets if s in text]
