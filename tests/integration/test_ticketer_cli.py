"""`deskmail requests list | show | unmatched` on what the ticketer recorded."""

from __future__ import annotations

import json
from pathlib import Path

import psycopg
import pytest
from psycopg.rows import dict_row

from services.cli import main
from services.ticketer.stage import TicketerHandler
from tests.conftest import stage_env
from tests.integration.test_ticketer_support import eml, make_mailbox, parsed_event, store

pytestmark = pytest.mark.integration

BOUNCE = Path(__file__).resolve().parents[1] / "data" / "parser" / "bounce_dsn.eml"


@pytest.fixture
def recorded(settings, database_url, app, monkeypatch):
    for key, value in stage_env(settings).items():
        monkeypatch.setenv(key, value)
    with psycopg.connect(database_url, row_factory=dict_row) as conn:
        mailbox = make_mailbox(conn)
        handler = TicketerHandler(app.pool, app.keys.message_id_key)
        raw = (b"From: Alice <alice@example.com>\r\nTo: support@acme.test\r\nSubject: Invoice\r\n"
               b"Message-ID: <inv@x>\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n"
               b"--b\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n--b\r\nContent-Type: application/pdf\r\n"
               b"Content-Disposition: attachment; filename=inv.pdf\r\n\r\n%PDF\r\n--b--\r\n")
        ids = [store(conn, mailbox["id"], raw),
               store(conn, mailbox["id"], eml("inv2@x", in_reply_to="inv@x", subject="Re: Invoice"))]
        out = handler.handle([parsed_event(r, mailbox["id"]) for r in ids])
        request_id = out[0][1]["request_id"]
        conn.execute("INSERT INTO outgoing_mail (request_id, kind, message_id, to_address, state)"
                     " VALUES (%s, 'staff_reply', 'out-1@acme.test', 'alice@example.com', 'sent')", (request_id,))
        conn.commit()
        bounce = store(conn, mailbox["id"], BOUNCE.read_bytes().replace(b"reply-1001@example.test", b"out-1@acme.test"))
        stray = store(conn, mailbox["id"], BOUNCE.read_bytes().replace(b"bounce-1@", b"bounce-2@"))
        handler.handle([parsed_event(bounce, mailbox["id"]), parsed_event(stray, mailbox["id"])])
    return request_id, stray


def test_list_and_show_json(recorded, capsys):
    request_id, _ = recorded
    assert main(["requests", "list", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [(r["id"], r["entries"], r["failed_outgoing"]) for r in rows] == [(request_id, 3, 1)]
    assert main(["requests", "show", str(request_id), "--json"]) == 0
    detail = json.loads(capsys.readouterr().out)
    assert detail["customer"] == "alice@example.com" and detail["people"] == ["alice@example.com"]
    assert [h["automatic"] for h in detail["history"]] == [None, None, "bounce"]
    assert detail["history"][0]["attachments"][0]["filename"] == "inv.pdf"
    assert detail["outgoing"][0]["state"] == "failed"


def test_show_text_and_missing_request(recorded, capsys):
    request_id, _ = recorded
    assert main(["requests", "show", str(request_id)]) == 0
    text = capsys.readouterr().out
    assert "[attachment] inv.pdf" in text and "(automatic: bounce)" in text and ": failed (bounced: 5.1.1" in text
    assert main(["requests", "show", "999999"]) == 1
    assert "no request 999999" in capsys.readouterr().err


def test_unmatched_lists_and_marks_seen(recorded, capsys):
    _, stray = recorded
    assert main(["requests", "unmatched"]) == 0
    text = capsys.readouterr().out
    assert f"raw {stray}" in text and "not one Deskmail sent or received" in text
    assert main(["requests", "unmatched", "--seen", str(stray), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == []
    assert main(["requests", "unmatched", "--all", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["seen_at"] is not None
