"""One poll of one mailbox, under its lease.

    1. remove (archive or delete) what is committed     invariant 1: only now
    2. publish events that were stored but never confirmed
    3. import what is new, a batch at a time:
         fetch -> store + commit -> publish, confirms awaited -> mark published
    4. remove what was committed meanwhile

A fetcher killed anywhere in here leaves the ledger (store.py) consistent:
the next poll, by this fetcher or another, carries on without loss or duplicate.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from psycopg_pool import ConnectionPool

from services.fetcher import store
from services.fetcher.remote import Remote, RemoteError
from shared import metrics
from shared.events import MAIL_RECEIVED, Event
from shared.mailboxes import Mailbox
from shared.publisher import Publisher
from shared.topology import Topology

log = logging.getLogger(__name__)

BATCH = 100


@dataclass
class PollResult:
    fetched: int = 0
    removed: int = 0
    republished: int = 0


def open_remote(mailbox: Mailbox) -> Remote:
    if mailbox.account_type == "imap":
        from services.fetcher.imap import ImapRemote

        return ImapRemote(mailbox)
    if mailbox.account_type == "pop3":
        from services.fetcher.pop3 import Pop3Remote

        return Pop3Remote(mailbox)
    if mailbox.account_type == "maildir":
        from services.fetcher.maildir import MaildirRemote

        return MaildirRemote(mailbox)
    raise RemoteError("config", f"unknown account type {mailbox.account_type!r}", transient=False)


class Poller:
    def __init__(self, pool: ConnectionPool, publisher: Publisher, topology: Topology,
                 keep_lease: Callable[[], bool] = lambda: True) -> None:
        self.pool = pool
        self.publisher = publisher
        self.topology = topology
        self.keep_lease = keep_lease

    def poll(self, mailbox: Mailbox) -> PollResult:
        result = PollResult()
        remote = open_remote(mailbox)
        try:
            uidvalidity = remote.uidvalidity()
            folder = remote.folder_key
            result.removed += self._remove_committed(remote, mailbox, folder, uidvalidity)
            stale = store.unpublished(self.pool, mailbox.id)
            if stale:
                self._publish(mailbox.id, stale)
                result.republished = len(stale)
            known = store.known_ids(self.pool, mailbox.id, folder, uidvalidity)
            new = [i for i in remote.list_ids() if i not in known][: mailbox.max_per_poll]
            for start in range(0, len(new), BATCH):
                if not self.keep_lease():
                    log.warning("lease lost; stopping this poll")
                    break
                batch = list(remote.fetch(new[start : start + BATCH], mailbox.max_message_bytes))
                raw_ids = store.store_batch(self.pool, mailbox.id, folder, uidvalidity, batch)
                self._publish(mailbox.id, raw_ids)
                result.fetched += len(raw_ids)
                metrics.FETCHED.labels(str(mailbox.id)).inc(len(raw_ids))
            result.removed += self._remove_committed(remote, mailbox, folder, uidvalidity)
        finally:
            remote.close()
        return result

    def _publish(self, mailbox_id: int, raw_ids: list[int]) -> None:
        if not raw_ids:
            return
        events = [Event(MAIL_RECEIVED, {"raw_id": r, "mailbox_id": mailbox_id}) for r in raw_ids]
        self.publisher.publish_events(self.topology.exchange, "parse", events)
        store.mark(self.pool, raw_ids, "published", only_from="stored")

    def _remove_committed(self, remote: Remote, mailbox: Mailbox, folder: str, uidvalidity: int) -> int:
        done = store.committed(self.pool, mailbox.id, folder, uidvalidity)
        if not done:
            return 0
        remote.remove([remote_id for remote_id, _ in done])
        store.mark(self.pool, [raw_id for _, raw_id in done], "archived", only_from="committed")
        metrics.ARCHIVED.labels(str(mailbox.id)).inc(len(done))
        return len(done)
