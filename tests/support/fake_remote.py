"""A mail server in memory, for the fetcher's own tests: the `Remote` protocol with scripted failures.

What the real servers do is tested against Dovecot (tests/integration/
test_fetcher_protocols.py); these fakes serve the fetcher's logic: which
ids it asks for, what it stores, what it removes and when, and how it
isolates a message the server cannot deliver.
"""

from __future__ import annotations

from collections.abc import Iterator

from shared.events import Event
from shared.mailserver.remote import Fetched, RemoteError


class FakeRemote:
    """Messages by remote id. `failures[id] = n`: the next n fetches that reach it break the connection.

    A broken connection fails every fetch until `reopen` (as a dropped IMAP
    connection does); `reopenable=False` makes a remote without `reopen`
    (as the Maildir source has none).
    """

    def __init__(self, messages: dict[str, bytes] | None = None, *, uidvalidity: int = 1,
                 folder: str = "INBOX", reopenable: bool = True) -> None:
        self.messages = dict(messages or {})
        self.folder_key = folder
        self._uidvalidity = uidvalidity
        self.failures: dict[str, int] = {}
        self.broken = False
        self.fetched: list[list[str]] = []  # the ids of each fetch call
        self.removed: list[str] = []
        self.reopened = 0
        if reopenable:
            self.reopen = self._reopen

    def uidvalidity(self) -> int:
        return self._uidvalidity

    def list_ids(self) -> list[str]:
        return sorted(self.messages, key=lambda i: (len(i), i))

    def fetch(self, ids: list[str], max_bytes: int) -> Iterator[Fetched]:
        self.fetched.append(list(ids))
        for remote_id in ids:
            if self.broken:
                raise RemoteError("fetch", "the connection is closed")
            if self.failures.get(remote_id, 0) > 0:
                self.failures[remote_id] -= 1
                self.broken = True
                raise RemoteError("fetch", f"the server closed the connection while fetching {remote_id}")
            data = self.messages.get(remote_id)
            if data is None:
                continue  # removed meanwhile
            if len(data) > max_bytes:
                yield Fetched(remote_id, data.split(b"\r\n\r\n", 1)[0] + b"\r\n\r\n", len(data), truncated=True)
            else:
                yield Fetched(remote_id, data, len(data))

    def _reopen(self) -> None:
        self.reopened += 1
        self.broken = False

    def remove(self, ids: list[str]) -> None:
        for remote_id in ids:
            self.removed.append(remote_id)
            self.messages.pop(remote_id, None)

    def close(self) -> None:
        pass


class FakePublisher:
    """Records what the poll publishes; `fail` makes the next publish raise (broker down, no confirm)."""

    def __init__(self) -> None:
        self.published: list[Event] = []
        self.fail: Exception | None = None

    def publish_events(self, exchange: object, routing_key: str, events: list[Event]) -> int:
        if self.fail is not None:
            error, self.fail = self.fail, None
            raise error
        assert routing_key == "parse"
        self.published.extend(events)
        return len(events)

    def raw_ids(self) -> list[int]:
        return [e["raw_id"] for e in self.published]


def mail(n: int, size: int = 0) -> bytes:
    """A small, distinct mail (its bytes are its identity in the ledger's content hash)."""
    body = "It prints blank pages." + "\r\n" + "x" * size
    return (f"From: Customer {n} <c{n}@example.com>\r\nTo: support@example.test\r\nSubject: Mail {n}\r\n"
            f"Message-ID: <fake-{n}@example.com>\r\n\r\n{body}\r\n").encode()
