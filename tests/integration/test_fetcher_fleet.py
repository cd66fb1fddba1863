"""Many fetchers, many mailboxes: one fetcher per mailbox at a time, takeover, IDLE."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time

import pytest

from services.fetcher.main import Fetcher
from shared.db import transaction
from tests.conftest import stage_env
from tests.integration.fetcher_helpers import (
    add_mailbox,
    ledger,
    mail,
    parse_queue_events,
    wait_for,
)

pytestmark = pytest.mark.integration


def _counts(app) -> dict[int, int]:
    with app.pool.connection() as conn:
        rows = conn.execute("SELECT mailbox_id, count(*) AS n FROM raw_messages GROUP BY mailbox_id")
        return {r["mailbox_id"]: r["n"] for r in rows}


def _owners(app, ids: list[int]) -> dict[int, str | None]:
    with app.pool.connection() as conn:
        rows = conn.execute("SELECT id, lease_owner FROM mailboxes WHERE id = ANY(%s) AND lease_until > now()",
                            (ids,))
        return {r["id"]: r["lease_owner"] for r in rows}


@pytest.mark.slow
def test_three_fetchers_share_mailboxes_and_take_over_from_a_dead_one(app, settings, dovecot):
    users = [dovecot.new_user(f"fleet{i}") for i in range(6)]
    for user in users:
        dovecot.append(user, [mail("one"), mail("two")])
    ids = [add_mailbox(app, user, poll_interval=1) for user in users]
    env = stage_env(settings, DESKMAIL_FETCH_THREADS="3", DESKMAIL_FETCH_LEASE_SECONDS="3")
    procs = [subprocess.Popen([sys.executable, "-m", "services.cli", "fetcher"], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for _ in range(3)]
    try:
        wait_for(lambda: _counts(app) == dict.fromkeys(ids, 2), 30, "every mailbox imported")
        # Each fetcher idles on up to two mailboxes (3 threads, one kept for polling).
        wait_for(lambda: len(_owners(app, ids)) == 6, 10, "six IDLE sessions")
        owners = _owners(app, ids)
        pids = {owner.split(":")[1] for owner in owners.values()}
        assert len(pids) >= 2, f"mailboxes spread across fetchers: {owners}"

        victim = procs[0]
        victim.send_signal(signal.SIGKILL)
        victim.wait(10)
        for user in users:
            dovecot.append(user, [mail("three")])
        wait_for(lambda: _counts(app) == dict.fromkeys(ids, 3), 20, "mail after the crash imported")
        survivors = {owner.split(":")[1] for owner in wait_for(lambda: _owners(app, ids), 5, "leases").values()}
        assert str(victim.pid) not in survivors
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
    with app.pool.connection() as conn:
        dupes = conn.execute("SELECT count(*) AS n FROM (SELECT mailbox_id, sha256 FROM raw_messages"
                             " GROUP BY 1, 2 HAVING count(*) > 1) d").fetchone()
    assert dupes["n"] == 0
    assert len(parse_queue_events(app)) == 18


def test_idle_stores_and_publishes_new_mail_within_two_seconds(app, dovecot):
    user = dovecot.new_user("idle")
    mailbox_id = add_mailbox(app, user, poll_interval=300)  # only IDLE can be this fast
    fetcher = Fetcher(app.settings, app.pool, app.keys, app.topology, threads=2, lease_seconds=10)
    thread = threading.Thread(target=fetcher.run, daemon=True)
    thread.start()
    try:
        wait_for(lambda: _owners(app, [mailbox_id]), 10, "the IDLE session")
        time.sleep(0.3)  # the first poll's IDLE command is under way
        latencies = []
        for i in range(3):
            started = time.monotonic()
            dovecot.append(user, [mail(f"idle {i}")])
            wait_for(lambda n=i + 1: [r["state"] for r in ledger(app, mailbox_id)] == ["published"] * n,
                     5, "stored and published")
            latencies.append(time.monotonic() - started)
    finally:
        fetcher.stop()
        thread.join(15)
    assert max(latencies) < 2.0, latencies
    assert len(parse_queue_events(app)) == 3
    with transaction(app.pool) as conn:
        row = conn.execute("SELECT lease_owner FROM mailboxes WHERE id = %s", (mailbox_id,)).fetchone()
    assert row["lease_owner"] is None, "a stopping fetcher gives its leases back"
