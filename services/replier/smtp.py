"""Sending over SMTP: the mailbox's own settings, else the system default.

Sessions are kept open and reused per SMTP setting (a new session per mail
costs far more than the mail). `send` tells apart what is safe to retry:

    Refused     5xx: the server will never take it (mark the mail failed)
    Transient   4xx, refused connection, timeout before DATA: retry later
    Ambiguous   the connection broke during DATA: the server may have the mail

Embedded mode without any SMTP settings writes mail to an outbox folder instead.
"""

from __future__ import annotations

import smtplib
import ssl
import time
from dataclasses import dataclass
from pathlib import Path

import psycopg

from services.fetcher.tls import client_context
from shared.crypto import Keys
from shared.errors import Permanent, Transient

DEFAULT_PORTS = {"none": 25, "starttls": 587, "tls": 465}
TIMEOUT = 30.0
IDLE_CLOSE = 60.0


class Refused(Permanent):
    """The SMTP server answered 5xx."""


class Ambiguous(Exception):
    """The server may or may not have accepted the mail."""


@dataclass(frozen=True)
class SmtpSettings:
    id: int
    host: str
    port: int | None
    security: str
    username: str | None
    password: str | None
    allow_self_signed: bool

    @property
    def effective_port(self) -> int:
        return self.port or DEFAULT_PORTS[self.security]


def settings_for(conn: psycopg.Connection, keys: Keys, smtp_id: int | None) -> SmtpSettings | None:
    """The mailbox's custom settings (smtp_id), else the system default; None if neither exists."""
    if smtp_id is not None:
        row = conn.execute("SELECT * FROM smtp_settings WHERE id = %s", (smtp_id,)).fetchone()
    else:
        row = conn.execute("SELECT * FROM smtp_settings WHERE is_system").fetchone()
    if row is None:
        return None
    return SmtpSettings(
        row["id"],
        row["host"],
        row["port"],
        row["security"],
        row["username"],
        keys.decrypt(row["password_enc"]),
        row["allow_self_signed"],
    )


def open_session(s: SmtpSettings) -> smtplib.SMTP:
    context = client_context(s.allow_self_signed)
    try:
        if s.security == "tls":
            client: smtplib.SMTP = smtplib.SMTP_SSL(
                s.host, s.effective_port, timeout=TIMEOUT, context=context
            )
        else:
            client = smtplib.SMTP(s.host, s.effective_port, timeout=TIMEOUT)
        client.ehlo()
        if s.security == "starttls":
            if not client.has_extn("starttls"):
                client.close()
                raise Refused(f"{s.host} does not offer STARTTLS; refusing to send in plain text")
            client.starttls(context=context)
            client.ehlo()
        if s.username:
            client.login(s.username, s.password or "")
    except smtplib.SMTPAuthenticationError as exc:
        raise Refused(
            f"SMTP login to {s.host} refused: {exc.smtp_code} {_text(exc.smtp_error)}"
        ) from exc
    except ssl.SSLCertVerificationError as exc:
        raise Refused(f"certificate of {s.host} not trusted: {exc.verify_message}") from exc
    except (OSError, smtplib.SMTPException) as exc:
        raise Transient(f"cannot reach SMTP server {s.host}:{s.effective_port}: {exc}") from exc
    return client


class Sender:
    """Keeps one open session per SMTP setting and sends through it."""

    def __init__(self) -> None:
        self._sessions: dict[SmtpSettings, tuple[smtplib.SMTP, float]] = {}

    def send(self, s: SmtpSettings, sender: str, recipients: list[str], data: bytes) -> None:
        client = self._session(s)
        try:
            code, resp = client.mail(sender)
            if code != 250:
                self._answer(s, code, resp)
            for rcpt in recipients:
                code, resp = client.rcpt(rcpt)
                if code not in (250, 251):
                    client.rset()
                    self._answer(s, code, resp)
        except (OSError, smtplib.SMTPServerDisconnected) as exc:
            self._drop(s)
            raise Transient(f"SMTP connection to {s.host} lost: {exc}") from exc
        try:
            code, resp = client.data(data)
        except smtplib.SMTPDataError as exc:
            self._answer(s, exc.smtp_code, exc.smtp_error)
        except (OSError, smtplib.SMTPServerDisconnected) as exc:
            self._drop(s)
            raise Ambiguous(f"SMTP connection to {s.host} lost during DATA: {exc}") from exc
        self._sessions[s] = (client, time.monotonic())

    def _answer(self, s: SmtpSettings, code: int, resp: bytes) -> None:
        message = f"{s.host} answered {code} {_text(resp)}"
        if 400 <= code < 500:
            raise Transient(message)
        raise Refused(message)

    def _session(self, s: SmtpSettings) -> smtplib.SMTP:
        cached = self._sessions.get(s)
        if cached is not None:
            client, used = cached
            if time.monotonic() - used < IDLE_CLOSE:
                try:
                    if client.noop()[0] == 250:
                        return client
                except (OSError, smtplib.SMTPException):
                    pass
            self._drop(s)
        client = open_session(s)
        self._sessions[s] = (client, time.monotonic())
        return client

    def _drop(self, s: SmtpSettings) -> None:
        cached = self._sessions.pop(s, None)
        if cached is not None:
            try:
                cached[0].close()
            except (OSError, smtplib.SMTPException):
                pass

    def close(self) -> None:
        for s in list(self._sessions):
            self._drop(s)


def write_outbox(outbox: Path, message_id: str, data: bytes) -> Path:
    """Embedded mode without SMTP: the mail lands as a file a newcomer can open."""
    outbox.mkdir(parents=True, exist_ok=True)
    path = outbox / f"{message_id.split('@')[0]}.eml"
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(data)
    tmp.replace(path)
    return path


def _text(resp: bytes | str) -> str:
    return resp.decode(errors="replace") if isinstance(resp, bytes) else str(resp)
