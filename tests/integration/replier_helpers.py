"""Helpers for the replier's integration tests: a mailbox, mail through parser and ticketer.

Mail goes the real way from the raw bytes on: stored as the fetcher stores
it, then through the parser's and the ticketer's handlers in this process,
so the replier sees exactly what production gives it.
"""

from __future__ import annotations

import itertools
from email.utils import make_msgid
from typing import Any

from services.app import App
from services.parser.stage import ParserHandler
from services.replier.stage import ReplierHandler
from services.ticketer.stage import TicketerHandler
from shared import mailboxes, smtp_settings
from shared.db import transaction
from shared.events import MAIL_RECEIVED, Event
from shared.mailserver.smtp import Sender
from shared.settings import Settings
from tests.support.mailstore import store_mail
from tests.support.smtp import SmtpSink

_n = itertools.count(1)


def add_mailbox(app: App, address: str, *, auto_reply: bool = True, smtp_id: int | None = None,
                from_name: str = "ACME Support") -> int:
    with transaction(app.pool) as conn:
        return mailboxes.create(conn, app.keys, {
            "from_name": from_name, "address": address, "account_type": "imap",
            "host": "127.0.0.1", "username": address.split("@")[0], "security": "none",
            "archive": False, "auto_reply": auto_reply, "smtp_id": smtp_id,
        }, password="secret")


def sink_settings(app: App, sink: SmtpSink, *, name: str | None = None,
                  auth: tuple[str, str] | None = None) -> int:
    """SMTP settings pointing at `sink`: the system default, or custom ones named `name`."""
    security = {"none": "none", "starttls": "starttls", "ssl": "tls"}[sink.tls]
    values: dict[str, Any] = {"host": sink.host, "port": sink.port, "security": security,
                              "allow_self_signed": True}
    if auth:
        values["username"] = auth[0]
    with transaction(app.pool) as conn:
        if name is None:
            return smtp_settings.set_system(conn, app.keys, values, auth[1] if auth else None)
        return smtp_settings.create(conn, app.keys, {**values, "name": name},
                                    auth[1] if auth else None)


def mail(sender: str, to: str, subject: str = "Printer broken", *, headers: str = "",
         body: str = "It prints blank pages.", message_id: str | None = None) -> bytes:
    mid = message_id or make_msgid(domain="customer.example")
    text = (f"From: {sender}\r\nTo: {to}\r\nSubject: {subject}\r\nMessage-ID: {mid}\r\n"
            f"Date: Mon, 01 Jan 2024 10:00:00 +0000\r\n{headers}MIME-Version: 1.0\r\n"
            f"Content-Type: text/plain; charset=utf-8\r\n\r\n{body}\r\n")
    return text.encode()


def ingest(app: App, mailbox_id: int, *raws: bytes, settings: Settings | None = None) -> list[Event]:
    """Store raw mail like the fetcher, parse and ticket it; return the replier's events.

    `settings`: the parser's (rspamd on or off); default the app's.
    """
    events = [Event(MAIL_RECEIVED, {"raw_id": store_mail(app.pool, mailbox_id, raw), "mailbox_id": mailbox_id})
              for raw in raws]
    parsed = [e for _, e in ParserHandler(app.pool, settings or app.settings).handle(events)]
    return [e for _, e in TicketerHandler(app.pool, app.keys.message_id_key).handle(parsed)]


def replier(app: App) -> ReplierHandler:
    handler = ReplierHandler(app.settings, app.pool, app.keys, Sender(timeout=5.0))
    return handler


def outgoing(app: App, request_id: int | None = None) -> list[dict[str, Any]]:
    with app.pool.connection() as conn:
        return conn.execute(
            "SELECT * FROM outgoing_mail WHERE %(r)s::bigint IS NULL OR request_id = %(r)s ORDER BY id",
            {"r": request_id}).fetchall()


def history(app: App, request_id: int) -> list[dict[str, Any]]:
    with app.pool.connection() as conn:
        return conn.execute("SELECT * FROM history WHERE request_id = %s ORDER BY id",
                            (request_id,)).fetchall()
