"""IMAP as a mail source (imapclient).

UIDVALIDITY and UIDs
--------------------
A UID names a message in a folder only together with the folder's
UIDVALIDITY. If the server changes UIDVALIDITY (folder recreated, server
migrated), every UID is new: the poll then recognises already imported mail
by its content hash instead of its UID (see services/fetcher/store.py), so
nothing is imported twice and nothing is lost.

Folder names are sent in IMAP's modified UTF-7 (imapclient's folder_encode),
so "Eingang/Überfällig" or "支持" work as they are typed.

Removal
-------
Archive: UID MOVE where the server offers MOVE, else UID COPY + \\Deleted +
UID EXPUNGE of just those UIDs (never a bare EXPUNGE, which would also remove
what a person marked deleted). Delete: \\Deleted + UID EXPUNGE. Both in
batches of 500: one MOVE of 500 UIDs costs about what 10 single MOVEs do.

Speed
-----
imapclient turns on imaplib's debug output (level 5) and formats every
protocol line for its logger, whether or not anyone logs at debug level; that
alone cut fetching from ~4,800 to ~800 messages/s. We switch it off.
"""

from __future__ import annotations

import imaplib
import ssl
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import imapclient
from imapclient.exceptions import IMAPClientError, LoginError

from shared.mailboxes import Mailbox
from shared.mailserver.remote import Fetched, RemoteError, connecting
from shared.mailserver.remote import server_text as _text
from shared.mailserver.tls import client_context
from shared.oauth2 import login as oauth_login

BATCH = 500  # UIDs per FETCH / MOVE command
BATCH_BYTES = 16 * 1024 * 1024  # ...and at most this much mail per FETCH: bounded memory
TIMEOUT = 60.0


@contextmanager
def _talking(step: str, doing: str) -> Iterator[None]:
    """Turn what imapclient/imaplib/sockets raise into a RemoteError naming the step."""
    try:
        yield
    except RemoteError:
        raise
    except imaplib.IMAP4.abort as exc:
        raise RemoteError(step, f"the server closed the connection while {doing} ({_text(exc)})") from exc
    except IMAPClientError as exc:
        raise RemoteError(step, f"the server refused {doing}: {_text(exc)}") from exc
    except TimeoutError as exc:
        raise RemoteError(step, f"the server did not answer within {TIMEOUT:.0f} s while {doing}") from exc
    except (OSError, ssl.SSLError) as exc:
        raise RemoteError(step, f"the connection broke while {doing} ({exc})") from exc


def _connect(mailbox: Mailbox) -> imapclient.IMAPClient:
    context = client_context(mailbox.allow_self_signed)
    host, port = mailbox.host, mailbox.effective_port
    with connecting(host, port, "IMAP", TIMEOUT, (IMAPClientError,)):
        client = imapclient.IMAPClient(
            host, port=port, ssl=mailbox.security == "tls", ssl_context=context, timeout=TIMEOUT
        )
    client._imap.debug = 0  # see "Speed" above
    if mailbox.security == "starttls":
        with _talking("starttls", "asking for its capabilities"):
            caps = client.capabilities()
        if b"STARTTLS" not in caps:
            client.shutdown()
            raise RemoteError("starttls", f"{host} does not offer STARTTLS; refusing to log in in plain text", False)
        try:
            client.starttls(context)
        except ssl.SSLCertVerificationError as exc:
            client.shutdown()
            raise RemoteError("tls", f"certificate of {host} not trusted: {exc.verify_message}", False) from exc
        except (ssl.SSLError, OSError, IMAPClientError) as exc:
            client.shutdown()
            raise RemoteError("starttls", f"STARTTLS with {host} failed: {exc}") from exc
    return client


