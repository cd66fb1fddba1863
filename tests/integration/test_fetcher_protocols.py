"""Every account type with every security type against the real Dovecot; archive on and off; folders."""

from __future__ import annotations

import pytest

from tests.integration.fetcher_helpers import (
    add_mailbox,
    commit_all,
    ledger,
    mail,
    parse_queue_events,
)

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("kind", ["imap", "pop3"])
@pytest.mark.parametrize("security", ["none", "starttls", "tls"])
def test_import_then_remove_only_after_commit(app, harness, dovecot, kind, security):
    user = dovecot.new_user(f"{kind}-{security}")
    dovecot.append(user, [mail("first"), mail("second")])
    mailbox_id = add_mailbox(app, user, kind, security)

    first = harness.poll(mailbox_id)
    again = harness.poll(mailbox_id)  # a second poll before anything was committed

    assert (first.fetched, again.fetched, again.removed) == (2, 0, 0)
    rows = ledger(app, mailbox_id)
    assert [r["state"] for r in rows] == ["published", "published"]
    assert sorted(e["raw_id"] for e in parse_queue_events(app)) == [r["raw_id"] for r in rows]
    assert {bytes(r["data"]).split(b"Subject: ")[1].split(b"\r\n")[0] for r in rows} == {b"first", b"second"}
    assert dovecot.folder_count(user) == 2, "nothing leaves the mailbox before its request is committed"

    commit_all(app, mailbox_id)
    done = harness.poll(mailbox_id)

    assert (done.fetched, done.removed) == (0, 2)
    assert dovecot.folder_count(user) == 0
    if kind == "imap":  # archive is on by default for IMAP
        assert dovecot.folder_count(user, "deskmail_archive") == 2
    else:
        assert not dovecot.folder_exists(user, "deskmail_archive")
    assert [r["state"] for r in ledger(app, mailbox_id)] == ["archived", "archived"]


def test_archive_off_deletes(app, harness, dovecot):
    user = dovecot.new_user("imap-delete")
    dovecot.append(user, [mail("one")])
    mailbox_id = add_mailbox(app, user, archive=False)
    harness.poll(mailbox_id)
    commit_all(app, mailbox_id)
    assert harness.poll(mailbox_id).removed == 1
    assert dovecot.folder_count(user) == 0
    assert not dovecot.folder_exists(user, "deskmail_archive")


def test_non_ascii_folder_and_archive_folder(app, harness, dovecot):
    user = dovecot.new_user("utf7")
    folder, archive = "Kundenanfragen Überfällig 支持", "Erledigt ✓"
    dovecot.append(user, [mail("in the folder")], folder=folder)
    dovecot.append(user, [mail("in the inbox")])
    mailbox_id = add_mailbox(app, user, folder=folder, archive_folder=archive)

    assert harness.poll(mailbox_id).fetched == 1
    (row,) = ledger(app, mailbox_id)
    assert row["folder"] == folder and b"in the folder" in bytes(row["data"])
    commit_all(app, mailbox_id)
    harness.poll(mailbox_id)
    assert dovecot.folder_count(user, folder) == 0
    assert dovecot.folder_count(user, archive) == 1
    assert dovecot.folder_count(user) == 1, "INBOX untouched"


def test_max_per_poll_caps_each_poll(app, harness, dovecot):
    user = dovecot.new_user("cap")
    dovecot.append(user, [mail(f"m{i}") for i in range(5)])
    mailbox_id = add_mailbox(app, user, max_per_poll=2)
    assert [harness.poll(mailbox_id).fetched for _ in range(4)] == [2, 2, 1, 0]
    assert len({r["remote_id"] for r in ledger(app, mailbox_id)}) == 5
