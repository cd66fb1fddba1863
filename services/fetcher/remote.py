"""What the poll needs from a remote mailbox, whatever the protocol.

A remote id is stable for the life of a message in the folder: an IMAP UID
(valid with its UIDVALIDITY), a POP3 UIDL, a Maildir file key. Nothing here
uses flags such as \\Seen: a person reading the mailbox changes those.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol


@dataclass
class Fetched:
    remote_id: str
    data: bytes
    size: int  # the size on the server; larger than len(data) when truncated
    truncated: bool = False


class RemoteError(Exception):
    """A failure talking to the mail server, in words an administrator understands.

    `step` names what failed: dns, tcp, tls, starttls, login, folder, archive_folder, fetch, archive.
    """

    def __init__(self, step: str, message: str, transient: bool = True) -> None:
        self.step = step
        self.transient = transient
        super().__init__(f"{step}: {message}")


class Remote(Protocol):
    folder_key: str  # part of the idempotency key: the folder for IMAP, '' otherwise

    def uidvalidity(self) -> int: ...

    def list_ids(self) -> list[str]: ...

    def fetch(self, ids: list[str], max_bytes: int) -> Iterator[Fetched]: ...

    def remove(self, ids: list[str]) -> None: ...  # archive or delete, per the mailbox

    def close(self) -> None: ...
