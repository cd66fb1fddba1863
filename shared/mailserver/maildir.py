"""A local Maildir as a mail source: the newcomer's demo and offline imports.

`host` is the Maildir's path; archiving moves a message into its
`.<archive_folder>` sub-folder, otherwise it is deleted. File keys are the
remote ids (stable while the file exists).
"""

from __future__ import annotations

import mailbox as stdlib_mailbox
from collections.abc import Iterator
from pathlib import Path

from shared.mailboxes import Mailbox
from shared.mailserver.remote import Fetched, RemoteError


class MaildirRemote:
    folder_key = ""

    def __init__(self, mailbox: Mailbox) -> None:
        path = Path(mailbox.host)
        if not (path / "cur").is_dir() and not (path / "new").is_dir():
            raise RemoteError("folder", f"{path} is not a Maildir (no cur/ or new/)", transient=False)
        self._box = stdlib_mailbox.Maildir(path, factory=None, create=False)
        self._archive = mailbox.archive_folder if mailbox.archives else None

    def uidvalidity(self) -> int:
        return 0

    def list_ids(self) -> list[str]:
        return sorted(self._box.keys())

    def fetch(self, ids: list[str], max_bytes: int) -> Iterator[Fetched]:
        for key in ids:
            try:
                data = self._box.get_bytes(key)
            except KeyError:
                continue  # removed by someone else meanwhile; nothing to import
            if len(data) > max_bytes:
                head = data.split(b"\n\n", 1)[0] + b"\n\n"
                yield Fetched(key, head, len(data), truncated=True)
            else:
                yield Fetched(key, data, len(data))

    def remove(self, ids: list[str]) -> None:
        target = None
        if self._archive:
            target = self._box.add_folder(self._archive)
        for key in ids:
            try:
                if target is not None:
                    target.add(self._box.get_bytes(key))
                self._box.remove(key)
            except KeyError:
                continue  # already gone: removal is idempotent

    def close(self) -> None:
        self._box.close()
