"""Errors are visible and contained; state survives renumbering, dropped connections and SIGKILL."""

from __future__ import annotations

import glob
import logging
import os
import signal
import subprocess
import sys
import threading

import pytest

from services.fetcher.main import Fetcher
from services.parser.stage import ParserHandler
from services.ticketer.stage import TicketerHandler
from shared import metrics
from shared.db import transaction
from shared.events import MAIL_RECEIVED, Event
from shared.mailserver.remote import RemoteError
from tests.conftest import stage_env
from tests.integration.fetcher_helpers import (
    Harness,
    TcpProxy,
    add_mailbox,
    commit_all,
    ledger,
    mail,
    parse_queue_events,
    status,
    wait_for,
)
from tests.support import dovecot as dv

pytestmark = pytest.mark.integration


def _maildir_files(user: str) -> list[str]:
    home = dv.STATE_DIR / "home" / user / "Maildir"
    return sorted(glob.glob(f"{home}/cur/*") + glob.glob(f"{home}/new/*"))


def test_each_failure_is_recorded_and_contained(app, dovecot, caplog, monkeypatch):
    monkeypatch.delenv("DESKMAIL_CA_FILE", raising=False)  # Dovecot's certificate is NOT trusted here
    users = {name: dovecot.new_user(name) for name in
             ("good", "password", "unreachable", "cert", "folder", "undeliverable", "selfsigned")}
    for name, user in users.items():
        dovecot.append(user, [mail(f"{name} 1"), mail(f"{name} 2"), mail(f"{name} 3")])
    ids = {
        "good": add_mailbox(app, users["good"]),
        "password": add_mailbox(app, users["password"], password="wrong"),
        "unreachable": add_mailbox(app, users["unreachable"], port=1),
        "cert": add_mailbox(app, users["cert"], security="tls"),
        "folder": add_mailbox(app, users["folder"], folder="Does not exist"),
        "undeliverable": add_mailbox(app, users["undeliverable"]),
        "selfsigned": add_mailbox(app, users["selfsigned"], security="tls", allow_self_signed=True),
    }
    broken_file = _maildir_files(users["undeliverable"])[1]
    os.chmod(broken_file, 0)  # Dovecot (not root) can no longer read this one message
    fetcher = Fetcher(app.settings, app.pool, app.keys, app.topology, threads=2, lease_seconds=5)
    thread = threading.Thread(target=fetcher.run, daemon=True)
    caplog.set_level(logging.WARNING, logger="services.fetcher")
    thread.start()
    try:
        wait_for(lambda: all(status(app, i)["last_poll_at"] for i in ids.values()), 20, "every mailbox polled")
        wait_for(lambda: len(ledger(app, ids["undeliverable"])) == 2, 10, "the deliverable mail stored")
    finally:
        fetcher.stop()
        thread.join(15)
    assert not thread.is_alive()

    expected_step = {"password": "login", "unreachable": "tcp", "cert": "tls", "folder": "folder"}
    for name, step in expected_step.items():
        row = status(app, ids[name])
        assert row["last_error"].startswith(f"{step}: "), (name, row["last_error"])
        assert row["last_error_at"] is not None and row["last_success_at"] is None
        assert 1 <= row["failures_in_row"] <= 3, "retried, with backoff"
        assert metrics.MAILBOX_ERRORS.labels(str(ids[name]))._value.get() >= 1
        assert any(r.getMessage() == "poll failed" and r.step == step for r in caplog.records)
        assert ledger(app, ids[name]) == []
    assert "refused the user name or password" in status(app, ids["password"])["last_error"]
    assert "not trusted" in status(app, ids["cert"])["last_error"]
    assert "Does not exist" in status(app, ids["folder"])["last_error"]

    for name in ("good", "selfsigned"):
        row = status(app, ids[name])
        assert row["last_error"] is None and row["last_success_at"] is not None
        assert len(ledger(app, ids[name])) == 3

    row = status(app, ids["undeliverable"])
    assert row["last_error"].startswith("message ") and row["failures_in_row"] == 0
    assert row["last_success_at"] is not None
    for path in _maildir_files(users["undeliverable"]):  # Dovecot may have moved it from new/ to cur/
        os.chmod(path, 0o600)
    harness = Harness(app)
    try:
        assert harness.poll(ids["undeliverable"]).fetched == 1, "the skipped message comes in once readable"
    finally:
        harness.close()
    assert len(ledger(app, ids["undeliverable"])) == 3


@pytest.mark.parametrize("kind", ["imap", "pop3"])
def test_starttls_stripped_by_a_man_in_the_middle_is_refused(app, harness, dovecot, kind):
    user = dovecot.new_user("mitm")
    dovecot.append(user, [mail("secret")])
    target = dv.IMAP_PORT if kind == "imap" else dv.POP3_PORT
    word = b" STARTTLS" if kind == "imap" else b"STLS\r\n"
    proxy = TcpProxy(target, rewrite=(word, b"")).start()
    try:
        mailbox_id = add_mailbox(app, user, kind, "starttls", port=proxy.port)
        with pytest.raises(RemoteError) as failure:
            harness.poll(mailbox_id)
    finally:
        proxy.stop()
    assert failure.value.step == "starttls" and "refusing to log in in plain text" in str(failure.value)
    assert ledger(app, mailbox_id) == []


