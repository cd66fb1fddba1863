"""Talking to mail servers: every connection Deskmail opens to an IMAP, POP3 or SMTP server.

The fetcher, the replier and the admin layer all connect through here, so a
mailbox's TLS, login and error words are the same wherever it is used:

    remote.py    what a mail source offers the fetcher (`Remote`), `RemoteError` naming the failed step
    connect.py   `open_remote`: the IMAP, POP3 or Maildir source for a mailbox
    imap.py      IMAP (imapclient): UIDVALIDITY, MOVE or COPY + UID EXPUNGE, IDLE
    pop3.py      POP3 (poplib): UIDL, TOP for oversized mail, DELE
    maildir.py   a local Maildir (the demo, offline imports)
    smtp.py      sending: kept sessions, Refused / Transient / Ambiguous, `check` for `deskmail smtp test`
    tls.py       TLS client contexts, verified unless a mailbox or SMTP setting allows a self-signed certificate
    probe.py     `check_mailbox`: a mailbox's connection test, step by step

What to do with the mail (the ledger, polling, leases, composing replies)
stays with the stage that does it.
"""
