"""Is the spam check working? For the status page, `deskmail status` and the API.

rspamd down or slow never holds mail up (services/parser/verdicts.py): its
mail goes on "unchecked". That must not go unseen, so the status counts the
mail rspamd did not check within WINDOW and shows the latest reason; any at
all means rspamd needs a person (it is configured, and it is failing).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import psycopg

WINDOW = dt.timedelta(hours=1)


@dataclass(frozen=True)
class SpamCheckHealth:
    configured: bool  # DESKMAIL_RSPAMD_URL is set
    unchecked: int  # mails not checked within WINDOW
    last_problem: str | None
    last_at: dt.datetime | None

    @property
    def needs_attention(self) -> bool:
        return self.configured and self.unchecked > 0

    def describe(self) -> str:
        if not self.configured:
            return "rspamd off (DESKMAIL_RSPAMD_URL unset): upstream verdict headers only"
        if not self.unchecked:
            return "rspamd checks every mail"
        hours = WINDOW.total_seconds() / 3600
        return (f"{self.unchecked} mail(s) not checked by rspamd in the last {hours:g} h;"
                f" latest: {self.last_problem}")


def spam_check_health(conn: psycopg.Connection, configured: bool) -> SpamCheckHealth:
    row = conn.execute(
        "SELECT count(*) AS n, max(created_at) AS last_at,"
        " (SELECT problem FROM spam_verdicts WHERE state = 'unchecked' ORDER BY created_at DESC LIMIT 1)"
        " AS last_problem FROM spam_verdicts WHERE state = 'unchecked' AND created_at > now() - %s",
        (WINDOW,)).fetchone()
    assert row is not None
    return SpamCheckHealth(configured, int(row["n"]), row["last_problem"] if row["n"] else None,
                           row["last_at"])
