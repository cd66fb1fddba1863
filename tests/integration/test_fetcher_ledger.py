"""The fetcher's poll against the real ledger (PostgreSQL), with the mail server and the broker faked.

The ledger's transitions, one remote message at a time:

    (new) --store + commit--> stored --event confirmed--> published
          --request committed (ticketer)--> committed --removed from the server--> archived

A FakeRemote stands for the server and a FakePublisher for the broker, so
each test can say exactly what the server holds, what fails, and what the
poll asked for; Dovecot and RabbitMQ are in the protocol and invariant tests.
"""

from __future__ import annotations

import threading
from typing import Any

import pytest

from services.fetcher import store
from services.fetcher.poll import LeaseLost, Poller
from shared import mailboxes
from shared.db import transaction
from shared.mailboxes import Mailbox
from shared.mailserver.remote import Fetched
from tests.support.fake_remote import FakePublisher, FakeRemote, mail

pytestmark = pytest.mark.integration


@pytest.fixture
def mailbox(app) -> Mailbox:
    return make_mailbox(app)


def make_mailbox(app, **values: Any) -> Mailbox:
    with transaction(app.pool) as conn:
        mailbox_id = mailboxes.create(conn, app.keys, {
            "from_name": "Support", "address": f"support{values.pop('n', '')}@acme.test", "account_type": "imap",
            "host": "imap.acme.test", "username": "support", "security": "tls", "archive": True, **values},
            "secret")
        return mailboxes.get(conn, mailbox_id, app.keys)


def ledger(app, mailbox_id: int) -> dict[str, str]:
    """remote id -> state."""
    with app.pool.connection() as conn:
        return {r["remote_id"]: r["state"] for r in conn.execute(
            "SELECT remote_id, state FROM remote_messages WHERE mailbox_id = %s", (mailbox_id,))}


def raw_count(app) -> int:
    with app.pool.connection() as conn:
        return conn.execute("SELECT count(*) AS n FROM raw_messages").fetchone()["n"]


def commit(app, mailbox_id: int, *remote_ids: str) -> None:
    """What the ticketer does once the requests of these mails are committed."""
    with transaction(app.pool) as conn:
        conn.execute("UPDATE remote_messages SET state = 'committed' WHERE mailbox_id = %s AND remote_id = ANY(%s)"
                     " AND state IN ('stored', 'published')", (mailbox_id, list(remote_ids)))


def test_a_poll_stores_publishes_and_removes_only_what_is_committed(app, mailbox):
    remote = FakeRemote({"1": mail(1), "2": mail(2), "3": mail(3)})
    publisher = FakePublisher()
    poller = Poller(app.pool, publisher, app.topology)

    first = poller.poll(mailbox, remote)
    assert (first.fetched, first.removed) == (3, 0)
    assert ledger(app, mailbox.id) == dict.fromkeys(("1", "2", "3"), "published")
    assert len(publisher.published) == 3 and sorted(publisher.raw_ids()) == sorted(set(publisher.raw_ids()))
    assert {e["mailbox_id"] for e in publisher.published} == {mailbox.id}

    again = poller.poll(mailbox, remote)  # nothing committed yet: nothing new, nothing removed
    assert (again.fetched, again.removed, len(publisher.published)) == (0, 0, 3)
    assert remote.removed == [] and remote.fetched[-1:] == [["1", "2", "3"]]  # fetched once, never again

    commit(app, mailbox.id, "1", "3")
    third = poller.poll(mailbox, remote)
    assert (third.fetched, third.removed) == (0, 2)
    assert remote.removed == ["1", "3"]
    assert ledger(app, mailbox.id) == {"1": "archived", "2": "published", "3": "archived"}

    commit(app, mailbox.id, "2")
    assert poller.poll(mailbox, remote).removed == 1 and remote.removed == ["1", "3", "2"]
    assert poller.poll(mailbox, remote).removed == 0  # archived is final: removed exactly once
    assert raw_count(app) == 3


def test_mail_committed_during_the_import_is_removed_in_the_same_poll(app, mailbox, monkeypatch):
    remote = FakeRemote({"1": mail(1)})
    poller = Poller(app.pool, FakePublisher(), app.topology)
    poller.poll(mailbox, remote)
    remote.messages["2"] = mail(2)
    original = store.store_batch

    def store_then_commit(*args: Any) -> list[int]:
        ids = original(*args)
        commit(app, mailbox.id, "1")  # the ticketer commits while this poll imports
        return ids

    monkeypatch.setattr(store, "store_batch", store_then_commit)
    result = poller.poll(mailbox, remote)
    assert (result.fetched, result.removed) == (1, 1)
    assert ledger(app, mailbox.id) == {"1": "archived", "2": "published"}


def test_a_failed_publish_leaves_the_mail_stored_and_the_next_poll_publishes_it(app, mailbox):
    remote = FakeRemote({"1": mail(1), "2": mail(2)})
    publisher = FakePublisher()
    publisher.fail = ConnectionError("broker unreachable")
    poller = Poller(app.pool, publisher, app.topology)
    with pytest.raises(ConnectionError):
        poller.poll(mailbox, remote)
    # Invariant 1: the bytes are committed before anything is published.
    assert ledger(app, mailbox.id) == {"1": "stored", "2": "stored"} and raw_count(app) == 2

    result = poller.poll(mailbox, remote)
    assert (result.republished, result.fetched) == (2, 0)  # published, not imported again
    assert ledger(app, mailbox.id) == {"1": "published", "2": "published"}
    assert len(publisher.published) == 2 and raw_count(app) == 2


