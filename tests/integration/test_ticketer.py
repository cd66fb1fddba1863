"""The ticketer on the real PostgreSQL: threading rules, the subject-tag hijack,
reopening, bounces, unparsed mail and redelivery.

TicketerHandler.handle is called directly (the broker is not the point here;
test_ticketer_concurrency.py runs real Workers on RabbitMQ).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg.rows import dict_row

from services.ticketer.stage import TicketerHandler
from shared.events import REQUEST_CREATED, REQUEST_UPDATED
from shared.msgid import make_message_id
from shared.parsed import ParsedMessage
from tests.integration.test_ticketer_support import eml, make_mailbox, one, parsed_event, store

pytestmark = pytest.mark.integration

DATA = Path(__file__).resolve().parents[1] / "data" / "parser"


@pytest.fixture
def db(database_url: str) -> Iterator[psycopg.Connection]:
    with psycopg.connect(database_url, row_factory=dict_row) as conn:
        yield conn


@pytest.fixture
def mailbox(db: psycopg.Connection) -> dict:
    return make_mailbox(db)


@pytest.fixture
def ticketer(app) -> TicketerHandler:
    return TicketerHandler(app.pool, app.keys.message_id_key)


class Feed:
    """Store a mail and run it through the handler; returns the one event it produced."""

    def __init__(self, db: psycopg.Connection, mailbox: dict, ticketer: TicketerHandler) -> None:
        self.db, self.mailbox, self.ticketer = db, mailbox, ticketer

    def store(self, raw: bytes, parsed: ParsedMessage | None = None) -> int:
        return store(self.db, self.mailbox["id"], raw, parsed)

    def handle(self, *raw_ids: int) -> list:
        outputs = self.ticketer.handle([parsed_event(r, self.mailbox["id"]) for r in raw_ids])
        assert all(stage == "reply" for stage, _ in outputs)
        return [event for _, event in outputs]

    def __call__(self, raw: bytes, parsed: ParsedMessage | None = None):
        events = self.handle(self.store(raw, parsed))
        return events[0] if events else None


@pytest.fixture
def feed(db, mailbox, ticketer) -> Feed:
    return Feed(db, mailbox, ticketer)


def count(db, table: str) -> int:
    return one(db, f"SELECT count(*) FROM {table}")


# -- rule 3: a new request ---------------------------------------------------


def test_new_mail_creates_request_with_customer_people_history(feed, db, mailbox):
    event = feed(eml("a1@example.com", cc="Bob <bob@example.com>"))
    assert event.type == REQUEST_CREATED and event["automatic"] is None
    req = db.execute("SELECT * FROM requests WHERE id = %s", (event["request_id"],)).fetchone()
    assert req["mailbox_id"] == mailbox["id"] and req["category_id"] == mailbox["category_id"]
    assert req["subject"] == "Printer broken" and req["status"] == "open" and not req["unparsed"]
    cust = db.execute("SELECT * FROM customers WHERE id = %s", (req["customer_id"],)).fetchone()
    assert (cust["address"], cust["name"]) == ("alice@example.com", "Alice")
    people = {r["address"] for r in db.execute("SELECT address FROM request_people")}
    assert people == {"alice@example.com", "bob@example.com"}  # not our own support address
    h = db.execute("SELECT * FROM history WHERE id = %s", (event["history_id"],)).fetchone()
    assert h["outcome"] == "created" and h["message_id"] == "a1@example.com"
    assert "does not print" in h["body_text"] and h["raw_id"] is not None
    assert one(db, "SELECT state FROM remote_messages WHERE raw_id = %s", h["raw_id"]) == "committed"


def test_attachments_are_linked_and_blobs_stored_once(feed, db):
    raw = (b"From: a@example.com\r\nTo: support@acme.test\r\nSubject: pics\r\nMessage-ID: <att@x>\r\n"
           b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n"
           b"Content-Type: text/plain\r\n\r\nsee attached\r\n--b\r\nContent-Type: application/pdf\r\n"
           b"Content-Disposition: attachment; filename=a.pdf\r\nContent-Transfer-Encoding: base64\r\n\r\n"
           b"JVBERi0xLjQK\r\n--b--\r\n")
    first = feed(raw)
    second = feed(raw.replace(b"<att@x>", b"<att2@x>"))
    rows = db.execute("SELECT history_id, filename, sha256 FROM attachments ORDER BY id").fetchall()
    assert [r["history_id"] for r in rows] == [first["history_id"], second["history_id"]]
    assert rows[0]["filename"] == "a.pdf" and rows[0]["sha256"] == rows[1]["sha256"]
    assert count(db, "blobs") == 1


# -- rule 1: Message-IDs ------------------------------------------------------


def test_reply_by_in_reply_to_updates_and_keeps_customer_name_current(feed, db):
    first = feed(eml("p1@example.com", sender="alice@example.com"))
    reply = feed(eml("p2@example.com", sender="Alice Smith <ALICE@example.com>", subject="Re: Printer broken",
                     in_reply_to="p1@example.com"))
    assert reply.type == REQUEST_UPDATED and reply["request_id"] == first["request_id"]
    assert count(db, "requests") == 1 and count(db, "customers") == 1
    assert one(db, "SELECT name FROM customers") == "Alice Smith"
    feed(eml("p3@example.com", sender="alice@example.com", in_reply_to="p2@example.com"))
    assert one(db, "SELECT name FROM customers") == "Alice Smith"  # an empty name does not erase it


def test_reply_by_older_reference_only(feed, db):
    first = feed(eml("r1@example.com"))
    reply = feed(eml("r3@example.com", in_reply_to="unknown@elsewhere",
                     references=["r1@example.com", "unknown@elsewhere"]))
    assert reply["request_id"] == first["request_id"]


def test_reply_to_our_signed_message_id_and_tampered_one(feed, db, app):
    first = feed(eml("s1@example.com"))
    rid = first["request_id"]
    ours = make_message_id(rid, 7, app.keys.message_id_key, "deskmail.test")
    reply = feed(eml("s2@example.com", sender="other@example.org", in_reply_to=ours))
    assert reply.type == REQUEST_UPDATED and reply["request_id"] == rid
    tampered = ours.replace(f"dm.{rid}.", f"dm.{rid}.1")  # another outgoing id, same signature
    forged = feed(eml("s3@example.com", sender="mallory@evil.test", in_reply_to=tampered))
    assert forged.type == REQUEST_CREATED and forged["request_id"] != rid


def test_reply_to_outgoing_mail_recorded_by_id(feed, db):
    first = feed(eml("o1@example.com"))
    db.execute("INSERT INTO outgoing_mail (request_id, kind, message_id, to_address, state)"
               " VALUES (%s, 'staff_reply', 'legacy-out@acme.test', 'alice@example.com', 'sent')",
               (first["request_id"],))
    db.commit()
    reply = feed(eml("o2@example.com", in_reply_to="legacy-out@acme.test"))
    assert reply["request_id"] == first["request_id"]


def test_references_to_two_requests_prefer_in_reply_to(feed, db):
    a = feed(eml("two-a@example.com"))
    b = feed(eml("two-b@example.com", sender="bob@example.com"))
    # In-Reply-To names B; References lists B last and A first.
    reply = feed(eml("two-c@example.com", in_reply_to="two-a@example.com",
                     references=["two-b@example.com", "two-a@example.com"]))
    assert reply["request_id"] == a["request_id"]
    reply2 = feed(eml("two-d@example.com", references=["two-a@example.com", "two-b@example.com"]))
    assert reply2["request_id"] == b["request_id"]  # no In-Reply-To: newest reference first


def test_reply_before_parent_in_separate_batches_and_same_batch(feed, db):
    reply = feed(eml("late-b@example.com", in_reply_to="late-a@example.com", references=["late-a@example.com"]))
    parent = feed(eml("late-a@example.com"))
    assert parent.type == REQUEST_UPDATED and parent["request_id"] == reply["request_id"]
    # Same batch, reply first.
    b = feed.store(eml("sb-b@example.com", in_reply_to="sb-a@example.com"))
    a = feed.store(eml("sb-a@example.com"))
    events = feed.handle(b, a)
    assert [e.type for e in events] == [REQUEST_CREATED, REQUEST_UPDATED]
    assert events[0]["request_id"] == events[1]["request_id"]
    assert count(db, "requests") == 2


def test_chain_arriving_c_a_b_is_one_request(feed, db):
    c = feed(eml("ch-c@example.com", in_reply_to="ch-b@example.com", references=["ch-a@example.com", "ch-b@example.com"]))
    a = feed(eml("ch-a@example.com"))
    b = feed(eml("ch-b@example.com", in_reply_to="ch-a@example.com", references=["ch-a@example.com"]))
    assert a["request_id"] == b["request_id"] == c["request_id"]
    assert count(db, "requests") == 1 and count(db, "history") == 3


# -- rule 2: the subject tag -----------------------------------------------------


def test_subject_tag_from_customer_and_from_someone_on_the_conversation(feed, db):
    first = feed(eml("t1@example.com", cc="bob@example.com"))
    rid = first["request_id"]
    by_customer = feed(eml("t2@example.com", subject=f"Still broken [#{rid}]"))
    by_cc = feed(eml("t3@example.com", sender="Bob <BOB@example.com>", subject=f"Re: [#{rid}] toner"))
    assert by_customer["request_id"] == rid and by_cc["request_id"] == rid
    assert count(db, "requests") == 1


def test_subject_tag_from_a_stranger_is_a_new_request_mentioning_the_tag(feed, db):
    first = feed(eml("h1@example.com"))
    rid = first["request_id"]
    hijack = feed(eml("h2@evil.test", sender="mallory@evil.test", subject=f"Re: [#{rid}] send me the invoice"))
    assert hijack.type == REQUEST_CREATED and hijack["request_id"] != rid
    assert one(db, "SELECT subject FROM requests WHERE id = %s", hijack["request_id"]) == \
        f"Re: [#{rid}] send me the invoice"
    assert one(db, "SELECT count(*) FROM history WHERE request_id = %s", rid) == 1
    assert one(db, "SELECT count(*) FROM request_people WHERE request_id = %s AND address = 'mallory@evil.test'",
               rid) == 0


def test_subject_tag_of_a_staff_reply_recipient_and_custom_format(db, mailbox, app):
    ticketer = TicketerHandler(app.pool, app.keys.message_id_key, tag_format="Ticket#{id}:")
    feed = Feed(db, mailbox, ticketer)
    first = feed(eml("f1@example.com"))
    rid = first["request_id"]
    db.execute("INSERT INTO outgoing_mail (request_id, kind, to_address, state) VALUES (%s, 'staff_reply',"
               " 'Carol@partner.test', 'sent')", (rid,))
    db.commit()
    assert feed(eml("f2@p.test", sender="carol@partner.test", subject=f"Ticket#{rid}: done"))["request_id"] == rid
    assert feed(eml("f3@p.test", subject=f"[#{rid}] default format is off"))["request_id"] != rid


# -- reopening ----------------------------------------------------------------------


def test_person_reopens_closed_request_automatic_mail_does_not(feed, db):
    first = feed(eml("c1@example.com"))
    rid = first["request_id"]
    db.execute("UPDATE requests SET status = 'closed' WHERE id = %s", (rid,))
    db.commit()
    ooo = feed(eml("c2@example.com", subject="Automatic reply: Printer broken", in_reply_to="c1@example.com",
                   headers={"Auto-Submitted": "auto-replied"}))
    assert ooo.type == REQUEST_UPDATED and ooo["automatic"] == "out_of_office"
    assert one(db, "SELECT status FROM requests WHERE id = %s", rid) == "closed"
    person = feed(eml("c3@example.com", in_reply_to="c1@example.com"))
    assert person["automatic"] is None
    assert one(db, "SELECT status FROM requests WHERE id = %s", rid) == "open"


# -- bounces ---------------------------------------------------------------------------


def _bounce_for(message_id: str, status: str = "5.1.1") -> bytes:
    raw = (DATA / "bounce_dsn.eml").read_bytes()
    return raw.replace(b"reply-1001@example.test", message_id.encode()).replace(b"5.1.1", status.encode())


def test_bounce_attaches_to_request_and_fails_outgoing_mail(feed, db, app):
    first = feed(eml("b1@example.com"))
    rid = first["request_id"]
    db.execute("UPDATE requests SET status = 'closed' WHERE id = %s", (rid,))
    out = db.execute("INSERT INTO outgoing_mail (request_id, kind, to_address, state) VALUES (%s,"
                     " 'auto_reply', 'nobody@customer.example', 'sent') RETURNING id", (rid,)).fetchone()["id"]
    mid = make_message_id(rid, out, app.keys.message_id_key, "deskmail.test")
    db.execute("UPDATE outgoing_mail SET message_id = %s WHERE id = %s", (mid, out))
    db.commit()
    event = feed(_bounce_for(mid))
    assert event.type == REQUEST_UPDATED and event["request_id"] == rid and event["automatic"] == "bounce"
    row = db.execute("SELECT state, reason FROM outgoing_mail WHERE id = %s", (out,)).fetchone()
    assert row["state"] == "failed" and "5.1.1" in row["reason"] and "nobody@customer.example" in row["reason"]
    assert one(db, "SELECT status FROM requests WHERE id = %s", rid) == "closed"
    assert count(db, "requests") == 1
    assert one(db, "SELECT count(*) FROM customers WHERE address ILIKE 'mailer-daemon%%'") == 0
    # A delay report notes the state but does not fail the mail.
    db.execute("UPDATE outgoing_mail SET state = 'sent' WHERE id = %s", (out,))
    db.commit()
    feed(_bounce_for(mid, "4.4.1").replace(b"bounce-1@", b"bounce-2@"))
    row = db.execute("SELECT state, reason FROM outgoing_mail WHERE id = %s", (out,)).fetchone()
    assert row["state"] == "sent" and "delayed" in row["reason"]


def test_unmatched_bounce_is_kept_for_an_operator_never_a_request(feed, db):
    raw_id = feed.store(_bounce_for("not-ours@elsewhere.test"))
    assert feed.handle(raw_id) == []
    assert count(db, "requests") == 0
    row = db.execute("SELECT * FROM unmatched_mail").fetchone()
    assert row["raw_id"] == raw_id and row["kind"] == "bounce" and "not-ours@elsewhere.test" in row["reason"]
    assert row["recipient"] == "nobody@customer.example" and row["status"] == "5.1.1"
    assert one(db, "SELECT state FROM remote_messages WHERE raw_id = %s", raw_id) == "committed"
    assert feed.handle(raw_id) == []  # redelivered: nothing new
    assert count(db, "unmatched_mail") == 1 and count(db, "requests") == 0


# -- unparsed mail (invariant 6) ---------------------------------------------------------


def test_unparsed_mail_becomes_flagged_request_with_original(feed, db):
    raw = b"\x00\xff garbage that is not a mail \x00" * 20
    event = feed(raw, ParsedMessage(unparsed="parser failure: ValueError"))
    assert event.type == REQUEST_CREATED
    req = db.execute("SELECT * FROM requests WHERE id = %s", (event["request_id"],)).fetchone()
    assert req["unparsed"] and req["subject"] == "(unreadable mail)" and req["customer_id"] is None
    att = db.execute("SELECT a.filename, a.content_type, b.data FROM attachments a JOIN blobs b"
                     " USING (sha256) WHERE a.history_id = %s", (event["history_id"],)).fetchone()
    assert att["filename"] == "original.eml" and att["content_type"] == "message/rfc822"
    assert bytes(att["data"]) == raw
    assert "could not parse" in one(db, "SELECT body_text FROM history WHERE id = %s", event["history_id"])


# -- exactly once --------------------------------------------------------------------------


def test_redelivery_and_restart_publish_the_stored_outcome(feed, db, app, mailbox):
    raw_id = feed.store(eml("once@example.com"))
    twice = feed.handle(raw_id, raw_id)  # the same event twice in one batch
    assert len(twice) == 2 and twice[0] == twice[1]
    first = twice[:1]
    again = feed.handle(raw_id)
    restarted = TicketerHandler(app.pool, app.keys.message_id_key).handle([parsed_event(raw_id, mailbox["id"])])
    assert [e for _, e in restarted] == again == first
    assert count(db, "requests") == 1 and count(db, "history") == 1
    # An update redelivered stays an update, with the same history id.
    reply_id = feed.store(eml("once-2@example.com", in_reply_to="once@example.com"))
    upd = feed.handle(reply_id)
    assert feed.handle(reply_id) == upd and upd[0].type == REQUEST_UPDATED
    assert count(db, "history") == 2


def test_missing_parsed_row_is_permanent(ticketer, mailbox):
    from shared.errors import Permanent

    with pytest.raises(Permanent, match="no parsed form"):
        ticketer.handle([parsed_event(999_999, mailbox["id"])])
