"""`deskmail mailbox test`: connect, log in, open the folder, check the archive folder.

Each step is reported in plain words; the first failure names the step
(dns, tcp, tls, starttls, token, login, folder, archive_folder) and stops the test.
A mailbox that signs in with OAuth2 also reports the token steps: token
endpoint reached, access token obtained or refreshed (or the stored one still
valid), sign-in accepted.
"""

from __future__ import annotations

from collections.abc import Iterator

from shared.mailboxes import Mailbox
from shared.mailserver.connect import open_remote
from shared.mailserver.remote import RemoteError


def check_mailbox(mailbox: Mailbox) -> Iterator[tuple[str, bool, str]]:
    where = f"{mailbox.host}:{mailbox.effective_port}" if mailbox.account_type != "maildir" else mailbox.host
    try:
        remote = open_remote(mailbox)
    except RemoteError as exc:
        yield from _passed_oauth_steps(mailbox)
        yield exc.step, False, str(exc).split(": ", 1)[-1]
        return
    try:
        yield "connect", True, f"{mailbox.account_type} over {mailbox.security} to {where}"
        if mailbox.oauth is not None:
            yield from _passed_oauth_steps(mailbox)
        else:
            yield "login", True, f"logged in as {mailbox.username}"
        count = len(remote.list_ids())
        yield "folder", True, f"{mailbox.folder!r} holds {count} message(s)"
        if mailbox.account_type == "pop3":
            yield "archive_folder", True, "POP3 cannot archive: imported mail is deleted once its request is saved"
        elif not mailbox.archive:
            yield "archive_folder", True, "archive is off: imported mail is deleted once its request is saved"
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


def _passed_oauth_steps(mailbox: Mailbox) -> Iterator[tuple[str, bool, str]]:
    """The OAuth2 steps that passed (a failed one comes back as the RemoteError)."""
    for step in getattr(mailbox.oauth, "steps", []):
        if step[1]:
            yield step