def test_connection_dropped_mid_fetch_loses_and_duplicates_nothing(app, harness, dovecot):
    user = dovecot.new_user("drop")
    dovecot.append(user, [mail(f"big {i}", size=20_000) for i in range(5)])
    proxy = TcpProxy(dv.IMAP_PORT, cut_after=6_000).start()  # past login, inside the first message
    try:
        mailbox_id = add_mailbox(app, user, port=proxy.port)
        with pytest.raises(RemoteError) as failure:
            harness.poll(mailbox_id)
        assert failure.value.step == "fetch" and "closed the connection" in str(failure.value)
        assert ledger(app, mailbox_id) == []
        proxy.cut_after = None  # the server behaves again
        assert harness.poll(mailbox_id).fetched == 5
    finally:
        proxy.stop()
    assert len(ledger(app, mailbox_id)) == 5
    assert len(parse_queue_events(app)) == 5


def test_uidvalidity_change_neither_duplicates_nor_loses(app, harness, dovecot):
    user = dovecot.new_user("uidvalidity")
    folder = "Support"
    dovecot.append(user, [mail("a"), mail("b"), mail("c")], folder=folder)
    mailbox_id = add_mailbox(app, user, folder=folder)
    assert harness.poll(mailbox_id).fetched == 3
    before = dovecot.uidvalidity(user, folder)
    with transaction(app.pool) as conn:  # one request committed, its mail not yet archived
        conn.execute("UPDATE remote_messages SET state = 'committed' WHERE raw_id ="
                     " (SELECT min(raw_id) FROM remote_messages WHERE mailbox_id = %s)", (mailbox_id,))
    # The folder is recreated with the same mail (as a server migration does) plus one new mail.
    old = dovecot.fetch_all(user, folder)
    with dovecot.imap(user) as client:
        client.delete_folder(folder)
        client.create_folder(folder)
    dovecot.append(user, [*old, mail("d")], folder=folder)
    assert dovecot.uidvalidity(user, folder) != before
    parse_queue_events(app)  # drain the first poll's events

    result = harness.poll(mailbox_id)

    assert result.fetched == 1, "only the new mail is new"
    assert result.removed == 1, "the committed one is archived under its new UID"
    rows = ledger(app, mailbox_id)
    assert len(rows) == 4 and {r["uidvalidity"] for r in rows} == {dovecot.uidvalidity(user, folder)}
    assert len(parse_queue_events(app)) == 1
    commit_all(app, mailbox_id)
    harness.poll(mailbox_id)
    assert dovecot.folder_count(user, folder) == 0
    assert dovecot.folder_count(user, "deskmail_archive") == 4


def test_fetcher_killed_while_publishing_loses_and_duplicates_nothing(app, harness, settings, dovecot):
    """SIGKILL after the raw rows are committed, while the broker withholds its confirms."""
    user = dovecot.new_user("sigkill")
    mailbox_id = add_mailbox(app, user)
    host, port = "127.0.0.1", 5672
    broker = TcpProxy(port, target_host=host).start()
    env = stage_env(settings, DESKMAIL_FETCH_THREADS="1", DESKMAIL_CA_FILE=str(dovecot.ca_file))
    env["AMQP_URL"] = f"amqp://guest:guest@127.0.0.1:{broker.port}//"
    proc = subprocess.Popen([sys.executable, "-m", "services.cli", "fetcher"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_for(lambda: status(app, mailbox_id)["last_poll_at"], 30, "the fetcher's first poll")
        broker.stall.set()  # the broker stops answering: publishes wait for confirms
        dovecot.append(user, [mail("x"), mail("y"), mail("z")])
        with transaction(app.pool) as conn:  # poll again now
            conn.execute("UPDATE mailboxes SET last_poll_at = NULL WHERE id = %s", (mailbox_id,))
        wait_for(lambda: len(ledger(app, mailbox_id)) == 3, 20, "raw rows committed")
        assert {r["state"] for r in ledger(app, mailbox_id)} == {"stored"}
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
        broker.stop()  # drops what the dead fetcher had in flight
        broker.stall.clear()

    result = harness.poll(mailbox_id)  # another fetcher carries on

    assert (result.fetched, result.republished) == (0, 3)
    rows = ledger(app, mailbox_id)
    assert len(rows) == 3 and {r["state"] for r in rows} == {"published"}
    assert sorted(e["raw_id"] for e in parse_queue_events(app)) == [r["raw_id"] for r in rows]


@pytest.mark.parametrize("archive", [True, False])
def test_oversized_mail_becomes_a_request_with_a_note(app, harness, dovecot, archive):
    user = dovecot.new_user("oversized")
    dovecot.append(user, [mail("huge attachment", size=60_000)])
    mailbox_id = add_mailbox(app, user, max_message_bytes=10_000, archive=archive)
    assert harness.poll(mailbox_id).fetched == 1
    (row,) = ledger(app, mailbox_id)
    assert row["truncated"] and len(bytes(row["data"])) < 10_000

    events = [Event(MAIL_RECEIVED, e) for e in parse_queue_events(app)]
    parsed = [event for _, event in ParserHandler(app.pool).handle(events)]
    TicketerHandler(app.pool, app.keys.message_id_key).handle(parsed)
    with app.pool.connection() as conn:
        entry = conn.execute("SELECT h.subject, h.body_text FROM history h WHERE h.raw_id = %s",
                             (row["raw_id"],)).fetchone()
    assert entry["subject"] == "huge attachment"
    assert "over the mailbox's size limit" in entry["body_text"]

    harness.poll(mailbox_id)
    if archive:
        assert dovecot.folder_count(user, "deskmail_archive") == 1 and dovecot.folder_count(user) == 0
    else:  # only its headers are stored: a deleting mailbox keeps the full mail on the server
        assert dovecot.folder_count(user) == 1
    assert [r["state"] for r in ledger(app, mailbox_id)] == ["archived"]
