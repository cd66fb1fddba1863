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
    # Set when the server could not deliver this one message: it is not
    # stored, the rest of the batch is, and the next poll tries it again.
    error: str | None = None


class RemoteError(Exception):
    """A failure talking to the mail server, in words an administrator understands.

    `step` names what failed: dns, tcp, tls, starttls, login, folder, archive_folder,
    list, fetch, archive, delete, idle. `transient` errors are worth retrying as
    they are; the others need an administrator (wrong password, missing folder).
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


def can_idle(remote: Remote) -> bool:
    """True if this remote can wait for new mail (IMAP IDLE) instead of being polled."""
    check = getattr(remote, "can_idle", None)
    return bool(check and check())
