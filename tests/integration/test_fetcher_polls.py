# ruff: noqa: F811 - fixtures are imported by name
"""The poll log (issue 10): each poll of the real fetcher session, read back everywhere it shows.

Polls run through services.fetcher.session.Session against the private
Dovecot: one that imports, one that archives, one refused at login. The
service function, the API, the mailbox page and `deskmail mailbox show`
must all tell the same story, and the log keeps only the newest 100 polls.
"""

from __future__ import annotations

import pytest

from services.admin import mailboxes as mailbox_admin
from services.admin.errors import NotFound
from services.cli import main
from shared.db import transaction
from shared.mailboxes import KEEP_POLLS
from tests.conftest import stage_env
from tests.integration.fetcher_helpers import add_mailbox, commit_all, mail
from tests.integration.oauth_helpers import FetcherSession
from tests.integration.web_support import admin, api, browser_client, web_app  # noqa: F401

pytestmark = pytest.mark.integration


@pytest.fixture
def session(app):
    fetcher = FetcherSession(app)
    yield fetcher
    fetcher.close()


def _polls(app, mailbox_id, limit=KEEP_POLLS):
    with app.pool.connection() as conn:
        return mailbox_admin.recent_polls(conn, mailbox_id, limit)


def test_each_poll_is_logged_and_shown_by_the_api_the_page_and_the_cli(
        app, session, dovecot, api, browser_client, settings, monkeypatch, capsys):
    user = dovecot.new_user("polls")
    dovecot.append(user, [mail("printer"), mail("scanner")])
    mailbox_id = add_mailbox(app, user)

    assert session.serve(mailbox_id)["failures_in_row"] == 0  # imports both
    commit_all(app, mailbox_id)
    assert session.serve(mailbox_id)["failures_in_row"] == 0  # archives both
    with transaction(app.pool) as conn:
        conn.execute("UPDATE mailboxes SET password_enc = %s WHERE id = %s",
                     (app.keys.encrypt("wrong"), mailbox_id))
    status = session.serve(mailbox_id)
    assert status["failures_in_row"] == 1

    polls = _polls(app, mailbox_id)
    # One row per poll, however many messages it moved; newest first.
    assert [(p["outcome"], p["fetched"], p["removed"], p["step"]) for p in polls] == [
        ("failed", 0, 0, "login"), ("ok", 0, 2, None), ("ok", 2, 0, None)]
    failed = polls[0]
    assert "refused the user name or password" in failed["error"]
    assert failed["error"] == status["last_error"], "the log and the mailbox's status agree"
    assert failed["finished_at"] == status["last_poll_at"], "written in the same statement"
    assert all(p["started_at"] <= p["finished_at"] for p in polls)
    assert polls[0]["finished_at"] > polls[1]["finished_at"] > polls[2]["finished_at"]
    assert [p["outcome"] for p in _polls(app, mailbox_id, 1)] == ["failed"]

    answer = api.get(f"/api/v1/mailboxes/{mailbox_id}/polls")
    assert answer.status_code == 200
    assert [(p["outcome"], p["fetched"], p["removed"], p["step"]) for p in answer.json()] == [
        ("failed", 0, 0, "login"), ("ok", 0, 2, None), ("ok", 2, 0, None)]
    assert answer.json()[0]["error"] == failed["error"]
    assert len(api.get(f"/api/v1/mailboxes/{mailbox_id}/polls?limit=2").json()) == 2
    assert api.get(f"/api/v1/mailboxes/{mailbox_id}/polls?limit=0").status_code == 422
    missing = api.get("/api/v1/mailboxes/999999/polls")
    assert missing.status_code == 404 and missing.json() == {"error": "no mailbox 999999"}
    with app.pool.connection() as conn, pytest.raises(NotFound):
        mailbox_admin.recent_polls(conn, 999999, 5)

    page = browser_client.get(f"/mailboxes/{mailbox_id}").text
    table = page[page.index('<table id="polls">'):]
    table = table[:table.index("</table>")]
    assert table.count('<tr class="poll-') == 3
    assert "failed at login" in table and "refused the user name or password" in table
    assert 'class="poll-failed bad"' in table

    for key, value in stage_env(settings).items():
        monkeypatch.setenv(key, value)
    assert main(["mailbox", "show", str(mailbox_id)]) == 0
    out = capsys.readouterr().out
    lines = out[out.index("recent polls (newest first):"):].splitlines()[1:]
    assert len(lines) == 3
    assert "failed at login" in lines[0] and "refused the user name or password" in lines[0]
    assert "imported 0" in lines[1] and "removed 2" in lines[1]
    assert "imported 2" in lines[2] and "removed 0" in lines[2]


def test_the_log_keeps_the_newest_polls_only(app, session, dovecot):
    user = dovecot.new_user("bound")
    mailbox_id = add_mailbox(app, user)
    other_id = add_mailbox(app, dovecot.new_user("other"))
    old = KEEP_POLLS + 20
    with transaction(app.pool) as conn:  # a log that is already over full, and another mailbox's
        for mid in (mailbox_id, other_id):
            conn.execute(
                "INSERT INTO mailbox_polls (mailbox_id, started_at, finished_at, outcome, fetched)"
                " SELECT %s, now() - make_interval(mins => n), now() - make_interval(mins => n), 'ok', n"
                " FROM generate_series(1, %s) AS n", (mid, old))

    session.serve(mailbox_id)

    polls = _polls(app, mailbox_id)
    with app.pool.connection() as conn:
        count = conn.execute("SELECT count(*) AS n FROM mailbox_polls WHERE mailbox_id = %s",
                             (mailbox_id,)).fetchone()["n"]
    assert count == KEEP_POLLS
    assert polls[0]["outcome"] == "ok" and polls[0]["fetched"] == 0, "the new poll is kept"
    # The newest of the old ones stay (fetched = minutes ago), the oldest went.
    assert [p["fetched"] for p in polls[1:]] == list(range(1, KEEP_POLLS))
    assert len(_polls(app, other_id)) == KEEP_POLLS and _polls(app, other_id)[-1]["fetched"] == KEEP_POLLS
    with app.pool.connection() as conn:
        other = conn.execute("SELECT count(*) AS n FROM mailbox_polls WHERE mailbox_id = %s",
                             (other_id,)).fetchone()["n"]
    assert other == old, "another mailbox's log is not touched"
