"""`deskmail dead-letters` and `deskmail status` against a real dead letter.

The poison: a mail.received event whose raw message is not in the database
yet (as after a restore from an older backup). The parser dead-letters it;
the operator lists it, shows it, stores the missing row (the cause removed),
replays it, and it becomes a request. The CLI runs as the operator runs it,
in its own process; pika checks what is really on the broker.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from shared.db import transaction
from shared.events import MAIL_RECEIVED, Event
from shared.publisher import Publisher
from shared.worker import connect
from tests.conftest import stage_env
from tests.integration.ops_helpers import Stages, add_mailbox, broker_messages, scalar, wait_for
from tests.support.mailstore import store_mail

pytestmark = pytest.mark.integration

POISON_RAW_ID = 424242
MAIL = (b"From: =?utf-8?q?J=C3=BCrgen_M=C3=BCller?= <juergen@example.com>\r\nTo: support@acme.test\r\n"
        b"Subject: Printer on fire\r\nMessage-ID: <poison@example.com>\r\n\r\nPlease help.\r\n")


def deskmail(settings, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "services.cli", *args], env=stage_env(settings), capture_output=True, text=True, timeout=60)


@pytest.mark.slow
def test_a_dead_letter_is_listed_shown_replayed_and_becomes_a_request(app, settings, tmp_path):
    mailbox_id = add_mailbox(app, str(tmp_path / "unused"))
    dead_queue = f"{app.topology.queue_name('parse')}.dead"
    with Stages(app, ["parser", "ticketer", "replier"]):
        with connect(app.settings) as conn:
            app.topology.declare(conn)
            Publisher(conn).publish_events(app.topology.exchange, "parse", [
                Event(MAIL_RECEIVED, {"raw_id": POISON_RAW_ID, "mailbox_id": mailbox_id}),
                Event(MAIL_RECEIVED, {"raw_id": POISON_RAW_ID + 1, "mailbox_id": mailbox_id}),
            ])
        wait_for(lambda: len(broker_messages(dead_queue)) == 2, 20, "two dead letters")

        listed = deskmail(settings, "dead-letters", "list", "--json")
        assert listed.returncode == 0, listed.stderr
        letters = {x["event"]["ids"]["raw_id"]: x for x in json.loads(listed.stdout)}
        assert set(letters) == {POISON_RAW_ID, POISON_RAW_ID + 1}
        poison = letters[POISON_RAW_ID]
        assert poison["stage"] == "parse" and poison["event"]["type"] == MAIL_RECEIVED
        assert f"raw messages [{POISON_RAW_ID}] do not exist" in poison["error"]
        assert len(broker_messages(dead_queue)) == 2  # listing took nothing away

        text = deskmail(settings, "dead-letters", "list").stdout
        assert poison["id"] in text and "2 dead letter(s)" in text

        status = deskmail(settings, "status", "--window", "0")
        assert status.returncode == 1, status.stdout
        assert f"queue {dead_queue}: 2 dead letter(s)" in status.stdout

        shown = deskmail(settings, "dead-letters", "show", poison["id"][:8])
        assert shown.returncode == 0, shown.stderr
        for header in ("x-deskmail-error:", "x-deskmail-stage: parse", "x-deskmail-failed-at:"):
            assert header in shown.stdout
        assert f"raw message {POISON_RAW_ID} is not in the database" in shown.stdout

        # The operator removes the cause: the raw message is restored.
        store_mail(app.pool, mailbox_id, MAIL, raw_id=POISON_RAW_ID)
        shown = deskmail(settings, "dead-letters", "show", poison["id"])
        assert "from: Jürgen Müller <juergen@example.com>" in shown.stdout
        assert "subject: Printer on fire" in shown.stdout

        replayed = deskmail(settings, "dead-letters", "replay", poison["id"])
        assert replayed.returncode == 0, replayed.stderr
        assert f"replayed {poison['id']} to parse" in replayed.stdout
        wait_for(lambda: scalar(app, "SELECT count(*) AS n FROM history h JOIN requests r ON r.id = h.request_id"
                                     " WHERE h.raw_id = %s AND r.subject = 'Printer on fire'", POISON_RAW_ID),
                 20, "the replayed mail to become a request")
        [(body, headers)] = broker_messages(dead_queue)  # only the other one is left
        assert json.loads(body)["ids"]["raw_id"] == POISON_RAW_ID + 1

        # The other one is purged; then nothing needs attention any more.
        other = letters[POISON_RAW_ID + 1]["id"]
        assert deskmail(settings, "dead-letters", "replay", "ffffffffffff").returncode == 1  # no such id
        purged = deskmail(settings, "dead-letters", "purge", other, "--reason", "a test of the purge")
        assert purged.returncode == 0 and f"purged {other}" in purged.stdout
        assert broker_messages(dead_queue) == []
        assert deskmail(settings, "dead-letters", "list").stdout.strip() == "no dead letters"
        status = deskmail(settings, "status", "--window", "0", "--json")
        report = json.loads(status.stdout)
        assert status.returncode == 0, report["problems"]
        assert {q["name"] for q in report["queues"]} >= {dead_queue, app.topology.queue_name("parse")}
    assert scalar(app, "SELECT count(*) AS n FROM history WHERE raw_id = %s", POISON_RAW_ID) == 1


def test_status_flags_a_failing_mailbox_and_a_queue_without_consumer(app, settings, tmp_path):
    mailbox_id = add_mailbox(app, str(tmp_path / "no-such-maildir"))
    with transaction(app.pool) as conn:  # as the fetcher records a failed poll
        conn.execute("UPDATE mailboxes SET last_poll_at = now(), last_error = 'login failed',"
                     " last_error_at = now(), failures_in_row = 3 WHERE id = %s", (mailbox_id,))
    with connect(app.settings) as conn:
        app.topology.declare(conn)
        Publisher(conn).publish_events(app.topology.exchange, "ticket", [
            Event("mail.parsed", {"raw_id": 1, "mailbox_id": mailbox_id})])
    status = deskmail(settings, "status", "--window", "0")
    assert status.returncode == 1
    assert f"mailbox {mailbox_id} (support@acme.test): 3 failed poll(s) in a row, last: login failed" in status.stdout
    ticket = app.topology.queue_name("ticket")
    assert f"queue {ticket}: 1 message(s) waiting and no consumer" in status.stdout
    queues = deskmail(settings, "queues", "--json", "--window", "0.2")
    rows = {q["name"]: q for q in json.loads(queues.stdout)}
    assert rows[ticket]["messages"] == 1 and rows[ticket]["consumers"] == 0
    assert rows[ticket]["change_rate"] == 0.0
