"""The private test Dovecot (scripts/dovecot.sh) and test-side mailbox helpers.

Every user name logs in with ``PASSWORD`` and owns a fresh Maildir, so a test
isolates itself by calling ``new_user()``; nothing is ever cleaned up.

The helpers talk IMAP through imapclient, independently of the code under
test, to seed mailboxes and to check what the product did to them. Note that
IMAP returns messages with CRLF line endings whatever was appended.
"""

from __future__ import annotations

import os
import re
import ssl
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path

from imapclient import IMAPClient

# Must match scripts/dovecot.sh.
HOST = "127.0.0.1"
IMAP_PORT = 10143
IMAPS_PORT = 10993
POP3_PORT = 10110
POP3S_PORT = 10995
PASSWORD = "secret"
STATE_DIR = Path(os.environ.get("DOVECOT_DIR", "/tmp/deskmail-dovecot")).absolute()
TLS_DIR = STATE_DIR / "tls"
CA_FILE = TLS_DIR / "cert.pem"
LOG_FILE = STATE_DIR / "dovecot.log"

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "dovecot.sh"
TIMEOUT = 10.0  # seconds; a local server that is slower than this is broken


@cache
def ensure_dovecot() -> None:
    """Start the test Dovecot unless it runs already; once per process."""
    # The script is idempotent and locks against concurrent callers, so
    # parallel test workers may all call this.
    result = subprocess.run(
        ["bash", str(SCRIPT), "start"],
        capture_output=True,
        text=True,
        timeout=300,  # a fresh machine installs the packages first
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(
            f"{SCRIPT} start failed (exit {result.returncode}):\n{result.stdout}{result.stderr}"
        )


def ssl_context() -> ssl.SSLContext:
    """A client context that trusts the test certificate and checks host names."""
    return ssl.create_default_context(cafile=str(CA_FILE))


def new_user(prefix: str = "user") -> str:
    """A user name nobody has used, hence an empty mailbox."""
    # Dovecot lower-cases user names (username_format %Lu); keep them lower
    # case so the name a test holds is the name the server knows.
    clean = re.sub(r"[^a-z0-9._-]+", "-", prefix.lower()).strip("-") or "user"
    return f"{clean}-{uuid.uuid4().hex[:12]}"


@contextmanager
def imap(user: str, *, tls: bool = True) -> Iterator[IMAPClient]:
    """A logged-in IMAP connection (IMAPS unless ``tls`` is false)."""
    if tls:
        client = IMAPClient(HOST, IMAPS_PORT, ssl=True, ssl_context=ssl_context(), timeout=TIMEOUT)
    else:
        client = IMAPClient(HOST, IMAP_PORT, ssl=False, timeout=TIMEOUT)
    try:
        client.login(user, PASSWORD)
        yield client
    finally:
        try:
            client.logout()
        except (OSError, IMAPClient.Error):
            client.shutdown()


def create_folder(user: str, folder: str) -> None:
    """Create ``folder`` unless it exists."""
    with imap(user) as client:
        _ensure_folder(client, folder)


def folder_exists(user: str, folder: str) -> bool:
    with imap(user) as client:
        return bool(client.folder_exists(folder))


def append(user: str, messages: list[bytes], folder: str = "INBOX") -> list[int]:
    """Append raw messages in order over one connection; return their UIDs."""
    if not messages:
        return []
    with imap(user) as client:
        _ensure_folder(client, folder)
        # One MULTIAPPEND round trip (RFC 3502) for the whole batch; it hands
        # back imaplib's raw (status, lines) rather than raising on NO.
        status, lines = client.multiappend(folder, messages)
    text = b" ".join(line for line in lines if isinstance(line, bytes)).decode()
    uids = _appended_uids(text) if status == "OK" else []
    if len(uids) != len(messages):
        raise RuntimeError(f"APPEND of {len(messages)} messages answered {status} {text!r}")
    return uids


def list_uids(user: str, folder: str = "INBOX") -> list[int]:
    """UIDs of the messages in ``folder``, ascending.

    Messages flagged \\Deleted but not yet expunged are still listed: they are
    still in the mailbox, and hiding them could hide a missing EXPUNGE.
    """
    with imap(user) as client:
        client.select_folder(folder, readonly=True)
        return sorted(client.search(["ALL"]))


def fetch_all(user: str, folder: str = "INBOX") -> list[bytes]:
    """Raw messages in ``folder`` in UID order, without setting \\Seen."""
    with imap(user) as client:
        client.select_folder(folder, readonly=True)
        uids = sorted(client.search(["ALL"]))
        if not uids:
            return []
        fetched = client.fetch(uids, [b"BODY.PEEK[]"])
        return [fetched[uid][b"BODY[]"] for uid in uids]


def folder_count(user: str, folder: str = "INBOX") -> int:
    """Number of messages in ``folder`` (raises if the folder does not exist)."""
    with imap(user) as client:
        return int(client.folder_status(folder, [b"MESSAGES"])[b"MESSAGES"])


def uidvalidity(user: str, folder: str = "INBOX") -> int:
    with imap(user) as client:
        return int(client.folder_status(folder, [b"UIDVALIDITY"])[b"UIDVALIDITY"])


def _ensure_folder(client: IMAPClient, folder: str) -> None:
    if not client.folder_exists(folder):
        client.create_folder(folder)


def _appended_uids(text: str) -> list[int]:
    """UIDs from a ``[APPENDUID <uidvalidity> <uid-set>]`` response (RFC 4315)."""
    match = re.search(r"APPENDUID \d+ ([\d:,]+)", text)
    if match is None:
        return []
    uids: list[int] = []
    for part in match.group(1).split(","):
        first, _, last = part.partition(":")
        uids.extend(range(int(first), int(last or first) + 1))
    return uids
