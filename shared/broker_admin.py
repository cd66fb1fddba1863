"""Looking into the broker for operators: queue depths, consumers, rates and dead letters.

The CLI (`deskmail queues`, `deskmail dead-letters`, `deskmail status`) and
any future admin web call these functions; they hold the logic, the callers
only print.

Depths and consumer counts come over AMQP itself (a passive queue.declare),
so nothing but the broker URL is needed. Publish and deliver rates need the
RabbitMQ management API (`DESKMAIL_RABBITMQ_API`, e.g.
http://user:password@rabbitmq:15672); without it, `sample_queues` measures
the net change of each queue's depth over a short window instead.

Dead letters are read with basic.get and never acknowledged unless they are
replayed or purged: closing the channel returns them to their queue. (A
channel close is not a failed delivery, so quorum queues do not count it
against a delivery limit.) A dead letter's id is a hash of its content and
failure headers, stable for as long as the message waits.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import threading
import time
import urllib.parse
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from amqp.exceptions import NotFound
from kombu import Connection, Queue

from shared import metrics
from shared.events import BadEvent, Event, decode
from shared.publisher import Publisher
from shared.topology import STAGES, Topology

log = logging.getLogger(__name__)

ERROR = "x-deskmail-error"
STAGE = "x-deskmail-stage"
FAILED_AT = "x-deskmail-failed-at"
REDELIVERIES = "x-deskmail-redeliveries"
REPLAYED = "x-deskmail-replayed"
# Headers that describe a past failure; a replayed message starts clean.
FAILURE_HEADERS = (ERROR, STAGE, FAILED_AT, REDELIVERIES, "x-death", "x-delivery-count",
                   "x-first-death-exchange", "x-first-death-queue", "x-first-death-reason",
                   "x-last-death-exchange", "x-last-death-queue", "x-last-death-reason")


class QueueMissing(LookupError):
    """A queue Deskmail expects does not exist (no stage has started, or a wrong prefix)."""


# -- queues -------------------------------------------------------------------


@dataclass
class QueueInfo:
    name: str
    stage: str
    kind: str  # "work", "retry" or "dead"
    messages: int | None = None  # ready messages; None: the queue does not exist
    consumers: int | None = None
    publish_rate: float | None = None  # messages/s in (management API only)
    deliver_rate: float | None = None  # messages/s delivered to consumers (management API only)
    change_rate: float | None = None  # net depth change per second over the sampling window
    unacked: int | None = None  # delivered, not yet acknowledged (management API only)

    @property
    def exists(self) -> bool:
        return self.messages is not None


def queue_names(topology: Topology) -> list[tuple[str, str, str]]:
    """(queue name, stage, kind) for every queue of the topology, work queue first."""
    out = []
    for stage in STAGES:
        name = topology.queue_name(stage)
        out += [(name, stage, "work"), (f"{name}.retry", stage, "retry"), (f"{name}.dead", stage, "dead")]
    return out


def depth(conn: Connection, name: str) -> tuple[int, int] | None:
    """(ready messages, consumers) of a queue, or None if it does not exist."""
    channel = conn.channel()
    try:
        ok = channel.queue_declare(queue=name, passive=True)
        return int(ok.message_count), int(ok.consumer_count)
    except NotFound:
        return None  # the broker closed the channel with 404
    except Exception as exc:
        # kombu's memory transport raises its own ChannelError for a missing queue.
        if "404" in str(exc) or "NOT_FOUND" in str(exc) or "no queue" in str(exc).lower():
            return None
        raise
    finally:
        try:
            channel.close()
        except Exception:  # noqa: BLE001 - already closed by the broker's 404
            pass


def refresh_depth_gauges(conn: Connection, names: Iterable[str]) -> dict[str, int]:
    """Set deskmail_queue_depth for each queue that exists; return what was measured."""
    measured = {}
    for name in names:
        found = depth(conn, name)
        if found is not None:
            measured[name] = found[0]
            metrics.QUEUE_DEPTH.labels(name).set(found[0])
    return measured


# The in-memory broker (the embedded default) answers 0 consumers for every
# queue: its consumers can only be the workers of this very process, which
# count themselves here while they consume (shared/worker.py).
_local_consumers: Counter[str] = Counter()
_local_lock = threading.Lock()


@contextmanager
def consuming(queue_name: str) -> Iterator[None]:
    """Count a worker of this process as a consumer of `queue_name` while the block runs."""
    with _local_lock:
        _local_consumers[queue_name] += 1
    try:
        yield
    finally:
        with _local_lock:
            _local_consumers[queue_name] -= 1


def queue_stats(conn: Connection, topology: Topology, api_url: str | None = None) -> list[QueueInfo]:
    """Every queue's depth and consumers now; rates too when the management API is given."""
    in_memory = conn.transport.driver_type == "memory"
    infos = []
    for name, stage, kind in queue_names(topology):
        info = QueueInfo(name, stage, kind)
        found = depth(conn, name)
        if found is not None:
            info.messages, info.consumers = found
            if in_memory:
                with _local_lock:
                    info.consumers = _local_consumers[name]
        infos.append(info)
    if api_url:
        try:
            _add_api_rates(infos, api_url, _vhost(conn))
        except Exception as exc:  # noqa: BLE001 - rates are a bonus; depths still stand
            log.warning("management API unreachable; showing no rates", extra={"error": str(exc)})
    return infos


