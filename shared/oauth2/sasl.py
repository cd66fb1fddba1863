"""SASL XOAUTH2 and OAUTHBEARER over IMAP, POP3 and SMTP, as real servers want them.

The strings (shared/notes/oauth2-testing.md, gotchas 4 and 5):

    XOAUTH2       user=U ^A auth=Bearer T ^A ^A
    OAUTHBEARER   n,a=U, ^A host=H ^A port=P ^A auth=Bearer T ^A ^A   (RFC 7628)

Both are base64-encoded once (standard alphabet, no line breaks). Dovecot 2.3
refuses OAUTHBEARER without the user name in the GS2 header (a=...).

A refused token is not answered with NO / -ERR / 535 at once: the server
first sends a challenge with a JSON error body, and the client must answer it
with an empty line to get the final answer (gotcha 2). poplib treats that
challenge ("+ eyJ...") as success, so POP3 is spoken by hand here (gotcha 3).

Each `*_authenticate` returns an Answer: accepted, refused (the token: worth
one refresh), or temporary ([UNAVAILABLE], [SYS/TEMP], 4xx: the server could
not check the token; try again later and keep the credentials).
"""

from __future__ import annotations

import base64
import binascii
import imaplib
import poplib
import smtplib
from dataclasses import dataclass
from typing import Any

XOAUTH2 = "XOAUTH2"
OAUTHBEARER = "OAUTHBEARER"


@dataclass(frozen=True)
class Answer:
    accepted: bool
    temporary: bool
    text: str  # the server's words, for the administrator (never holds the token)


def xoauth2(user: str, token: str) -> str:
    return f"user={user}\x01auth=Bearer {token}\x01\x01"


def oauthbearer(user: str, token: str, host: str | None = None, port: int | None = None) -> str:
    authzid = user.replace("=", "=3D").replace(",", "=2C")
    parts = [f"n,a={authzid},"]
    if host:
        parts.append(f"host={host}")
    if port:
        parts.append(f"port={port}")
    parts.append(f"auth=Bearer {token}")
    return "\x01".join(parts) + "\x01\x01"


def initial_response(mechanism: str, user: str, token: str, host: str | None = None,
                     port: int | None = None) -> str:
    if mechanism == XOAUTH2:
        return xoauth2(user, token)
    return oauthbearer(user, token, host, port)


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode("ascii")


def failure_detail(challenge: bytes | str) -> str:
    """The JSON error body of a failure challenge, decoded if it is base64 (for messages)."""
    raw = challenge.encode() if isinstance(challenge, str) else challenge
    raw = raw.strip()
    try:
        return base64.b64decode(raw, validate=True).decode("utf-8", "replace")[:200]
    except (binascii.Error, ValueError):
        return raw.decode("utf-8", "replace")[:200]


def choose(offered: set[str], preference: str) -> str:
    """The mechanism to use: the configured one, else XOAUTH2 when offered, else OAUTHBEARER."""
    if preference == "xoauth2":
        return XOAUTH2
    if preference == "oauthbearer":
        return OAUTHBEARER
    if XOAUTH2 not in offered and OAUTHBEARER in offered:
        return OAUTHBEARER
    return XOAUTH2  # also when nothing is listed: some servers only list it after STARTTLS


_TEMPORARY_IMAP = ("[UNAVAILABLE]", "[SERVERBUG]", "[INUSE]", "[LIMIT]")


# ---- IMAP --------------------------------------------------------------------

def imap_offered(capabilities: Any) -> set[str]:
    names = {c.decode() if isinstance(c, bytes) else str(c) for c in capabilities}
    return {n[5:].upper() for n in names if n.upper().startswith("AUTH=")}


def imap_authenticate(imap: imaplib.IMAP4, mechanism: str, user: str, token: str,
                      host: str, port: int) -> Answer:
    """AUTHENTICATE on an imaplib connection (imapclient: client._imap)."""
    sent = []

    def respond(_challenge: bytes) -> bytes:
        # First continuation: the credentials; any later one is the failure
        # challenge, answered with an empty line to get the tagged NO.
        sent.append(1)
        return initial_response(mechanism, user, token, host, port).encode() if len(sent) == 1 else b""

    try:
        imap.authenticate(mechanism, respond)
    except imaplib.IMAP4.abort:
        raise
    except imaplib.IMAP4.error as exc:
        text = str(exc)
        return Answer(False, any(code in text.upper() for code in _TEMPORARY_IMAP), text)
    return Answer(True, False, "accepted")


# ---- POP3 --------------------------------------------------------------------

def pop3_offered(client: poplib.POP3) -> set[str]:
    try:
        capabilities = client.capa()
    except poplib.error_proto:
        return set()
    return {m.upper() for m in capabilities.get("SASL", [])}


def pop3_authenticate(client: poplib.POP3, mechanism: str, user: str, token: str,
                      host: str, port: int) -> Answer:
    """AUTH in two steps (RFC 5034), reading each answer ourselves.

    poplib accepts any line starting with "+" as success, including the
    failure challenge "+ eyJ..."; so only "+OK" counts here.
    """
    try:
        client._putcmd(f"AUTH {mechanism}")
        line = client._getline()[0]
        if not line.startswith(b"+") or line.startswith(b"+OK"):
            return _pop3_answer(line)
        client._putcmd(b64(initial_response(mechanism, user, token, host, port)))
        line = client._getline()[0]
        if line.startswith(b"+") and not line.startswith(b"+OK"):
            detail = failure_detail(line[1:])
            client._putcmd("")  # answer the failure challenge to get the -ERR
            final = client._getline()[0]
            answer = _pop3_answer(final)
            return Answer(answer.accepted, answer.temporary, f"{answer.text} ({detail})")
        return _pop3_answer(line)
    except poplib.error_proto as exc:  # a line over poplib's limit
        return Answer(False, False, str(exc))


def _pop3_answer(line: bytes) -> Answer:
    text = line.decode("utf-8", "replace")
    if line.startswith(b"+OK"):
        return Answer(True, False, text)
    return Answer(False, "[SYS/TEMP]" in text.upper() or "[IN-USE]" in text.upper(), text)


# ---- SMTP --------------------------------------------------------------------

def smtp_offered(client: smtplib.SMTP) -> set[str]:
    return {m.upper() for m in (client.esmtp_features.get("auth") or "").split()}


def smtp_authenticate(client: smtplib.SMTP, mechanism: str, user: str, token: str,
                      host: str, port: int) -> Answer:
    def respond(challenge: bytes | None = None) -> str:
        # smtplib calls again with the 334 failure challenge: answer it empty (gotcha 2).
        return initial_response(mechanism, user, token, host, port) if challenge is None else ""

    try:
        code, resp = client.auth(mechanism, respond, initial_response_ok=True)
    except smtplib.SMTPAuthenticationError as exc:
        text = f"{exc.smtp_code} {exc.smtp_error.decode('utf-8', 'replace') if isinstance(exc.smtp_error, bytes) else exc.smtp_error}"
        return Answer(False, 400 <= exc.smtp_code < 500, text)
    return Answer(True, False, f"{code} {resp.decode('utf-8', 'replace') if isinstance(resp, bytes) else resp}")
