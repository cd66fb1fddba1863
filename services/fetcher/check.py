"""`deskmail mailbox test`: connect, log in, open the folder, check the archive folder.

Each step is reported in plain words; the first failure names the step
(dns, tcp, tls, starttls, login, folder, archive_folder) and stops the test.
"""

from __future__ import annotations

from collections.abc import Iterator

from services.fetcher.poll import open_remote
from services.fetcher.remote import RemoteError
from shared.mailboxes import Mailbox


def check_mailbox(mailbox: Mailbox) -> Iterator[tuple[str, bool, str]]:
    where = f"{mailbox.host}:{mailbox.effective_port}" if mailbox.account_type != "maildir" else mailbox.host
    try:
        remote = open_remote(mailbox)
    except RemoteError as exc:
        yield exc.step, False, str(exc).split(": ", 1)[-1]
        return
    try:
        yield "connect", True, f"{mailbox.account_type} over {mailbox.security} to {where}"
        yield "login", True, f"logged in as {mailbox.username}"
        count = len(remote.list_ids())
        yield "folder", True, f"{mailbox.folder!r} holds {count} message(s)"
        if mailbox.archives and hasattr(remote, "list_folders"):
            exists = mailbox.archive_folder in remote.list_folders()
            yield "archive_folder", True, (
                f"{mailbox.archive_folder!r} exists" if exists
                else f"{mailbox.archive_folder!r} does not exist yet; it is created on the first archive"
            )
    except RemoteError as exc:
        yield exc.step, False, str(exc).split(": ", 1)[-1]
    except Exception as exc:  # noqa: BLE001 - report anything else plainly too
        yield "folder", False, f"unexpected answer from the server: {exc}"
    finally:
        remote.close()
