"""What the poll needs from a remote mailbox, whatever the protocol.

A remote id is stable for the life of a message in the folder: an IMAP UID
(valid with its UIDVALIDITY), a POP3 UIDL, a Maildir file key. Nothing here
uses flags such as \\Seen: a person reading the mailbox changes those.
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Iterator
from contextlib import contextmanager
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


def server_text(exc: Exception) -> str:
    """A server's answer from a library exception, without Python's b'...' around it."""
    text = str(exc)
    return text[2:-1] if text.startswith("b'") else text


@contextmanager
def connecting(host: str, port: int, protocol: str, timeout: float,
               protocol_errors: tuple[type[Exception], ...]) -> Iterator[None]:
    """Turn what can go wrong while connecting into a RemoteError naming the step."""
    try:
        yield
    except socket.gaierror as exc:
        raise RemoteError("dns", f"cannot resolve {host}: {exc.strerror}") from exc
    except ssl.SSLCertVerificationError as exc:
        raise RemoteError("tls", f"certificate of {host} not trusted: {exc.verify_message}", False) from exc
    except ssl.SSLError as exc:
        raise RemoteError("tls", f"TLS handshake with {host}:{port} failed: {exc}") from exc
    except TimeoutError as exc:
        raise RemoteError("tcp", f"{host}:{port} did not answer within {timeout:.0f} s") from exc
    except OSError as exc:
        raise RemoteError("tcp", f"cannot connect to {host}:{port}: {exc.strerror or exc}") from exc
    except protocol_errors as exc:
        raise RemoteError("tcp", f"{host}:{port} does not speak {protocol}: {server_text(exc)}") from exc
