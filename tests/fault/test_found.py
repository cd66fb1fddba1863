"""What the fault suite found, pinned down by fast tests of the stage where each bug was fixed.

- A NUL byte anywhere in a mail (header, body, file name) made the parser's
  INSERT into jsonb fail every time ("\\u0000 cannot be converted to text"):
  one in five mutated mails became a dead letter instead of a request.
- An auto-reply to an internationalised domain went to SMTP un-encoded
  (the checked, IDNA-encoded address was computed and thrown away):
  smtplib raised UnicodeEncodeError, the mail was dead-lettered and its row
  stayed 'sending' for ever.
"""

from __future__ import annotations

import pytest

from shared.db import transaction
from tests.integration.replier_helpers import add_mailbox, ingest, mail, replier, sink_settings

pytestmark = [pytest.mark.fault, pytest.mark.integration]

SUPPORT = "support@acme.test"


def test_a_mail_full_of_nul_bytes_becomes_a_request(app):
    mailbox = add_mailbox(app, SUPPORT, auto_reply=False)
    raw = (b"From: Nul\x00l <nul@customer.example>\r\nTo: support@acme.test\r\nSubject: Hello\x00 there\r\n"
           b"Message-ID: <nul-1@customer.example>\r\nMIME-Version: 1.0\r\n"
           b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\n"
           b"Body with \x00 a NUL\r\n--b\r\nContent-Type: text/plain\x00; name=\"a\x00.txt\"\r\n"
           b"Content-Disposition: attachment; filename=\"a\x00.txt\"\r\n\r\nfile\r\n--b--\r\n")
    [event] = ingest(app, mailbox, raw)
    assert event.type == "request.created"
    with transaction(app.pool) as conn:
        row = conn.execute("SELECT subject, body_text FROM history WHERE id = %s", (event["history_id"],)).fetchone()
    assert row["subject"] == "Hello there"
    assert "a NUL" in row["body_text"] and "\x00" not in row["body_text"]


def test_auto_reply_to_an_internationalised_domain_goes_out_idna_encoded(app, smtp_sink):
    sink_settings(app, smtp_sink)
    mailbox = add_mailbox(app, SUPPORT)
    [event] = ingest(app, mailbox, mail("Ana <ana@bücher.example>", SUPPORT))
    replier(app).handle([event])
    [reply] = smtp_sink.wait_for(1)
    assert reply.rcpt_tos == ["ana@xn--bcher-kva.example"]
