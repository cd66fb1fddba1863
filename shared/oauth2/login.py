"""Signing in to a mail server with an access token: IMAP, POP3 and SMTP.

    token = the stored one, or refreshed            (grants.TokenSource)
    AUTHENTICATE with it                            (sasl.py)
    refused?   -> renew the token once, try again   (expired or revoked early)
    temporary? -> SignInError(transient): the server could not check the token
                  now ([UNAVAILABLE], [SYS/TEMP], 454); the credentials stay good

`source_for` gives a mailbox's or SMTP setting's row its TokenSource; the
protocol code then calls `imap_sign_in`, `pop3_sign_in` or `smtp_sign_in`
instead of a password login.
"""

from __future__ import annotations

import dataclasses
import imaplib
import poplib
import smtplib
from collections.abc import Callable
from typing import Any

from shared.crypto import Keys
from shared.oauth2 import sasl
from shared.oauth2.client import OAuthError
from shared.oauth2.grants import TokenSource
from shared.oauth2.sasl import Answer


class SignInError(Exception):
    """A failed OAuth2 sign-in: `step` is token (getting a token) or login (the server's answer)."""

    def __init__(self, step: str, message: str, transient: bool, needs_reconnect: bool = False) -> None:
        super().__init__(message)
        self.step = step
        self.message = message
        self.transient = transient
        self.needs_reconnect = needs_reconnect


def source_for(pool: Any, keys: Keys, row: dict[str, Any], owner: str) -> TokenSource | None:
    """The TokenSource of a mailbox or SMTP settings row that signs in with OAuth2, else None.

    `owner` completes the "connect it again" hint, e.g. "mailbox connect 3".
    """
    if row.get("auth_method") != "oauth2":
        return None
    return TokenSource(pool, keys, row.get("oauth_grant_id") or 0, str(row.get("username") or ""), owner)


def attach_smtp(pool: Any, keys: Keys, conn: Any, settings: Any) -> Any:
    """SMTP settings (frozen) with their TokenSource, if they sign in with OAuth2."""
    if settings is None or getattr(settings, "auth_method", "password") != "oauth2":
        return settings
    row = conn.execute("SELECT id, auth_method, oauth_grant_id, username FROM smtp_settings WHERE id = %s",
                       (settings.id,)).fetchone()
    source = source_for(pool, keys, row or {}, f"smtp edit {settings.name} --refresh-token-stdin")
    return dataclasses.replace(settings, oauth=source)


def _sign_in(source: TokenSource, mechanism: str, attempt: Callable[[str], Answer], server: str) -> str:
    try:
        token = source.token()
    except OAuthError as exc:
        raise SignInError("token", str(exc), exc.transient, exc.needs_reconnect) from None
    answer = attempt(token)
    if not answer.accepted and not answer.temporary:
        try:
            token = source.renew(rejected=token)
        except OAuthError as exc:
            raise SignInError("token", str(exc), exc.transient, exc.needs_reconnect) from None
        answer = attempt(token)
    if answer.accepted:
        source.steps.append(("login", True, f"{server} accepted the OAuth2 sign-in ({mechanism}) of {source.login}"))
        return mechanism
    if answer.temporary:
        message = (f"{server} could not check the OAuth2 token just now ({answer.text});"
                   " Deskmail tries again later")
    else:
        message = (f"{server} refused the OAuth2 sign-in ({mechanism}) of {source.login!r} even with a fresh"
                   f" token ({answer.text}); check that the user name is the mailbox's address and that"
                   " the application may use this protocol for this mailbox")
    source.steps.append(("login", False, message))
    raise SignInError("login", message, answer.temporary)


def imap_sign_in(imap: imaplib.IMAP4, capabilities: Any, source: TokenSource, host: str, port: int) -> str:
    mechanism = sasl.choose(sasl.imap_offered(capabilities), source.mechanism)
    return _sign_in(source, mechanism,
                    lambda t: sasl.imap_authenticate(imap, mechanism, source.login, t, host, port), host)


def pop3_sign_in(client: poplib.POP3, source: TokenSource, host: str, port: int) -> str:
    mechanism = sasl.choose(sasl.pop3_offered(client), source.mechanism)
    return _sign_in(source, mechanism,
                    lambda t: sasl.pop3_authenticate(client, mechanism, source.login, t, host, port), host)


def smtp_sign_in(client: smtplib.SMTP, source: TokenSource, host: str, port: int) -> str:
    mechanism = sasl.choose(sasl.smtp_offered(client), source.mechanism)
    return _sign_in(source, mechanism,
                    lambda t: sasl.smtp_authenticate(client, mechanism, source.login, t, host, port), host)