def sample_queues(conn: Connection, topology: Topology, window: float = 0.0,
                  api_url: str | None = None) -> list[QueueInfo]:
    """Like queue_stats, plus each queue's net depth change per second over `window` seconds."""
    first = {q.name: q.messages for q in queue_stats(conn, topology)} if window > 0 else {}
    if window > 0:
        time.sleep(window)
    infos = queue_stats(conn, topology, api_url)
    for info in infos:
        before = first.get(info.name)
        if window > 0 and before is not None and info.messages is not None:
            info.change_rate = (info.messages - before) / window
    return infos


def _vhost(conn: Connection) -> str:
    return conn.virtual_host or "/"


def _add_api_rates(infos: list[QueueInfo], api_url: str, vhost: str) -> None:
    parts = urllib.parse.urlsplit(api_url)
    base = urllib.parse.urlunsplit((parts.scheme, parts.hostname + (f":{parts.port}" if parts.port else ""),
                                    parts.path.rstrip("/"), "", ""))
    request = urllib.request.Request(f"{base}/api/queues/{urllib.parse.quote(vhost, safe='')}"
                                     "?columns=name,messages_ready,messages_unacknowledged,consumers,message_stats")
    if parts.username:
        user = urllib.parse.unquote(parts.username)
        password = urllib.parse.unquote(parts.password or "")
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310 - operator-given URL
        rows = {row["name"]: row for row in json.load(response)}
    for info in infos:
        row = rows.get(info.name)
        if row is None:
            continue
        stats = row.get("message_stats") or {}
        info.publish_rate = float((stats.get("publish_details") or {}).get("rate", 0.0))
        info.deliver_rate = float((stats.get("deliver_get_details") or {}).get("rate", 0.0))
        info.unacked = row.get("messages_unacknowledged")


# -- dead letters -------------------------------------------------------------


@dataclass
class DeadLetter:
    id: str
    stage: str  # the stage whose queue it came from, and goes back to on replay
    queue: str
    headers: dict[str, Any]
    body: bytes
    event: Event | None = None
    event_error: str | None = None  # why the body is not a readable event
    message: Any = field(default=None, repr=False)  # the kombu message, while held

    @property
    def error(self) -> str:
        if ERROR in self.headers:
            return str(self.headers[ERROR])
        deaths = self.headers.get("x-death") or []
        if deaths:  # dead-lettered by the broker itself (rejected, delivery limit)
            reason = deaths[0].get("reason", "?")
            return f"dead-lettered by the broker: {reason}"
        return "(no error recorded)"

    @property
    def failed_at(self) -> str:
        return str(self.headers.get(FAILED_AT, ""))


def _dead_letter_id(stage: str, body: bytes, headers: dict[str, Any]) -> str:
    digest = hashlib.sha256()
    for part in (stage, body, str(headers.get(FAILED_AT, "")), str(headers.get(ERROR, ""))):
        digest.update(part if isinstance(part, bytes) else part.encode())
        digest.update(b"\0")
    return digest.hexdigest()[:12]


def _to_dead_letter(stage: str, queue: str, message: Any) -> DeadLetter:
    body = message.body if isinstance(message.body, bytes) else str(message.body).encode()
    headers = dict(message.headers or {})
    letter = DeadLetter(_dead_letter_id(stage, body, headers), stage, queue, headers, body, message=message)
    try:
        letter.event = decode(body)
    except BadEvent as exc:
        letter.event_error = str(exc)
    return letter


