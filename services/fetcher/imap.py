"""IMAP as a mail source (imapclient).

UIDVALIDITY and UIDs
--------------------
A UID names a message in a folder only together with the folder's
UIDVALIDITY. If the server changes UIDVALIDITY (folder recreated, server
migrated), every UID is new: the poll then recognises already imported mail
by its content hash instead of its UID (see store.py), so nothing is imported
twice and nothing is lost.

Removal
-------
Archive: UID MOVE where the server offers MOVE, else UID COPY + \\Deleted +
UID EXPUNGE of just those UIDs (never a bare EXPUNGE, which would also remove
what a person marked deleted). Delete: \\Deleted + UID EXPUNGE. Both in
batches: one MOVE of 500 UIDs costs about what 10 single MOVEs do.
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Iterator

import imapclient
from imapclient.exceptions import IMAPClientError, LoginError

from services.fetcher.remote import Fetched, RemoteError
from services.fetcher.tls import client_context
from shared.mailboxes import Mailbox

BATCH = 500
TIMEOUT = 60.0


def _connect(mailbox: Mailbox) -> imapclient.IMAPClient:
    context = client_context(mailbox.allow_self_signed)
    host, port = mailbox.host, mailbox.effective_port
    try:
        client = imapclient.IMAPClient(
            host, port=port, ssl=mailbox.security == "tls", ssl_context=context, timeout=TIMEOUT
        )
    except socket.gaierror as exc:
        raise RemoteError("dns", f"cannot resolve {host}: {exc.strerror}") from exc
    except ssl.SSLCertVerificationError as exc:
        raise RemoteError("tls", f"certificate of {host} not trusted: {exc.verify_message}", False) from exc
    except ssl.SSLError as exc:
        raise RemoteError("tls", f"TLS handshake with {host}:{port} failed: {exc}") from exc
    except OSError as exc:
        raise RemoteError("tcp", f"cannot connect to {host}:{port}: {exc.strerror or exc}") from exc
    if mailbox.security == "starttls":
        if b"STARTTLS" not in client.capabilities():
            client.shutdown()
            raise RemoteError("starttls", f"{host} does not offer STARTTLS; refusing to log in in plain text", False)
        try:
            client.starttls(context)
        except ssl.SSLCertVerificationError as exc:
            raise RemoteError("tls", f"certificate of {host} not trusted: {exc.verify_message}", False) from exc
        except (ssl.SSLError, IMAPClientError) as exc:
            raise RemoteError("starttls", f"STARTTLS with {host} failed: {exc}") from exc
    return client


class ImapRemote:
    def __init__(self, mailbox: Mailbox) -> None:
        self.mailbox = mailbox
        self.folder_key = mailbox.folder
        self._client = _connect(mailbox)
        try:
            self._client.login(mailbox.username, mailbox.password or "")
        except LoginError as exc:
            self._client.shutdown()
            raise RemoteError("login", f"the server refused the user name or password ({_text(exc)})", False) from exc
        try:
            selected = self._client.select_folder(mailbox.folder)
        except IMAPClientError as exc:
            self.close()
            raise RemoteError("folder", f"cannot open folder {mailbox.folder!r}: {_text(exc)}", False) from exc
        self._uidvalidity = int(selected[b"UIDVALIDITY"])
        self._caps = set(self._client.capabilities())
        self._archive_ready = False

    def uidvalidity(self) -> int:
        return self._uidvalidity

    def list_ids(self) -> list[str]:
        return [str(uid) for uid in sorted(self._client.search("ALL"))]

    def fetch(self, ids: list[str], max_bytes: int) -> Iterator[Fetched]:
        uids = [int(i) for i in ids]
        sizes = {uid: int(d[b"RFC822.SIZE"]) for uid, d in self._client.fetch(uids, ["RFC822.SIZE"]).items()}
        normal = [u for u in uids if u in sizes and sizes[u] <= max_bytes]
        large = [u for u in uids if u in sizes and sizes[u] > max_bytes]
        for start in range(0, len(normal), BATCH):
            chunk = normal[start : start + BATCH]
            # BODY.PEEK: importing must not set \Seen on the customer's mailbox.
            for uid, data in self._client.fetch(chunk, ["BODY.PEEK[]"]).items():
                body = data.get(b"BODY[]")
                if body is not None:
                    yield Fetched(str(uid), bytes(body), sizes[uid])
        for uid in large:
            for _, data in self._client.fetch([uid], ["BODY.PEEK[HEADER]"]).items():
                yield Fetched(str(uid), bytes(data.get(b"BODY[HEADER]") or b""), sizes[uid], True)

    def remove(self, ids: list[str]) -> None:
        uids = [int(i) for i in ids]
        for start in range(0, len(uids), BATCH):
            chunk = uids[start : start + BATCH]
            if self.mailbox.archives:
                self._ensure_archive_folder()
                if b"MOVE" in self._caps:
                    self._client.move(chunk, self.mailbox.archive_folder)
                    continue
                self._client.copy(chunk, self.mailbox.archive_folder)
            self._client.add_flags(chunk, [imapclient.DELETED], silent=True)
            if b"UIDPLUS" in self._caps:
                self._client.uid_expunge(chunk)
            else:
                self._client.expunge()

    def _ensure_archive_folder(self) -> None:
        if self._archive_ready:
            return
        name = self.mailbox.archive_folder
        if not self._client.folder_exists(name):
            try:
                self._client.create_folder(name)
            except IMAPClientError as exc:
                raise RemoteError("archive_folder", f"cannot create archive folder {name!r}: {_text(exc)}", False) from exc
        self._archive_ready = True

    def list_folders(self) -> list[str]:
        return [name for _flags, _sep, name in self._client.list_folders()]

    def close(self) -> None:
        try:
            self._client.logout()
        except Exception:  # noqa: BLE001 - closing a broken connection
            try:
                self._client.shutdown()
            except Exception:  # noqa: BLE001
                pass


def _text(exc: Exception) -> str:
    text = str(exc)
    return text[2:-1] if text.startswith("b'") else text