class ImapRemote:
    def __init__(self, mailbox: Mailbox) -> None:
        self.mailbox = mailbox
        self.folder_key = mailbox.folder
        self._uidvalidity: int | None = None
        self._archive_ready = False
        self._open()

    def _open(self) -> None:
        mailbox = self.mailbox
        self._client = _connect(mailbox)
        try:
            if mailbox.auth_method == "oauth2":
                self._sign_in(mailbox)  # raises RemoteError itself
            else:
                self._client.login(mailbox.username, mailbox.password or "")
        except LoginError as exc:
            self._client.shutdown()
            raise RemoteError("login", f"the server refused the user name or password ({_text(exc)})", False) from exc
        except (IMAPClientError, OSError) as exc:
            self._client.shutdown()
            raise RemoteError("login", f"logging in failed: {_text(exc)}") from exc
        try:
            selected = self._client.select_folder(mailbox.folder)
        except imaplib.IMAP4.abort as exc:
            self.close()
            raise RemoteError("folder", f"the server closed the connection while opening {mailbox.folder!r}") from exc
        except IMAPClientError as exc:
            self.close()
            raise RemoteError("folder", f"cannot open folder {mailbox.folder!r}: {_text(exc)}", False) from exc
        uidvalidity = int(selected[b"UIDVALIDITY"])
        if self._uidvalidity is not None and uidvalidity != self._uidvalidity:
            self.close()
            raise RemoteError("folder", f"folder {mailbox.folder!r} was renumbered (UIDVALIDITY changed) during the poll")
        self._uidvalidity = uidvalidity
        self._caps = set(self._client.capabilities())

    def _sign_in(self, mailbox: Mailbox) -> None:
        """OAuth2 (XOAUTH2 or OAUTHBEARER): a token, refreshed once if the server refuses it."""
        if mailbox.oauth is None:
            self._client.shutdown()
            raise RemoteError("token", "this mailbox signs in with OAuth2 but has no OAuth2 settings", False)
        try:
            oauth_login.imap_sign_in(self._client._imap, self._client.capabilities(), mailbox.oauth,
                                     mailbox.host, mailbox.effective_port)
        except oauth_login.SignInError as exc:
            self._client.shutdown()
            raise RemoteError(exc.step, exc.message, exc.transient) from None
        except (imaplib.IMAP4.abort, OSError) as exc:
            self._client.shutdown()
            raise RemoteError("login", f"the connection broke while signing in ({_text(exc)})") from None

    def reopen(self) -> None:
        """Connect again after the server dropped the connection (same folder, same UIDVALIDITY)."""
        self.close()
        self._open()

    def uidvalidity(self) -> int:
        assert self._uidvalidity is not None
        return self._uidvalidity

    def list_ids(self) -> list[str]:
        with _talking("list", "listing the folder's messages"):
            return [str(uid) for uid in sorted(self._client.search("ALL"))]

    def fetch(self, ids: list[str], max_bytes: int) -> Iterator[Fetched]:
        uids = [int(i) for i in ids]
        with _talking("fetch", "reporting message sizes"):
            sizes = {uid: int(d[b"RFC822.SIZE"]) for uid, d in self._client.fetch(uids, ["RFC822.SIZE"]).items()
                     if b"RFC822.SIZE" in d}
        normal = [u for u in uids if u in sizes and sizes[u] <= max_bytes]
        large = [u for u in uids if u in sizes and sizes[u] > max_bytes]
        for chunk in _chunks_by_size(normal, sizes):
            # BODY.PEEK: importing must not set \Seen on the customer's mailbox.
            with _talking("fetch", "sending mail"):
                answer = self._client.fetch(chunk, ["BODY.PEEK[]"])
            for uid in chunk:
                body = answer.get(uid, {}).get(b"BODY[]")
                if body is not None:
                    yield Fetched(str(uid), bytes(body), sizes[uid])
            del answer
        for uid in large:
            with _talking("fetch", "sending the headers of an oversized mail"):
                answer = self._client.fetch([uid], ["BODY.PEEK[HEADER]"])
            header = answer.get(uid, {}).get(b"BODY[HEADER]")
            if header is not None:
                yield Fetched(str(uid), bytes(header), sizes[uid], truncated=True)

    def remove(self, ids: list[str]) -> None:
        uids = [int(i) for i in ids]
        archive = self.mailbox.archives
        step = "archive" if archive else "delete"
        for start in range(0, len(uids), BATCH):
            chunk = uids[start : start + BATCH]
            if archive:
                self._ensure_archive_folder()
                if b"MOVE" in self._caps:
                    with _talking(step, f"moving mail to {self.mailbox.archive_folder!r}"):
                        self._client.move(chunk, self.mailbox.archive_folder)
                    continue
                with _talking(step, f"copying mail to {self.mailbox.archive_folder!r}"):
                    self._client.copy(chunk, self.mailbox.archive_folder)
            with _talking(step, "removing imported mail"):
                self._client.add_flags(chunk, [imapclient.DELETED], silent=True)
                if b"UIDPLUS" in self._caps:
                    self._client.uid_expunge(chunk)
                else:
                    # Without UIDPLUS a plain EXPUNGE is all IMAP offers; it also
                    # removes what others flagged \Deleted, which they asked for.
                    self._client.expunge()

    def _ensure_archive_folder(self) -> None:
        if self._archive_ready:
            return
        name = self.mailbox.archive_folder
        with _talking("archive_folder", f"checking the archive folder {name!r}"):
            exists = self._client.folder_exists(name)
        if not exists:
            try:
                self._client.create_folder(name)
            except imaplib.IMAP4.abort as exc:
                raise RemoteError("archive_folder", f"the server closed the connection while creating {name!r}") from exc
            except IMAPClientError as exc:
                raise RemoteError("archive_folder", f"cannot create archive folder {name!r}: {_text(exc)}", False) from exc
        self._archive_ready = True

    def list_folders(self) -> list[str]:
        with _talking("folder", "listing folders"):
            return [name for _flags, _sep, name in self._client.list_folders()]

    # -- IDLE (RFC 2177) ---------------------------------------------------

    def can_idle(self) -> bool:
        return b"IDLE" in self._caps

    def wait_for_mail(self, seconds: float, stop: threading.Event | None = None) -> bool:
        """IDLE up to `seconds`; True as soon as the server reports new mail.

        Checks in one-second slices so that `stop` (a threading.Event) ends
        the wait promptly when the fetcher shuts down.
        """
        deadline = time.monotonic() + seconds
        news = False
        with _talking("idle", "waiting for new mail"):
            self._client.idle()
            try:
                while not news and time.monotonic() < deadline:
                    if stop is not None and stop.is_set():
                        break
                    for response in self._client.idle_check(timeout=min(1.0, max(deadline - time.monotonic(), 0.01))):
                        if len(response) >= 2 and response[1] in (b"EXISTS", b"RECENT"):
                            news = True
                        if response and response[0] == b"BYE":
                            raise RemoteError("idle", "the server ended the session while waiting for new mail")
            finally:
                self._client.idle_done()
        return news

    # ----------------------------------------------------------------------

    def close(self) -> None:
        try:
            self._client.logout()
        except Exception:  # noqa: BLE001 - closing a broken connection
            try:
                self._client.shutdown()
            except Exception:  # noqa: BLE001
                pass


def _chunks_by_size(uids: list[int], sizes: dict[int, int]) -> Iterator[list[int]]:
    chunk: list[int] = []
    total = 0
    for uid in uids:
        if chunk and (len(chunk) >= BATCH or total + sizes[uid] > BATCH_BYTES):
            yield chunk
            chunk, total = [], 0
        chunk.append(uid)
        total += sizes[uid]
    if chunk:
        yield chunk