def test_an_unfetchable_message_is_skipped_reported_and_imported_once_the_server_delivers_it(app, mailbox):
    remote = FakeRemote({str(i): mail(i) for i in range(1, 6)})
    remote.failures["3"] = 3  # the batch and both single tries of this poll
    poller = Poller(app.pool, FakePublisher(), app.topology)

    result = poller.poll(mailbox, remote)
    assert result.fetched == 4 and len(result.skipped) == 1
    assert result.skipped[0].startswith("message 3: fetch: the server closed the connection while fetching 3")
    assert set(ledger(app, mailbox.id)) == {"1", "2", "4", "5"}  # no row, so the next poll asks again

    again = poller.poll(mailbox, remote)
    assert (again.fetched, again.skipped) == (1, [])
    assert ledger(app, mailbox.id) == dict.fromkeys(("1", "2", "3", "4", "5"), "published")


def test_a_lost_lease_stops_the_poll_before_it_stores_or_removes(app, mailbox):
    remote = FakeRemote({"1": mail(1)})
    with pytest.raises(LeaseLost):
        Poller(app.pool, FakePublisher(), app.topology, keep_lease=lambda: False).poll(mailbox, remote)
    assert ledger(app, mailbox.id) == {} and raw_count(app) == 0

    Poller(app.pool, FakePublisher(), app.topology).poll(mailbox, remote)
    commit(app, mailbox.id, "1")
    with pytest.raises(LeaseLost):
        Poller(app.pool, FakePublisher(), app.topology, keep_lease=lambda: False).poll(mailbox, remote)
    assert remote.removed == [] and ledger(app, mailbox.id) == {"1": "committed"}


def test_oversized_mail_is_archived_but_never_deleted(app):
    """Of an oversized mail only the headers are stored: a mailbox that deletes keeps it on the server."""
    deleting = make_mailbox(app, n=1, archive=False, max_message_bytes=1000)
    archiving = make_mailbox(app, n=2, archive=True, max_message_bytes=1000)
    for box in (deleting, archiving):
        remote = FakeRemote({"big": mail(1, size=5000), "small": mail(2)})
        poller = Poller(app.pool, FakePublisher(), app.topology)
        poller.poll(box, remote)
        commit(app, box.id, "big", "small")
        assert poller.poll(box, remote).removed == (1 if box is deleting else 2)
        assert remote.removed == (["small"] if box is deleting else ["big", "small"])
        assert ledger(app, box.id) == {"big": "archived", "small": "archived"}  # done with, either way


def test_a_renumbered_folder_is_rekeyed_not_imported_again(app, mailbox):
    remote = FakeRemote({"1": mail(1), "2": mail(2)}, uidvalidity=7)
    publisher = FakePublisher()
    poller = Poller(app.pool, publisher, app.topology)
    poller.poll(mailbox, remote)
    renumbered = FakeRemote({"11": mail(1), "12": mail(2), "13": mail(3)}, uidvalidity=8)
    result = poller.poll(mailbox, renumbered)
    assert result.fetched == 1  # only mail 3 is new; 1 and 2 were recognised by their content
    assert ledger(app, mailbox.id) == dict.fromkeys(("11", "12", "13"), "published")
    assert raw_count(app) == 3 and len(publisher.published) == 3


def test_two_fetchers_storing_the_same_message_keep_one_row(app, mailbox):
    """A fetcher whose lease ran out mid-poll stores what another already stored: its rows are dropped."""
    item = Fetched("1", mail(1), len(mail(1)))
    start = threading.Barrier(2)
    results: list[list[int]] = []

    def fetcher() -> None:
        start.wait()
        results.append(store.store_batch(app.pool, mailbox.id, "INBOX", 1, [item]))

    threads = [threading.Thread(target=fetcher) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert sorted(len(r) for r in results) == [0, 1]  # one publishes it, the other nothing
    assert raw_count(app) == 1 and ledger(app, mailbox.id) == {"1": "stored"}
    assert store.unpublished(app.pool, mailbox.id) == [r for r in results if r][0]


def test_marking_moves_only_from_the_expected_state(app, mailbox):
    [raw_id] = store.store_batch(app.pool, mailbox.id, "INBOX", 1, [Fetched("1", mail(1), len(mail(1)))])
    store.mark(app.pool, [raw_id], "archived", only_from="committed")  # not committed: no change
    assert ledger(app, mailbox.id) == {"1": "stored"}
    store.mark(app.pool, [raw_id], "published", only_from="stored")
    commit(app, mailbox.id, "1")
    store.mark(app.pool, [raw_id], "published", only_from="stored")  # a late confirm must not undo the commit
    assert ledger(app, mailbox.id) == {"1": "committed"}
    assert store.committed(app.pool, mailbox.id, "INBOX", 1) == [("1", raw_id, False)]
    assert store.committed(app.pool, mailbox.id, "INBOX", 2) == []  # another UIDVALIDITY's UIDs name other mail