def _stages(stage: str | None) -> tuple[str, ...]:
    if stage is None:
        return STAGES
    if stage not in STAGES:
        raise ValueError(f"unknown stage {stage!r}; stages: {', '.join(STAGES)}")
    return (stage,)


@contextmanager
def _holding(conn: Connection, topology: Topology, stage: str | None,
             limit: int | None = None) -> Iterator[tuple[Any, list[DeadLetter]]]:
    """Take dead letters off their queues without acking them; closing the channel returns the rest."""
    channel = conn.channel()
    letters: list[DeadLetter] = []
    try:
        for name in _stages(stage):
            queue_name = f"{topology.queue_name(name)}.dead"
            if depth(conn, queue_name) is None:
                raise QueueMissing(
                    f"queue {queue_name} does not exist: has a stage started yet, and is "
                    f"DESKMAIL_QUEUE_PREFIX ({topology.prefix!r}) the one the stages use?")
            queue = Queue(queue_name, no_declare=True).bind(channel)
            while limit is None or len(letters) < limit:
                message = queue.get(no_ack=False)
                if message is None:
                    break
                letters.append(_to_dead_letter(name, queue_name, message))
        yield channel, letters
    finally:
        try:
            channel.close()  # every letter not acked goes back to its queue
        except Exception:  # noqa: BLE001 - the connection is gone: the broker returns them anyway
            pass


def list_dead_letters(conn: Connection, topology: Topology, stage: str | None = None,
                      limit: int | None = None) -> list[DeadLetter]:
    """The dead letters waiting (per stage, oldest first); nothing leaves its queue."""
    with _holding(conn, topology, stage, limit) as (_, letters):
        for letter in letters:
            letter.message = None
        return letters


def find_dead_letter(conn: Connection, topology: Topology, letter_id: str) -> DeadLetter | None:
    for letter in list_dead_letters(conn, topology):
        if letter.id.startswith(letter_id):
            return letter
    return None


def _matches(letter: DeadLetter, ids: Iterable[str] | None) -> bool:
    return ids is None or any(letter.id.startswith(i) for i in ids)


def replay(conn: Connection, publish_conn: Connection, topology: Topology, ids: list[str] | None = None,
           stage: str | None = None) -> list[DeadLetter]:
    """Send dead letters (those whose id starts with one of `ids`, or all) back to their stage's queue.

    Each goes back with its failure headers removed and `x-deskmail-replayed`
    counted up; it is acked on the dead queue only after the broker has
    confirmed the republish, so a crash in between replays it twice at worst
    (and the stages are idempotent).
    """
    publisher = Publisher(publish_conn)
    with _holding(conn, topology, stage) as (_, letters):
        chosen = [letter for letter in letters if _matches(letter, ids)]
        if chosen:
            publisher.publish((topology.exchange, letter.stage, letter.body, _replay_headers(letter.headers))
                              for letter in chosen)
            for letter in chosen:
                letter.message.ack()
                letter.message = None
                log.info("dead letter replayed", extra={"dead_letter": letter.id, "stage": letter.stage,
                                                        **(letter.event.ids if letter.event else {})})
        return chosen


def _replay_headers(headers: dict[str, Any]) -> dict[str, Any]:
    clean = {k: v for k, v in headers.items() if k not in FAILURE_HEADERS}
    clean[REPLAYED] = int(headers.get(REPLAYED, 0)) + 1
    return clean


def purge(conn: Connection, topology: Topology, ids: list[str] | None = None,
          stage: str | None = None,
          before: Callable[[list[DeadLetter]], None] | None = None) -> list[DeadLetter]:
    """Delete dead letters for good (those whose id starts with one of `ids`, or all).

    `before(chosen)` runs while the chosen letters are held but not yet
    removed (services/admin/dead_letters.py records them there): if it
    raises, nothing is removed. Returns once the broker has handled the acks
    (a passive declare on the same channel, answered in order after them).
    """
    with _holding(conn, topology, stage) as (channel, letters):
        chosen = [letter for letter in letters if _matches(letter, ids)]
        if chosen and before is not None:
            before(chosen)
        for letter in chosen:
            letter.message.ack()
            letter.message = None
        for queue in sorted({letter.queue for letter in chosen}):
            channel.queue_declare(queue=queue, passive=True)
        for letter in chosen:
            log.warning("dead letter purged", extra={"dead_letter": letter.id, "stage": letter.stage,
                                                     "error": letter.error})
        return chosen
