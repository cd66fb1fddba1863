"""POP3 as a mail source (poplib).

POP3 has one maildrop and no folders, so the ledger key is ('', 0, UIDL):
the UIDL is the server's stable id for a message. Sizes come from LIST; mail
over the mailbox's size limit is fetched as headers only (TOP n 0). POP3
cannot archive: imported mail is deleted with DELE, and the deletions take
effect only when the session ends with QUIT, so `remove` ends the session
and the next call opens a new one. A session that breaks before QUIT deletes
nothing (RFC 1939), which is what invariant 1 wants.
"""

from __future__ import annotations

import poplib
import ssl
from collections.abc import Iterator
from contextlib import contextmanager

from shared.mailboxes import Mailbox
from shared.mailserver.remote import Fetched, RemoteError, connecting
from shared.mailserver.remote import server_text as _text
from shared.mailserver.tls import client_context
from shared.oauth2 import login as oauth_login

TIMEOUT = 60.0
# poplib refuses lines over 2,048 bytes; real mail (HTML without line breaks)
# has longer ones, which must not make a message unfetchable.
poplib._MAXLINE = 1 << 20


@contextmanager
def _talking(step: str, doing: str) -> Iterator[None]:
    try:
        yield
    except RemoteError:
        raise
    except poplib.error_proto as exc:
        raise RemoteError(step, f"the server refused {doing}: {_text(exc)}") from exc
    except TimeoutError as exc:
        raise RemoteError(step, f"the server did not answer within {TIMEOUT:.0f} s while {doing}") from exc
    except (OSError, EOFError) as exc:
        raise RemoteError(step, f"the connection broke while {doing} ({exc})") from exc


def _connect(mailbox: Mailbox) -> poplib.POP3:
    context = client_context(mailbox.allow_self_signed)
    host, port = mailbox.host, mailbox.effective_port
    with connecting(host, port, "POP3", TIMEOUT, (poplib.error_proto,)):
        if mailbox.security == "tls":
            client: poplib.POP3 = poplib.POP3_SSL(host, port, timeout=TIMEOUT, context=context)
        else:
            client = poplib.POP3(host, port, timeout=TIMEOUT)
    if mailbox.security == "starttls":
        try:
            capabilities = client.capa()
        except poplib.error_proto:
            capabilities = {}
        if "STLS" not in capabilities:
            _drop(client)
            raise RemoteError("starttls", f"{host} does not offer STLS; refusing to log in in plain text", False)
        try:
            client.stls(context)
        except ssl.SSLCertVerificationError as exc:
            _drop(client)
            raise RemoteError("tls", f"certificate of {host} not trusted: {exc.verify_message}", False) from exc
        except (ssl.SSLError, OSError, poplib.error_proto) as exc:
            _drop(client)
            raise RemoteError("starttls", f"STLS with {host} failed: {exc}") from exc
    if mailbox.auth_method == "oauth2":
        _sign_in(client, mailbox)
        return client
    try:
        client.user(mailbox.username)
        client.pass_(mailbox.password or "")
    except poplib.error_proto as exc:
        _drop(client)
        raise RemoteError("login", f"the server refused the user name or password ({_text(exc)})", False) from exc
    except OSError as exc:
        _drop(client)
        raise RemoteError("login", f"the connection broke while logging in ({exc})") from exc
    return client


def _sign_in(client: poplib.POP3, mailbox: Mailbox) -> None:
    """OAuth2 (XOAUTH2 or OAUTHBEARER): a token, refreshed once if the server refuses it."""
    if mailbox.oauth is None:
        _drop(client)
        raise RemoteError("token", "this mailbox signs in with OAuth2 but has no OAuth2 settings", False)
    try:
        oauth_login.pop3_sign_in(client, mailbox.oauth, mailbox.host, mailbox.effective_port)
    except oauth_login.SignInError as exc:
        _drop(client)
        raise RemoteError(exc.step, exc.message, exc.transient) from None
    except (OSError, EOFError) as exc:
        _drop(client)
        raise RemoteError("login", f"the connection broke while signing in ({exc})") from None


class Pop3Remote:
    folder_key = ""

    def __init__(self, mailbox: Mailbox) -> None:
        self.mailbox = mailbox
        self._client: poplib.POP3 | None = None
        self._numbers: dict[str, int] = {}  # UIDL -> message number in this session
        self._sizes: dict[int, int] = {}
        self._session()

    def _session(self) -> poplib.POP3:
        """The open session, or a new one (after `remove` ended the last with QUIT)."""
        if self._client is None:
            client = _connect(self.mailbox)
            with _talking("list", "listing the maildrop"):
                _, lines, _ = client.uidl()
                numbers = {}
                for line in lines:
                    number, uidl = line.decode("ascii", "replace").split(" ", 1)
                    numbers[uidl.strip()] = int(number)
                _, lines, _ = client.list()
                sizes = {int(n): int(s) for n, s in (line.split()[:2] for line in lines)}
            self._client, self._numbers, self._sizes = client, numbers, sizes
        return self._client

    def reopen(self) -> None:
        """A new session after the server dropped the last one (deletes nothing: no QUIT)."""
        if self._client is not None:
            _drop(self._client)
            self._client = None
        self._session()

    def uidvalidity(self) -> int:
        return 0

    def list_ids(self) -> list[str]:
        self._session()
        return sorted(self._numbers, key=self._numbers.__getitem__)

    def fetch(self, ids: list[str], max_bytes: int) -> Iterator[Fetched]:
        client = self._session()
        for uidl in ids:
            number = self._numbers.get(uidl)
            if number is None:
                continue  # gone meanwhile
            size = self._sizes.get(number, 0)
            if size > max_bytes:
                with _talking("fetch", "sending the headers of an oversized mail"):
                    _, lines, _ = client.top(number, 0)
                yield Fetched(uidl, b"\r\n".join(lines) + b"\r\n", size, truncated=True)
            else:
                with _talking("fetch", "sending mail"):
                    _, lines, _ = client.retr(number)
                yield Fetched(uidl, b"\r\n".join(lines) + b"\r\n", size)

    def remove(self, ids: list[str]) -> None:
        """DELE each message, then QUIT: only a clean QUIT makes the deletions happen."""
        if not ids:
            return
        client = self._session()
        self._client = None  # this session ends here, one way or the other
        try:
            with _talking("delete", "deleting imported mail"):
                for uidl in ids:
                    number = self._numbers.get(uidl)
                    if number is not None:
                        client.dele(number)
                client.quit()
        except RemoteError:
            _drop(client)  # no QUIT: the server deletes nothing of this session
            raise

    def close(self) -> None:
        """End without QUIT's deletions mattering: nothing is marked for deletion here."""
        if self._client is not None:
            try:
                self._client.quit()
            except Exception:  # noqa: BLE001 - closing a broken connection
                _drop(self._client)
            self._client = None


def _drop(client: poplib.POP3) -> None:
    try:
        client.close()
    except Exception:  # noqa: BLE001
        pass


