"""One poll of one mailbox, under its lease, over an open connection.

    1. remove (archive or delete) what is committed     invariant 1: only now
    2. publish events that were stored but never confirmed
    3. import what is new, a batch at a time:
         fetch -> store + commit -> publish, confirms awaited -> mark published
    4. remove what was committed meanwhile

A fetcher killed anywhere in here leaves the ledger (store.py) consistent:
the next poll, by this fetcher or another, carries on without loss or duplicate.

A message the server cannot deliver (it drops the connection or answers NO
each time that one message is asked for) is skipped and reported; the rest
of the mailbox is imported, and the next poll tries the message again.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from prometheus_client import Counter
from psycopg_pool import ConnectionPool

from services.fetcher import store
from shared import metrics
from shared.events import MAIL_RECEIVED, Event
from shared.mailboxes import Mailbox
from shared.mailserver.remote import Fetched, Remote, RemoteError
from shared.publisher import Publisher
from shared.topology import Topology

log = logging.getLogger(__name__)

BATCH = 100  # messages stored and published together
BATCH_BYTES = 32 * 1024 * 1024  # ...or fewer, when they are large: bounded memory
FETCH_CHUNK = 500  # ids handed to the remote at once
ISOLATION_GIVE_UP = 3  # this many single messages failing in a row: it is the server, not them

UNFETCHABLE = Counter("deskmail_mails_unfetchable", "Messages the server could not deliver", ["mailbox"])


class LeaseLost(RemoteError):
    def __init__(self) -> None:
        super().__init__("lease", "another fetcher took over this mailbox (lease expired)")


@dataclass
class PollResult:
    fetched: int = 0
    removed: int = 0
    republished: int = 0
    skipped: list[str] = field(default_factory=list)  # one plain-words line per unfetchable message


def _ahead(items: Iterator[Fetched], depth: int) -> Iterator[Fetched]:
    """Run `items` in a thread, up to `depth` items ahead of the consumer.

    The next batch is fetched from the server while this one is written to
    PostgreSQL and confirmed by the broker: the import's time is then the
    slower of the two, not their sum. The remote is used by that thread
    only, and it has finished when this generator ends, however it ends.
    """
    handoff: queue.Queue[tuple[str, object]] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in items:
                while not stop.is_set():
                    try:
                        handoff.put(("item", item), timeout=0.2)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            outcome: tuple[str, object] = ("end", None)
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer, raised there
            outcome = ("error", exc)
        while not stop.is_set():
            try:
                handoff.put(outcome, timeout=0.2)
                return
            except queue.Full:
                continue

    worker = threading.Thread(target=produce, name="fetch-ahead", daemon=True)
    worker.start()
    try:
        while True:
            kind, value = handoff.get()
            if kind == "end":
                return
            if kind == "error":
                raise value  # type: ignore[misc]
            yield value  # type: ignore[misc]
    finally:
        stop.set()
        worker.join()


class Poller:
    def __init__(self, pool: ConnectionPool, publisher: Publisher, topology: Topology,
                 keep_lease: Callable[[], bool] = lambda: True) -> None:
        self.pool = pool
        self.publisher = publisher
        self.topology = topology
        self.keep_lease = keep_lease

    def poll(self, mailbox: Mailbox, remote: Remote) -> PollResult:
        result = PollResult()
        uidvalidity = remote.uidvalidity()
        folder = remote.folder_key
        result.removed += self._remove_committed(remote, mailbox, folder, uidvalidity)
        stale = store.unpublished(self.pool, mailbox.id)
        if stale:
            self._publish(mailbox.id, stale)
            result.republished = len(stale)
        listed = remote.list_ids()
        known = store.known_ids(self.pool, mailbox.id, folder, uidvalidity, listed)
        new = [i for i in listed if i not in known][: mailbox.max_per_poll]
        pending: list[Fetched] = []
        for item in _ahead(self._fetch(remote, new, mailbox.max_message_bytes), BATCH):
            if item.error is not None:
                result.skipped.append(f"message {item.remote_id}: {item.error}")
                UNFETCHABLE.labels(str(mailbox.id)).inc()
                continue
            pending.append(item)
            if len(pending) >= BATCH or sum(len(p.data) for p in pending) >= BATCH_BYTES:
                result.fetched += self._store(mailbox, folder, uidvalidity, pending)
                pending = []
        result.fetched += self._store(mailbox, folder, uidvalidity, pending)
        result.removed += self._remove_committed(remote, mailbox, folder, uidvalidity)
        return result

    def _fetch(self, remote: Remote, ids: list[str], max_bytes: int) -> Iterator[Fetched]:
        for start in range(0, len(ids), FETCH_CHUNK):
            chunk = ids[start : start + FETCH_CHUNK]
            done: set[str] = set()
            try:
                for item in remote.fetch(chunk, max_bytes):
                    done.add(item.remote_id)
                    yield item
            except RemoteError as exc:
                if exc.step != "fetch" or not hasattr(remote, "reopen"):
                    raise
                log.warning("fetching a batch failed; fetching its messages one by one",
                            extra={"error": str(exc)})
                yield from self._isolate(remote, [i for i in chunk if i not in done], max_bytes, exc)

    def _isolate(self, remote: Remote, ids: list[str], max_bytes: int, cause: RemoteError) -> Iterator[Fetched]:
        """Fetch one message at a time, reconnecting as needed, to find the one the server cannot deliver."""
        failed_in_row = 0
        broken = True  # the connection that failed the batch
        for remote_id in ids:
            error: RemoteError | None = None
            for _attempt in range(2):
                try:
                    if broken:
                        remote.reopen()  # type: ignore[attr-defined]  # a connect/login failure fails the poll
                        broken = False
                    items = list(remote.fetch([remote_id], max_bytes))
                except RemoteError as exc:
                    if exc.step != "fetch":
                        raise
                    error, broken = exc, True
                    continue
                yield from items
                error = None
                break
            if error is None:
                failed_in_row = 0
                continue
            failed_in_row += 1
            if failed_in_row >= ISOLATION_GIVE_UP:
                raise cause
            yield Fetched(remote_id, b"", 0, error=str(error))

    def _store(self, mailbox: Mailbox, folder: str, uidvalidity: int, batch: list[Fetched]) -> int:
        if not batch:
            return 0
        if not self.keep_lease():
            raise LeaseLost()
        raw_ids = store.store_batch(self.pool, mailbox.id, folder, uidvalidity, batch)
        self._publish(mailbox.id, raw_ids)
        metrics.FETCHED.labels(str(mailbox.id)).inc(len(raw_ids))
        return len(raw_ids)

    def _publish(self, mailbox_id: int, raw_ids: list[int]) -> None:
        if not raw_ids:
            return
        events = [Event(MAIL_RECEIVED, {"raw_id": r, "mailbox_id": mailbox_id}) for r in raw_ids]
        self.publisher.publish_events(self.topology.exchange, "parse", events)
        store.mark(self.pool, raw_ids, "published", only_from="stored")

    def _remove_committed(self, remote: Remote, mailbox: Mailbox, folder: str, uidvalidity: int) -> int:
        done = store.committed(self.pool, mailbox.id, folder, uidvalidity)
        removed = 0
        for start in range(0, len(done), FETCH_CHUNK):
            chunk = done[start : start + FETCH_CHUNK]
            if not self.keep_lease():
                raise LeaseLost()
            # Of an oversized mail we hold only the headers: a mailbox that
            # deletes keeps it on the server rather than lose it (invariant 1).
            remove = [rid for rid, _, truncated in chunk if mailbox.archives or not truncated]
            remote.remove(remove)
            store.mark(self.pool, [raw_id for _, raw_id, _ in chunk], "archived", only_from="committed")
            metrics.ARCHIVED.labels(str(mailbox.id)).inc(len(remove))
            removed += len(remove)
        return removed
