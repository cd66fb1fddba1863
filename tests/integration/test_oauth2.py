"""OAuth2 sign-in against a real Dovecot with the oauth2 passdb and a real SMTP server taking XOAUTH2.

The token server (tests/support/oauth_server.py) is the provider: it issues,
refreshes, rotates, expires and revokes tokens, and Dovecot and the SMTP sink
ask it about every token they are shown. Every test also checks that no
token or client secret shows up in any log line of the test.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys

import pytest

from shared import smtp_settings
from shared.db import transaction
from shared.mailserver.smtp import Sender, check
from shared.oauth2 import login as oauth_login
from tests.conftest import stage_env
from tests.integration.fetcher_helpers import commit_all, ledger, mail, wait_for
from tests.integration.oauth_helpers import (
    Capture,
    FetcherSession,
    grant_row,
    oauth_mailbox,
    oauth_smtp,
    stored_tokens,
)
from tests.support import dovecot as dv
from tests.support import oauth
from tests.support.oauth import OAuthSmtp, TokenServer

pytestmark = pytest.mark.integration


@pytest.fixture
def server():
    return TokenServer.new_client()


@pytest.fixture
def leaks(app, server):
    """Captures every log line (DEBUG and up) and any text a test adds; no token may be in any of it."""
    capture = Capture()
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(capture)
    root.setLevel(logging.DEBUG)
    texts: list[str] = []
    servers = [server]
    yield texts, servers
    root.removeHandler(capture)
    root.setLevel(old_level)
    secrets = stored_tokens(app)
    for s in servers:
        secrets |= s.issued() | {s.client_secret}
    assert secrets, "the test issued no tokens to look for"
    everything = capture.lines + texts
    found = [(secret[:6] + "...", line[:200]) for secret in secrets for line in everything if secret in line]
    assert not found, f"tokens or secrets in logs/output: {found}"


@pytest.fixture
def fetcher(app, monkeypatch, dovecot):  # noqa: F811
    monkeypatch.setenv("DESKMAIL_CA_FILE", str(dovecot.ca_file))
    f = FetcherSession(app)
    yield f
    f.close()


@pytest.mark.parametrize("mechanism", ["xoauth2", "oauthbearer"])
@pytest.mark.parametrize("kind,security", [("imap", "none"), ("imap", "tls"), ("pop3", "none"), ("pop3", "tls")])
def test_polls_sign_in_with_each_mechanism(app, server, fetcher, leaks, kind, security, mechanism):
    user = dv.new_user(f"oauth-{kind}-{security}")
    dv.append(user, [mail("first")])
    mailbox_id = oauth_mailbox(app, user, server, kind, security, mechanism=mechanism,
                               refresh_token=server.grant(user)["refresh_token"])

    status = fetcher.serve(mailbox_id)

    assert status["last_error"] is None and status["last_success_at"] is not None
    assert len(ledger(app, mailbox_id)) == 1
    assert server.grant_types() == ["refresh_token"]  # the pasted refresh token bought the access token
    row = grant_row(app, mailbox_id)
    assert row["access_token_enc"] is not None and not row["needs_reconnect"]
    assert b"at-" not in bytes(row["access_token_enc"]), "tokens are stored encrypted"
    assert f"Login: user=<{user}>, method={mechanism.upper()}" in oauth.LOG_FILE.read_text()


def test_expired_token_is_refreshed_before_and_after_refusal(app, server, fetcher, leaks):
    user = dv.new_user("oauth-expiry")
    dv.append(user, [mail("one")])
    mailbox_id = oauth_mailbox(app, user, server, refresh_token=server.grant(user)["refresh_token"])
    assert fetcher.serve(mailbox_id)["last_error"] is None

    # The provider expired the token early: the server refuses it, one refresh, the poll goes on.
    server.expire(user)
    dv.append(user, [mail("two")])
    status = fetcher.serve(mailbox_id)
    assert status["last_error"] is None and len(ledger(app, mailbox_id)) == 2
    assert server.grant_types() == ["refresh_token", "refresh_token"]

    # About to expire by our own clock: refreshed before it is used.
    with transaction(app.pool) as conn:
        conn.execute("UPDATE oauth_grants SET access_expires_at = now() + interval '30 seconds'")
    dv.append(user, [mail("three")])
    assert fetcher.serve(mailbox_id)["last_error"] is None
    assert len(ledger(app, mailbox_id)) == 3
    assert server.grant_types() == ["refresh_token"] * 3


def test_token_server_down_is_retried_and_not_a_reconnect(app, server, fetcher, leaks):
    user = dv.new_user("oauth-down")
    dv.append(user, [mail("one")])
    mailbox_id = oauth_mailbox(app, user, server, refresh_token=server.grant(user)["refresh_token"])

    server.fault(server.client_id, "token", "drop")  # the token endpoint drops every connection
    status = fetcher.serve(mailbox_id)
    assert status["last_error"].startswith("token: the token endpoint") and "tries again later" in status["last_error"]
    assert status["failures_in_row"] == 1 and not grant_row(app, mailbox_id)["needs_reconnect"]
    server.fault(server.client_id, "token", "none")
    assert fetcher.serve(mailbox_id)["failures_in_row"] == 0

    # Dovecot cannot reach its introspection endpoint: [UNAVAILABLE] / temporary
    # failure; the token is not refreshed for that, and the grant stays good.
    refreshes = len(server.grant_types())
    server.fault(user, "introspect", "drop")
    dv.append(user, [mail("two")])
    status = fetcher.serve(mailbox_id)
    assert status["last_error"].startswith("login:") and "UNAVAILABLE" in status["last_error"]
    assert len(server.grant_types()) == refreshes and not grant_row(app, mailbox_id)["needs_reconnect"]
    server.fault(user, "introspect", "none")
    status = fetcher.serve(mailbox_id)
    assert status["failures_in_row"] == 0 and len(ledger(app, mailbox_id)) == 2


def test_revoked_grant_asks_for_reconnect_without_losing_or_duplicating_mail(app, server, fetcher, leaks):
    user = dv.new_user("oauth-revoked")
    dv.append(user, [mail("one"), mail("two")])
    mailbox_id = oauth_mailbox(app, user, server, refresh_token=server.grant(user)["refresh_token"])
    assert fetcher.serve(mailbox_id)["last_error"] is None
    commit_all(app, mailbox_id)  # their requests exist; the next poll would archive them

    server.revoke(user)
    status = fetcher.serve(mailbox_id)

    assert status["last_error"].startswith("token: needs reconnect") and "invalid_grant" in status["last_error"]
    row = grant_row(app, mailbox_id)
    assert row["needs_reconnect"] and row["refresh_token_enc"] is None
    assert dv.folder_count(user) == 2, "nothing was archived without a sign-in"
    refreshes = len(server.grant_types())
    assert fetcher.serve(mailbox_id)["last_error"].startswith("token: needs reconnect")
    assert len(server.grant_types()) == refreshes, "a refused grant is not tried again and again"

    # An administrator pastes a new refresh token: the poll archives and imports only what is new.
    dv.append(user, [mail("three")])
    with transaction(app.pool) as conn:
        from shared.oauth2 import grants

        grants.store_refresh_token(conn, app.keys, row["id"], server.grant(user)["refresh_token"])
    status = fetcher.serve(mailbox_id)
    assert status["failures_in_row"] == 0 and status["last_success_at"] > status["last_error_at"]
    states = [r["state"] for r in ledger(app, mailbox_id)]
    assert sorted(states) == ["archived", "archived", "published"]
    assert dv.folder_count(user, "deskmail_archive") == 2


def test_client_credentials_sign_in(app, fetcher, leaks):
    user = dv.new_user("oauth-app")
    app_server = TokenServer.new_client(mailbox=user)  # the app was granted this one mailbox
    leaks[1].append(app_server)
    dv.append(user, [mail("one")])
    mailbox_id = oauth_mailbox(app, user, app_server, flow="client_credentials")
    assert fetcher.serve(mailbox_id)["last_error"] is None
    assert app_server.grant_types() == ["client_credentials"]
    assert len(ledger(app, mailbox_id)) == 1


@pytest.mark.slow
def test_rotated_refresh_token_survives_a_fetcher_killed_right_after_the_refresh(app, settings, dovecot, leaks):  # noqa: F811
    rotating = TokenServer.new_client(rotate=True)
    leaks[1].append(rotating)
    user = dv.new_user("oauth-rotate")
    dv.append(user, [mail("one")])
    pasted = rotating.grant(user)["refresh_token"]
    mailbox_id = oauth_mailbox(app, user, rotating, refresh_token=pasted)

    env = stage_env(settings, DESKMAIL_CA_FILE=str(dovecot.ca_file), DESKMAIL_FETCH_THREADS="1")
    proc = subprocess.Popen([sys.executable, "-m", "services.cli", "fetcher"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_for(lambda: grant_row(app, mailbox_id)["tokens_updated_at"] is not None
                 and grant_row(app, mailbox_id)["access_token_enc"] is not None, 30, "the first refresh")
        os.kill(proc.pid, signal.SIGKILL)  # right after the refresh committed
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        output = proc.communicate(timeout=10)[0].decode(errors="replace")
    leaks[0].append(output)
    assert rotating.grant_types() == ["refresh_token"]
    assert rotating.events()[0]["rotated"] is True

    # The pasted token is spent; only the rotated one, stored with the access token, works now.
    rotating.expire(user)
    with transaction(app.pool) as conn:
        conn.execute("UPDATE oauth_grants SET access_expires_at = now() WHERE id = %s", (grant_row(app, mailbox_id)["id"],))
    fetcher = FetcherSession(app)
    try:
        status = fetcher.serve(mailbox_id)
    finally:
        fetcher.close()
    assert status["last_error"] is None, status["last_error"]
    assert [e.get("refused", False) for e in rotating.events()] == [False, False]
    assert len(ledger(app, mailbox_id)) == 1


def test_smtp_signs_in_with_both_mechanisms_and_refreshes(app, server, leaks):
    user = dv.new_user("oauth-smtp")
    with OAuthSmtp() as sink:
        ids = [oauth_smtp(app, user, server, sink.host, sink.port, server.grant(user)["refresh_token"], mech)
               for mech in ("xoauth2", "oauthbearer")]
        with app.pool.connection() as conn:
            settings = [oauth_login.attach_smtp(app.pool, app.keys, conn, smtp_settings.get(conn, app.keys, i))
                        for i in ids]
        sender = Sender(timeout=10)
        for s in settings:
            sender.send(s, f"{user}@example.test", ["customer@example.com"],
                        b"Subject: hi\r\nFrom: x@example.test\r\n\r\nhello\r\n")
        sender.close()
        server.expire(user)  # both access tokens: the next session refreshes after the 535
        report = check(settings[0])
        sink.wait_for(2)
    assert [m for m, _ in sink.logins] == ["XOAUTH2", "OAUTHBEARER", "XOAUTH2"]
    assert all(ok for _, ok, _ in report), report
    # The stored token looked valid; the server refused it; refreshed once; accepted.
    assert [step for step, _, _ in report] == ["connect", "token", "token_endpoint", "token", "login", "ready"], report
    assert server.grant_types().count("refresh_token") == 3
    leaks[0].append(repr(report))


def test_cli_add_test_and_show_an_oauth2_mailbox(app, settings, server, dovecot, leaks):  # noqa: F811
    user = dv.new_user("oauth-cli")
    dv.append(user, [mail("one")])
    env = stage_env(settings, DESKMAIL_CA_FILE=str(dovecot.ca_file))
    refresh = server.grant(user)["refresh_token"]

    def cli(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
        done = subprocess.run([sys.executable, "-m", "services.cli", *args], env=env, input=stdin,
                              capture_output=True, text=True, timeout=60)
        leaks[0].extend([done.stdout, done.stderr])
        return done

    added = cli("mailbox", "add", "--from-name", "Support", "--address", f"{user}@example.test",
                "--host", "127.0.0.1", "--port", "11993", "--security", "tls", "--username", user,
                "--type", "imap", "--auth", "oauth2", "--oauth-provider", "generic",
                "--oauth-client-id", server.client_id, "--oauth-token-url", server.token_url,
                "--oauth-flow", "refresh_token", "--oauth-client-secret-stdin", "--refresh-token-stdin",
                stdin=f"{server.client_secret}\n{refresh}\n")
    assert added.returncode == 0, added.stderr
    mailbox_id = int(added.stdout.split()[1])
    assert "refresh token stored" in added.stdout

    tested = cli("mailbox", "test", str(mailbox_id))
    assert tested.returncode == 0, tested.stdout + tested.stderr
    lines = [line.split()[:2] for line in tested.stdout.splitlines()]
    assert lines[:4] == [["ok", "connect"], ["ok", "token_endpoint"], ["ok", "token"], ["ok", "login"]]
    assert "access token refreshed" in tested.stdout and "accepted the OAuth2 sign-in" in tested.stdout

    shown = cli("mailbox", "show", str(mailbox_id), "--json")
    assert '"needs_reconnect": false' in shown.stdout and '"oauth_has_client_secret": true' in shown.stdout

    server.revoke(user)
    with transaction(app.pool) as conn:
        conn.execute("UPDATE oauth_grants SET access_expires_at = now()")
    failed = cli("mailbox", "test", str(mailbox_id))
    assert failed.returncode == 1 and "FAIL token" in failed.stdout and "needs reconnect" in failed.stdout
    listed = cli("mailbox", "list")
    assert f"needs reconnect (OAuth2): deskmail mailbox connect {mailbox_id}" in listed.stdout

    bad = cli("mailbox", "edit", str(mailbox_id), "--oauth-provider", "microsoft", "--oauth-flow",
              "client_credentials")
    assert bad.returncode == 2 and "oauth_tenant" in bad.stderr


def test_cli_smtp_settings_with_oauth2(settings, server, leaks):
    user = dv.new_user("oauth-smtp-cli")
    env = stage_env(settings)
    with OAuthSmtp() as sink:
        def cli(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
            done = subprocess.run([sys.executable, "-m", "services.cli", "smtp", *args], env=env, input=stdin,
                                  capture_output=True, text=True, timeout=60)
            leaks[0].extend([done.stdout, done.stderr])
            return done

        added = cli("add", "m365", "--host", sink.host, "--port", str(sink.port), "--security", "none",
                    "--username", user, "--auth", "oauth2", "--oauth-provider", "generic",
                    "--oauth-client-id", server.client_id, "--oauth-token-url", server.token_url,
                    "--oauth-flow", "refresh_token", "--oauth-client-secret-stdin", "--refresh-token-stdin",
                    stdin=f"{server.client_secret}\n{server.grant(user)['refresh_token']}\n")
        assert added.returncode == 0, added.stderr
        tested = cli("test", "m365")
        assert tested.returncode == 0, tested.stdout + tested.stderr
        assert "accepted the OAuth2 sign-in (XOAUTH2)" in tested.stdout
        shown = cli("show", "m365", "--json")
        assert '"auth_method": "oauth2"' in shown.stdout or '"needs_reconnect": false' in shown.stdout
    assert sink.logins == [("XOAUTH2", user)]
