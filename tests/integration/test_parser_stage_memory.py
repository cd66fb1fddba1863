"""The parser stage reads mail in bounded pieces: a big mail and a batch of many still come out whole.

A raw mail over PIECE_BYTES is read with several substring queries (so that
libpq's input buffer never grows to the mail's size) and a batch is read in
chunks of CHUNK_BYTES; both must hand the parser exactly the stored bytes.
"""

from __future__ import annotations

import base64
import random

import pytest

from services.parser import stage as parser_stage
from services.parser.stage import ParserHandler
from shared.events import MAIL_RECEIVED, Event
from tests.support.mailstore import store_mail

pytestmark = pytest.mark.integration


def attachment_mail(n: int, data: bytes) -> bytes:
    encoded = base64.encodebytes(data).replace(b"\n", b"\r\n")
    return (
        f"From: a{n}@example.com\r\nTo: support@example.test\r\nSubject: scan {n}\r\n"
        f"Message-ID: <big{n}@example.com>\r\nDate: Mon, 08 Jan 2024 10:00:00 +0100\r\nMIME-Version: 1.0\r\n"
        'Content-Type: multipart/mixed; boundary="b"\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nhere\r\n'
        '--b\r\nContent-Type: application/pdf\r\nContent-Transfer-Encoding: base64\r\n'
        'Content-Disposition: attachment; filename="scan.pdf"\r\n\r\n'
    ).encode() + encoded + b"--b--\r\n"


def test_big_mail_and_chunked_batch_are_parsed_from_the_exact_bytes(app, monkeypatch):
    monkeypatch.setattr(parser_stage, "PIECE_BYTES", 64 * 1024)  # a 300 KB mail: five pieces
    monkeypatch.setattr(parser_stage, "CHUNK_BYTES", 200 * 1024)  # the small ones: several chunks
    rng = random.Random(5)
    attachments = [rng.randbytes(220_000)] + [rng.randbytes(30_000) for _ in range(9)]
    with app.pool.connection() as conn:
        mailbox_id = conn.execute(
            "INSERT INTO mailboxes (from_name, address, host, username, account_type)"
            " VALUES ('Support', 'support@example.test', 'localhost', 'u', 'imap') RETURNING id").fetchone()["id"]
        raw_ids = [store_mail(conn, mailbox_id, attachment_mail(n, data)) for n, data in enumerate(attachments)]
        conn.commit()
    outputs = ParserHandler(app.pool).handle(
        [Event(MAIL_RECEIVED, {"raw_id": r, "mailbox_id": mailbox_id}) for r in raw_ids])
    assert [e["raw_id"] for _, e in outputs] == raw_ids
    with app.pool.connection() as conn:
        parsed = {r["raw_id"]: r["parsed"] for r in conn.execute("SELECT raw_id, parsed FROM parsed_messages")}
        blobs = {r["sha256"]: bytes(r["data"]) for r in conn.execute("SELECT sha256, data FROM blobs")}
    assert sorted(parsed) == sorted(raw_ids)
    for raw_id, data in zip(raw_ids, attachments, strict=True):
        [attachment] = parsed[raw_id]["attachments"]
        assert attachment["size"] == len(data)
        assert blobs[attachment["sha256"]] == data
        assert parsed[raw_id]["defects"] == []
