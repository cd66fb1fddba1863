"""The mail source for a mailbox: IMAP, POP3 or a local Maildir, by its account type.

The protocol modules are imported only when needed: a POP3-only fetcher never loads imapclient.
"""

from __future__ import annotations

from shared.mailboxes import Mailbox
from shared.mailserver.remote import Remote, RemoteError


def open_remote(mailbox: Mailbox) -> Remote:
    if mailbox.account_type == "imap":
        from shared.mailserver.imap import ImapRemote

        return ImapRemote(mailbox)
    if mailbox.account_type == "pop3":
        from shared.mailserver.pop3 import Pop3Remote

        return Pop3Remote(mailbox)
    if mailbox.account_type == "maildir":
        from shared.mailserver.maildir import MaildirRemote

        return MaildirRemote(mailbox)
    raise RemoteError("config", f"unknown account type {mailbox.account_type!r}", transient=False)
