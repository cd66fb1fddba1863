# ruff: noqa: F811 - fixtures are imported from cli_support by name
"""`deskmail mailbox ...` commands that go through services/admin like the API and the pages."""

from __future__ import annotations

import re

import pytest

from tests.integration.cli_support import cli  # noqa: F401

pytestmark = pytest.mark.integration

ADD = ("mailbox", "add", "--from-name", "Support", "--address", "support@acme.test", "--host", "imap.acme.test",
       "--username", "support", "--type", "imap", "--password-stdin")


def _add(cli) -> int:
    code, out, err = cli(*ADD, stdin="pw\n")
    assert code == 0, err
    return int(re.search(r"mailbox (\d+) added", out).group(1))


def test_a_removed_mailbox_cannot_be_enabled_or_disabled(cli, app):
    mailbox_id = _add(cli)
    assert cli("mailbox", "remove", str(mailbox_id))[0] == 0
    for action in ("enable", "disable"):
        code, out, err = cli("mailbox", action, str(mailbox_id))
        assert (code, out) == (1, ""), (action, out)
        assert f"no mailbox {mailbox_id}" in err
    with app.pool.connection() as conn:
        row = conn.execute("SELECT enabled, removed_at FROM mailboxes WHERE id = %s", (mailbox_id,)).fetchone()
    assert row["enabled"] is False and row["removed_at"] is not None  # still removed, never polled again
