"""Helpers for the OAuth2 tests: mailboxes that sign in with tokens, polls through the real session, leak checks."""

from __future__ import annotations

import logging
import threading
import uuid
from typing import Any

from services.app import App
from services.fetcher import lease
from services.fetcher.poll import Poller
from services.fetcher.session import Session
from shared import mailboxes, smtp_settings
from shared.db import transaction
from shared.oauth2 import grants
from shared.publisher import Publisher
from tests.integration.fetcher_helpers import Harness
from tests.support import oauth
from tests.support.oauth import TokenServer


def oauth_mailbox(app: App, user: str, server: TokenServer, kind: str = "imap", security: str = "none",
                  flow: str = "refresh_token", mechanism: str = "auto", refresh_token: str | None = None,
                  **values: Any) -> int:
    fields = {"from_name": "Support", "address": f"{user}@example.test", "host": oauth.HOST, "username": user,
              "account_type": kind, "security": security, "port": oauth.PORTS[(kind, security)],
              "poll_interval": 1, **values}
    if kind == "pop3":
        fields.setdefault("archive", False)
    with transaction(app.pool) as conn:
        mailbox_id = mailboxes.create(conn, app.keys, fields, None)
        grant_id = grants.save(conn, app.keys, None, {
            "provider": "generic", "flow": flow, "client_id": server.client_id, "token_url": server.token_url,
            "authorize_url": server.authorize_url, "mechanism": mechanism, "scopes": "mail"}, server.client_secret)
        conn.execute("UPDATE mailboxes SET auth_method = 'oauth2', oauth_grant_id = %s WHERE id = %s",
                     (grant_id, mailbox_id))
        if refresh_token:
            grants.store_refresh_token(conn, app.keys, grant_id, refresh_token)
    return mailbox_id


def oauth_smtp(app: App, user: str, server: TokenServer, host: str, port: int, refresh_token: str,
               mechanism: str = "auto") -> int:
    with transaction(app.pool) as conn:
        smtp_id = smtp_settings.create(conn, app.keys, {"name": f"oauth-{uuid.uuid4().hex[:6]}", "host": host,
                                                        "port": port, "security": "none", "username": user}, None)
        grant_id = grants.save(conn, app.keys, None, {
            "provider": "generic", "flow": "refresh_token", "client_id": server.client_id,
            "token_url": server.token_url, "mechanism": mechanism}, server.client_secret)
        conn.execute("UPDATE smtp_settings SET auth_method = 'oauth2', oauth_grant_id = %s WHERE id = %s",
                     (grant_id, smtp_id))
        grants.store_refresh_token(conn, app.keys, grant_id, refresh_token)
    return smtp_id


def grant_row(app: App, mailbox_id: int) -> dict[str, Any]:
    with app.pool.connection() as conn:
        row = grants.for_owner(conn, "mailboxes", mailbox_id)
    assert row is not None
    return row


def stored_tokens(app: App) -> set[str]:
    """Every token and secret in the database, decrypted: what must never show anywhere."""
    out: set[str] = set()
    with app.pool.connection() as conn:
        for row in conn.execute("SELECT access_token_enc, refresh_token_enc, client_secret_enc FROM oauth_grants"):
            out |= {t for t in (app.keys.decrypt(v) for v in row.values()) if t}
    return out


class FetcherSession:
    """One fetcher thread's Session, in-process: lease, poll, record the outcome, let go."""

    def __init__(self, app: App) -> None:
        self.app = app
        self.harness = Harness(app)
        self.owner = f"test-{uuid.uuid4().hex[:6]}"

    def serve(self, mailbox_id: int) -> dict[str, Any]:
        pool = self.app.pool
        with transaction(pool) as conn:  # due now, whatever the schedule says
            conn.execute("UPDATE mailboxes SET last_poll_at = NULL, lease_owner = NULL, lease_until = NULL"
                         " WHERE id = %s", (mailbox_id,))
        row = lease.acquire(pool, self.owner, ignore_schedule=True)
        assert row is not None and row["id"] == mailbox_id
        publisher = self.harness._publisher
        assert isinstance(publisher, Publisher)
        session = Session(pool, self.app.keys, self.owner, 30,
                          lambda keep: Poller(pool, publisher, self.app.topology, keep),
                          threading.Semaphore(0), threading.Event(), lambda: None)
        try:
            session.serve(row)
        except Exception:  # noqa: BLE001 - recorded on the mailbox like in the fetcher
            pass
        with pool.connection() as conn:
            status = conn.execute("SELECT * FROM mailboxes WHERE id = %s", (mailbox_id,)).fetchone()
        assert status is not None
        return status

    def close(self) -> None:
        self.harness.close()


class Capture(logging.Handler):
    """Every log line of the test, formatted as the product formats them (JSON)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        from shared.log import JsonFormatter

        self.setFormatter(JsonFormatter())
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))
