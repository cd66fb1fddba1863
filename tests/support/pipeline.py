"""A harness for running the whole pipeline as processes, hurting it, and checking what came out.

The fault-injection suite (tests/fault/) and the benchmarks in bench/ build
on these pieces; each is usable alone:

``Stages``
    The four stage processes (``python -m services.cli <stage>``) with a given
    environment: start, SIGTERM, SIGKILL and restart any of them. Every start
    appends to ``<log_dir>/<stage>.log``.

``load_mails`` / ``Feeder``
    Put mail into a Dovecot user's folder fast: MULTIAPPEND in chunks over one
    connection per chunk, all at once or in waves from a thread while the
    pipeline runs (so that faults land while there is work in flight).

``TcpProxy``
    A loopback TCP proxy to put between a stage and its IMAP or SMTP server:
    ``cut_all()`` resets every open connection, ``refuse(seconds)`` closes the
    listening port for a while (connections are refused, as by a server that
    is down), ``cut_when(trigger, after_bytes)`` cuts the connection on which
    the client sends ``trigger`` once ``after_bytes`` more bytes of the
    server's answer have passed (0: before any answer, i.e. the server acted
    on the command but the client never hears back).

``ArchiveWatch``
    A thread that catches a mail archived before its request is committed,
    while it happens (the end state cannot show it).

``Progress``
    A thread sampling the pipeline's counters from the database; afterwards it
    says how long after a fault the pipeline made progress again.

``check_pipeline`` -> ``Verdict``
    The end-of-run invariants: every mail put into the mailbox is exactly one
    history entry on one request; every due auto-reply reached the SMTP sink
    exactly once (or was recorded 'unknown' and never resent: at most once);
    the inbox is empty and the archive holds every mail; every queue is empty
    with nothing unacknowledged; the dead-letter queues hold what is expected.
    ``Verdict.problems`` lists every violation in plain words.

``scratch_settings``
    A fresh database and queue prefix outside pytest (for bench/ scripts).

Mail is identified by its Message-ID, so the mails handed in must carry
unique ones (bench/mailgen.py's do).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import pika
import psycopg
from psycopg.rows import dict_row

from services.stages import STAGES
from shared import db
from shared.settings import Settings
from shared.topology import Topology
from tests.support import dovecot as dv
from tests.support.smtp import SmtpSink

ROOT = Path(__file__).resolve().parents[2]
ADMIN_URL = os.environ.get("TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
AMQP_URL = os.environ.get("TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2F")
CONSUMING_STAGES = ("parse", "ticket", "reply")

_MESSAGE_ID = re.compile(rb"^Message-ID:[ \t]*<([^>\r\n]+)>", re.IGNORECASE | re.MULTILINE)


def message_id(raw: bytes) -> str:
    """The Message-ID of a raw mail, without angle brackets ('' if it has none)."""
    head = raw.split(b"\r\n\r\n", 1)[0].split(b"\n\n", 1)[0]
    match = _MESSAGE_ID.search(head)
    return match.group(1).decode("ascii", "replace") if match else ""


def wait_until(condition: Callable[[], object], timeout: float, what: str, interval: float = 0.2) -> None:
    """Poll ``condition`` until it is true; AssertionError naming ``what`` after ``timeout`` s.

    An exception from ``condition`` counts as "not yet" (a server restarting).
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            if condition():
                return
        except Exception:  # noqa: BLE001 - a server in the middle of a restart
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


# -- environments --------------------------------------------------------------


def stage_env(settings: Settings, **extra: str) -> dict[str, str]:
    """The environment of a stage process joining ``settings``' database and queues."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_URL", "AMQP_URL", "DESKMAIL_"))}
    env.update(
        DATABASE_URL=settings.database_url or "",
        AMQP_URL=settings.amqp_url or "",
        DESKMAIL_SECRET_KEY=settings.secret_key,
        DESKMAIL_QUEUE_PREFIX=settings.queue_prefix,
        DESKMAIL_DATA_DIR=str(settings.data_dir),
        DESKMAIL_MAIL_DOMAIN=settings.mail_domain,
        DESKMAIL_RETRY_DELAY_MS=str(settings.retry_delay_ms),
        DESKMAIL_HTTP_PORT="0",
    )
    env.update(extra)  # wins over the settings above
    return env


@contextlib.contextmanager
def scratch_settings(work_dir: Path, prefix: str = "deskmail_scratch") -> Iterator[Settings]:
    """A migrated database of its own and a queue prefix of its own; both removed afterwards."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    base = ADMIN_URL.rsplit("/", 1)[0]
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = f"{base}/{name}"
    queue_prefix = f"{prefix}.{uuid.uuid4().hex[:8]}"
    try:
        db.migrate(url)
        yield Settings(database_url=url, amqp_url=AMQP_URL, data_dir=work_dir / "var",
                       secret_key="scratch-" + uuid.uuid4().hex, queue_prefix=queue_prefix,
                       mail_domain="deskmail.test", retry_delay_ms=1000)
    finally:
        delete_queues(queue_prefix)
        with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def delete_queues(queue_prefix: str) -> None:
    topology = Topology(queue_prefix)
    connection = pika.BlockingConnection(pika.URLParameters(AMQP_URL))
    try:
        channel = connection.channel()
        for queue in topology.all_queues():
            channel.queue_delete(queue.name)
        for exchange in (topology.exchange, topology.retry_exchange, topology.dead_exchange):
            channel.exchange_delete(exchange.name)
    finally:
        connection.close()


# -- stage processes -----------------------------------------------------------


class Stages:
    """The stage processes of one pipeline, each restartable on its own.

        with Stages(env, log_dir) as stages:   # starts all four
            stages.kill("ticketer")            # SIGKILL, reaped
            stages.start("ticketer")
        # leaving: SIGTERM to all; a stage that does not exit 0 fails the block

    ``kills`` counts the SIGKILLs per stage.
    """

    def __init__(self, env: dict[str, str], log_dir: Path, names: Sequence[str] = STAGES) -> None:
        self.env = env
        self.log_dir = log_dir
        self.names = tuple(names)
        self.kills: Counter[str] = Counter()
        self._procs: dict[str, subprocess.Popen[bytes]] = {}
        self._logs: dict[str, IO[bytes]] = {}
        log_dir.mkdir(parents=True, exist_ok=True)

    def __enter__(self) -> Stages:
        self.start(*self.names)
        return self

    def __exit__(self, exc_type: object, *_: object) -> None:
        codes = self.stop()
        if exc_type is None:
            bad = {n: c for n, c in codes.items() if c != 0}
            assert not bad, f"stages did not shut down cleanly on SIGTERM: {bad}; logs in {self.log_dir}"

    def start(self, *names: str) -> None:
        for name in names or self.names:
            if self.alive(name):
                continue
            log = self._logs.get(name) or open(self.log_dir / f"{name}.log", "ab")  # noqa: SIM115
            self._logs[name] = log
            log.write(f"--- started at {time.strftime('%H:%M:%S')} ---\n".encode())
            log.flush()
            self._procs[name] = subprocess.Popen([sys.executable, "-m", "services.cli", name], env=self.env,
                                                 cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)

    def alive(self, name: str) -> bool:
        proc = self._procs.get(name)
        return proc is not None and proc.poll() is None

    def pid(self, name: str) -> int:
        return self._procs[name].pid

    def kill(self, name: str) -> None:
        """SIGKILL: no shutdown, nothing acked, nothing flushed."""
        proc = self._procs[name]
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        self.kills[name] += 1

    def restart(self, name: str) -> None:
        self.kill(name)
        self.start(name)

    def pause(self, name: str) -> None:
        """SIGSTOP: the stage holds what it has and takes nothing more until `resume`."""
        self._procs[name].send_signal(signal.SIGSTOP)

    def resume(self, name: str) -> None:
        self._procs[name].send_signal(signal.SIGCONT)

    def crashed(self) -> dict[str, int]:
        """Stages that exited by themselves (not killed by us), with their exit codes."""
        return {n: p.returncode for n, p in self._procs.items() if p.poll() is not None and p.returncode != -9}

    def stop(self, timeout: float = 30.0) -> dict[str, int]:
        """SIGTERM to every running stage; their exit codes (a stage already gone: its last code)."""
        for proc in self._procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGCONT)  # a paused stage would not see the SIGTERM
                proc.send_signal(signal.SIGTERM)
        codes = {}
        for name, proc in self._procs.items():
            try:
                codes[name] = proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                codes[name] = proc.wait()
        for log in self._logs.values():
            log.close()
        self._logs.clear()
        return codes


# -- loading mail --------------------------------------------------------------


def load_mails(user: str, mails: Sequence[bytes], folder: str = "INBOX", chunk: int = 100) -> None:
    """Append ``mails`` to ``user``'s ``folder`` in MULTIAPPEND chunks (about 2,000 mails/s here)."""
    for start in range(0, len(mails), chunk):
        dv.append(user, list(mails[start : start + chunk]), folder)


class Feeder(threading.Thread):
    """Appends mails in waves while the pipeline runs: ``per_wave`` every ``interval`` seconds.

    ``join()`` re-raises what went wrong. ``done`` is set once everything is in.
    """

    def __init__(self, user: str, mails: Sequence[bytes], per_wave: int, interval: float) -> None:
        super().__init__(name="feeder", daemon=True)
        self.user, self.mails, self.per_wave, self.interval = user, list(mails), per_wave, interval
        self.done = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            for start in range(0, len(self.mails), self.per_wave):
                dv.append(self.user, self.mails[start : start + self.per_wave])
                time.sleep(self.interval)
        except BaseException as exc:  # noqa: BLE001 - handed to join()
            self.error = exc
        finally:
            self.done.set()

    def join(self, timeout: float | None = None) -> None:
        super().join(timeout)
        if self.error is not None:
            raise RuntimeError(f"feeding the mailbox failed: {self.error!r}") from self.error


# -- a TCP proxy with faults ---------------------------------------------------


@dataclass
class _Cut:
    trigger: bytes
    after_bytes: int
    fired: threading.Event = field(default_factory=threading.Event)


class _Link:
    """One proxied connection: the client's socket and ours to the server."""

    def __init__(self, client: socket.socket, server: socket.socket) -> None:
        self.client, self.server = client, server
        self.closed = False
        self.lock = threading.Lock()
        self.cut: _Cut | None = None  # armed on this link: cut once the answer reaches the budget
        self.budget = 0

    def close(self) -> None:
        with self.lock:
            if self.closed:
                return
            self.closed = True
        for sock in (self.client, self.server):
            with contextlib.suppress(OSError):
                # Linger 0: a reset, as when a NAT box or the server drops the connection.
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                sock.close()


class TcpProxy:
    """127.0.0.1:<port> -> ``target``, with faults on demand (see the module docstring).

        with TcpProxy(("127.0.0.1", 10143)) as proxy:
            ...  # point the mailbox at proxy.port
            fired = proxy.cut_when(b" MOVE ", after_bytes=0)
            proxy.refuse(3.0)
    """

    def __init__(self, target: tuple[str, int], host: str = "127.0.0.1") -> None:
        self.target = target
        self.host = host
        self.port = 0
        self.cuts_done = 0
        self.connections = 0
        self._links: set[_Link] = set()
        self._cuts: list[_Cut] = []
        self._lock = threading.Lock()
        self._listener: socket.socket | None = None
        self._stopped = threading.Event()

    def __enter__(self) -> TcpProxy:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    def start(self) -> TcpProxy:
        self._listen()
        return self

    def stop(self) -> None:
        self._stopped.set()
        self._close_listener()
        self.cut_all()

    def _listen(self) -> None:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((self.host, self.port))
        listener.listen(64)
        self.port = listener.getsockname()[1]
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), name=f"proxy-{self.port}", daemon=True).start()

    def _close_listener(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()

    # -- faults -------------------------------------------------------------

    def cut_all(self) -> int:
        """Reset every open connection; how many there were."""
        with self._lock:
            links, self._links = list(self._links), set()
        for link in links:
            link.close()
        return len(links)

    def refuse(self, seconds: float) -> None:
        """Cut everything and refuse new connections for ``seconds`` (blocks that long)."""
        with self.refusing():
            time.sleep(seconds)

    @contextlib.contextmanager
    def refusing(self) -> Iterator[None]:
        """Connections are refused inside the block (the port is closed), then accepted again."""
        self._close_listener()
        self.cut_all()
        try:
            yield
        finally:
            if not self._stopped.is_set():
                for _ in range(50):  # the same port; TIME_WAIT of our own resets must not stop us
                    try:
                        self._listen()
                        break
                    except OSError:
                        time.sleep(0.1)
                else:
                    raise RuntimeError(f"proxy cannot listen on port {self.port} again")

    def cut_when(self, trigger: bytes, after_bytes: int = 0) -> threading.Event:
        """One-shot: cut the connection on which the client next sends ``trigger``.

        The trigger is forwarded; then the connection is reset after
        ``after_bytes`` bytes of the server's answer have reached the client
        (0: the server acts on the command, the client hears nothing). The
        returned event is set when the cut has happened.
        """
        cut = _Cut(trigger, after_bytes)
        with self._lock:
            self._cuts.append(cut)
        return cut.fired

    # -- pumping ------------------------------------------------------------

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # the listener was closed (refuse or stop)
            try:
                server = socket.create_connection(self.target, timeout=10)
                server.settimeout(None)
            except OSError:
                client.close()
                continue
            for sock in (client, server):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            link = _Link(client, server)
            with self._lock:
                self._links.add(link)
                self.connections += 1
            threading.Thread(target=self._pump_up, args=(link,), daemon=True).start()
            threading.Thread(target=self._pump_down, args=(link,), daemon=True).start()

    def _drop(self, link: _Link) -> None:
        with self._lock:
            self._links.discard(link)
        link.close()

    def _pump_up(self, link: _Link) -> None:
        """Client to server; watches for armed triggers."""
        tail = b""
        try:
            while True:
                data = link.client.recv(65536)
                if not data:
                    break
                window = tail + data
                fire = None
                with self._lock:
                    for cut in self._cuts:
                        if cut.trigger in window:
                            fire = cut
                            self._cuts.remove(cut)
                            break
                if fire is not None:
                    # Armed before the command goes out, so not a byte of the answer slips through.
                    with link.lock:
                        link.cut, link.budget = fire, fire.after_bytes
                link.server.sendall(data)
                tail = window[-64:]
        except OSError:
            pass
        self._drop(link)

    def _pump_down(self, link: _Link) -> None:
        """Server to client; enforces an armed cut's byte budget."""
        try:
            while True:
                data = link.server.recv(65536)
                if not data:
                    break
                with link.lock:
                    cut, budget = link.cut, link.budget
                if cut is not None:
                    if len(data) >= budget:
                        link.client.sendall(data[:budget])
                        self._fired(link, cut)
                        return
                    with link.lock:
                        link.budget -= len(data)
                link.client.sendall(data)
        except OSError:
            pass
        self._drop(link)

    def _fired(self, link: _Link, cut: _Cut) -> None:
        self._drop(link)
        self.cuts_done += 1
        cut.fired.set()


# -- progress and recovery -----------------------------------------------------

_COUNTERS_SQL = """
SELECT (SELECT count(*) FROM raw_messages) AS stored,
       (SELECT count(*) FROM parsed_messages) AS parsed,
       (SELECT count(*) FROM history WHERE kind = 'incoming') + (SELECT count(*) FROM unmatched_mail) AS ticketed,
       (SELECT count(*) FROM outgoing_mail WHERE state NOT IN ('pending', 'sending')) AS replied,
       (SELECT count(*) FROM remote_messages WHERE state = 'archived') AS archived
"""
# Which counter shows that a stage works again after it was killed.
STAGE_COUNTER = {"fetcher": "stored", "parser": "parsed", "ticketer": "ticketed", "replier": "replied"}


@dataclass
class Fault:
    kind: str  # e.g. "sigkill", "rabbitmq", "postgresql", "imap-cut", "smtp-refused"
    target: str  # the stage or server it hit
    started: float  # time.monotonic()
    cleared: float  # when the fault was over (restarted, restored, reachable again)
    counter: str | None = None  # the Progress counter that shows recovery; None: any
    recovery: float | None = None  # seconds from cleared to the next progress; None: no work came
    in_flight: int | None = None  # messages known to be on a queue, unhandled, when it began (None: not counted)


class Progress(threading.Thread):
    """Samples the pipeline's counters every ``interval`` s (errors while a server restarts are skipped)."""

    def __init__(self, database_url: str, interval: float = 0.1) -> None:
        super().__init__(name="progress", daemon=True)
        self.database_url = database_url
        self.interval = interval
        self.samples: list[tuple[float, dict[str, int]]] = []
        self._halt = threading.Event()

    def run(self) -> None:
        conn: psycopg.Connection | None = None
        while not self._halt.is_set():
            try:
                if conn is None or conn.closed:
                    conn = psycopg.connect(self.database_url, autocommit=True, row_factory=dict_row,
                                           connect_timeout=2)
                row = conn.execute(_COUNTERS_SQL).fetchone()
                assert row is not None
                self.samples.append((time.monotonic(), {k: int(v) for k, v in row.items()}))
            except Exception:  # noqa: BLE001 - the database may be restarting: that is a fault we inject
                with contextlib.suppress(Exception):
                    if conn is not None:
                        conn.close()
                conn = None
            self._halt.wait(self.interval)
        if conn is not None:
            conn.close()

    def stop(self) -> None:
        self._halt.set()
        self.join(10)

    def recovery(self, fault: Fault) -> float | None:
        """Seconds from ``fault.cleared`` until its counter (any counter, if None) next moved."""
        before = [s for t, s in self.samples if t <= fault.cleared]
        if not before:
            return None
        base = before[-1]
        names = [fault.counter] if fault.counter else list(base)
        for t, sample in self.samples:
            if t > fault.cleared and any(sample[n] > base[n] for n in names):
                return t - fault.cleared
        return None

    def settle(self, faults: Sequence[Fault]) -> None:
        for fault in faults:
            fault.recovery = self.recovery(fault)


# -- archived only after the commit, watched while it happens ----------------------


class ArchiveWatch(threading.Thread):
    """Invariant 1 while the run goes on: no mail is in the archive before its request is committed.

    Every ``interval`` s it reads the Message-IDs of mail newly arrived in
    ``user``'s archive folder (straight from Dovecot, not through any proxy),
    then asks the database which mails are recorded. A mail seen in the
    archive first and found unrecorded afterwards left the inbox before its
    request was committed: that order of the two looks makes it certain.
    An end-of-run check cannot see this, since the request comes later anyway.
    """

    def __init__(self, user: str, folder: str, database_url: str, interval: float = 0.5) -> None:
        super().__init__(name="archive-watch", daemon=True)
        self.user, self.folder, self.database_url, self.interval = user, folder, database_url, interval
        self.violations: list[str] = []
        self.seen = 0
        self._halt = threading.Event()
        self._pending: dict[int, str] = {}  # archive UID -> Message-ID not yet found recorded
        self._next_uid = 1

    def run(self) -> None:
        while not self._halt.wait(self.interval):
            with contextlib.suppress(Exception):  # a server being restarted by the scenario
                self._look()

    def stop(self) -> list[str]:
        self._halt.set()
        self.join(10)
        with contextlib.suppress(Exception):
            self._look()
        return self.violations

    def _look(self) -> None:
        with dv.imap(self.user, tls=False) as client:
            if not client.folder_exists(self.folder):
                return
            client.select_folder(self.folder, readonly=True)
            uids = [u for u in client.search(["UID", f"{self._next_uid}:*"]) if u >= self._next_uid]
            if uids:
                fetched = client.fetch(uids, [b"BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)]"])
                for uid, data in fetched.items():
                    self._pending[uid] = message_id(data.get(b"BODY[HEADER.FIELDS (MESSAGE-ID)]", b"") + b"\r\n")
                self._next_uid = max(uids) + 1
                self.seen += len(uids)
        if not self._pending:
            return
        with psycopg.connect(self.database_url, connect_timeout=3) as conn:
            recorded = {r[0] for r in conn.execute(
                "SELECT message_id FROM history WHERE kind = 'incoming' AND message_id = ANY(%(m)s)"
                " UNION SELECT pm.parsed->>'message_id' FROM unmatched_mail u"
                " JOIN parsed_messages pm ON pm.raw_id = u.raw_id WHERE pm.parsed->>'message_id' = ANY(%(m)s)",
                {"m": list(self._pending.values())})}
        for uid, mid in list(self._pending.items()):
            if mid not in recorded:
                self.violations.append(f"<{mid}> was in {self.folder!r} before its request was committed")
            del self._pending[uid]


# -- what is on the broker -----------------------------------------------------


def queue_counts(queue_prefix: str) -> dict[str, tuple[int, int]]:
    """Queue name -> (ready, unacknowledged), as RabbitMQ itself reports them (rabbitmqctl)."""
    out = subprocess.run(["rabbitmqctl", "list_queues", "-q", "--no-table-headers", "name", "messages_ready",
                          "messages_unacknowledged"], capture_output=True, text=True, timeout=60, check=True)
    counts = {}
    for line in out.stdout.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[0].startswith(queue_prefix + "."):
            counts[parts[0]] = (int(parts[1]), int(parts[2]))
    return counts


def ready_now(queue: str) -> int:
    """Messages ready on `queue` at this moment, as its leader answers a passive declare.

    Unlike `queue_counts` (rabbitmqctl's statistics, which can be seconds
    old), this is the queue's own count when asked.
    """
    connection = pika.BlockingConnection(pika.URLParameters(AMQP_URL))
    try:
        return int(connection.channel().queue_declare(queue, passive=True).method.message_count)
    finally:
        connection.close()


@dataclass
class DeadLetter:
    stage: str
    event: dict[str, Any]
    headers: dict[str, Any]


def dead_letters(queue_prefix: str) -> list[DeadLetter]:
    """Every dead letter of every stage, read with pika and left where it was."""
    import json

    found = []
    connection = pika.BlockingConnection(pika.URLParameters(AMQP_URL))
    try:
        for stage in CONSUMING_STAGES:
            channel = connection.channel()
            while True:
                method, props, body = channel.basic_get(f"{queue_prefix}.{stage}.dead", auto_ack=False)
                if method is None:
                    break
                found.append(DeadLetter(stage, json.loads(body), dict(props.headers or {})))
            channel.close()  # unacked: back to the queue
    finally:
        connection.close()
    return found


# -- the end-of-run check ------------------------------------------------------


@dataclass
class Verdict:
    """What a run left behind, and every way it breaks the invariants (``problems``)."""

    mails: int = 0
    requests: int = 0
    lost: list[str] = field(default_factory=list)  # Message-IDs with no history entry
    duplicated: list[str] = field(default_factory=list)  # with more than one, or imported twice
    auto_replies_due: int = 0
    auto_replies_received: int = 0  # at the SMTP sink, for mails of this run
    auto_replies_unknown: int = 0  # recorded 'unknown' (interrupted ambiguously)
    auto_replies_unknown_received: int = 0  # ...of which the sink did get one
    duplicate_auto_replies: list[str] = field(default_factory=list)  # In-Reply-To seen more than once
    missing_auto_replies: list[str] = field(default_factory=list)
    inbox_left: int = 0
    archived: int = 0
    queues: dict[str, tuple[int, int]] = field(default_factory=dict)
    dead: list[DeadLetter] = field(default_factory=list)
    details: dict[str, int] = field(default_factory=dict)  # scenario-specific counts
    problems: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return (f"mails {self.mails}, requests {self.requests}, lost {len(self.lost)}, duplicated"
                f" {len(self.duplicated)}, auto-replies due {self.auto_replies_due} received"
                f" {self.auto_replies_received} unknown {self.auto_replies_unknown}"
                f" (of which received {self.auto_replies_unknown_received}), duplicate auto-replies"
                f" {len(self.duplicate_auto_replies)}, inbox left {self.inbox_left}, archived {self.archived},"
                f" dead letters {len(self.dead)}" + "".join(f", {k} {v}" for k, v in self.details.items()))


def _incoming_by_message_id(conn: psycopg.Connection) -> dict[str, list[dict[str, Any]]]:
    by_id: dict[str, list[dict[str, Any]]] = {}
    for row in conn.execute(
        "SELECT h.message_id, h.request_id, h.raw_id, h.outcome, h.automatic, r.id AS request_exists"
        " FROM history h LEFT JOIN requests r ON r.id = h.request_id WHERE h.kind = 'incoming'"
    ):
        by_id.setdefault(row["message_id"] or "", []).append(row)
    return by_id


def check_pipeline(database_url: str, queue_prefix: str, mails: Sequence[bytes], *, user: str | None,
                   sink: SmtpSink | None, archive_folder: str = "Archive",
                   expect_dead: Callable[[list[DeadLetter]], list[str]] | None = None,
                   held: Sequence[bytes] = ()) -> Verdict:
    """Check the invariants after a run (stages still running, work finished).

    ``mails``: what was put into the mailbox, each with a unique Message-ID.
    ``user``: the Dovecot user whose INBOX must be empty and whose archive
    folder must hold every mail (None: not an IMAP run). ``sink``: where the
    auto-replies went (None: not checked). ``expect_dead``: judges the dead
    letters, returning problems; by default there must be none. ``held``:
    mails stored but held back as dead letters: no history entry yet, still
    in the INBOX (not counted in ``mails``).
    """
    verdict = Verdict(mails=len(mails))
    problems = verdict.problems
    wanted = [message_id(m) for m in mails]
    held_ids = [message_id(m) for m in held]
    assert all(wanted) and len(set(wanted + held_ids)) == len(wanted) + len(held_ids), \
        "check_pipeline needs unique Message-IDs"
    with psycopg.connect(database_url, row_factory=dict_row) as conn:
        incoming = _incoming_by_message_id(conn)
        raw_count = conn.execute("SELECT count(*) AS n FROM raw_messages").fetchone()["n"]  # type: ignore[index]
        verdict.requests = conn.execute("SELECT count(*) AS n FROM requests").fetchone()["n"]  # type: ignore[index]
        outgoing = conn.execute(
            "SELECT o.request_id, o.state, o.reason, h.message_id FROM outgoing_mail o"
            " JOIN history h ON h.id = o.history_id WHERE o.kind = 'auto_reply'").fetchall()
        due = conn.execute(
            "SELECT h.message_id, h.request_id FROM history h JOIN requests r ON r.id = h.request_id"
            " JOIN mailboxes m ON m.id = r.mailbox_id WHERE h.kind = 'incoming' AND h.outcome = 'created'"
            " AND h.automatic IS NULL AND m.auto_reply").fetchall()
    for mid in wanted:
        rows = incoming.get(mid, [])
        if not rows:
            verdict.lost.append(mid)
        elif len(rows) > 1:
            verdict.duplicated.append(mid)
        elif rows[0]["request_exists"] is None:
            problems.append(f"mail <{mid}>: its history entry points at no request")
    for mid in held_ids:
        if incoming.get(mid):
            problems.append(f"held-back mail <{mid}> has a history entry already")
    if raw_count != len(mails) + len(held):
        problems.append(f"{raw_count} raw messages stored for {len(mails) + len(held)} mails"
                        " (imported twice or lost)")
    if verdict.lost:
        problems.append(f"{len(verdict.lost)} mail(s) lost, e.g. <{verdict.lost[0]}>")
    if verdict.duplicated:
        problems.append(f"{len(verdict.duplicated)} mail(s) recorded more than once, e.g. <{verdict.duplicated[0]}>")

    if sink is not None:
        _check_auto_replies(verdict, sink, set(wanted), due, outgoing)

    if user is not None:
        inbox = [message_id(m) for m in dv.fetch_all(user, "INBOX")]
        verdict.inbox_left = len(inbox)
        archived = [message_id(m) for m in dv.fetch_all(user, archive_folder)] if dv.folder_exists(
            user, archive_folder) else []
        verdict.archived = len(archived)
        if sorted(inbox) != sorted(held_ids):
            problems.append(f"{verdict.inbox_left} mail(s) still in the INBOX, expected {len(held_ids)}")
        counted = Counter(archived)
        missing = [m for m in wanted if counted[m] == 0]
        twice = [m for m, n in counted.items() if n > 1]
        if missing:
            problems.append(f"{len(missing)} mail(s) not in {archive_folder!r}, e.g. <{missing[0]}>")
        if twice:
            problems.append(f"{len(twice)} mail(s) in {archive_folder!r} more than once, e.g. <{twice[0]}>")

    verdict.queues = queue_counts(queue_prefix)
    for name, (ready, unacked) in sorted(verdict.queues.items()):
        if not name.endswith(".dead") and (ready or unacked):
            problems.append(f"queue {name}: {ready} ready, {unacked} unacknowledged")
    verdict.dead = dead_letters(queue_prefix)
    if expect_dead is not None:
        problems.extend(expect_dead(verdict.dead))
    elif verdict.dead:
        first = verdict.dead[0]
        problems.append(f"{len(verdict.dead)} dead letter(s), e.g. {first.stage}: {first.event}"
                        f" ({first.headers.get('x-deskmail-error')})")
    return verdict


def _check_auto_replies(verdict: Verdict, sink: SmtpSink, ours: set[str], due: list[dict[str, Any]],
                        outgoing: list[dict[str, Any]]) -> None:
    """Due auto-replies: received exactly once, or recorded 'unknown' and received at most once."""
    problems = verdict.problems
    received = Counter(
        (m.message["In-Reply-To"] or "").strip().strip("<>") for m in sink.messages
    )
    received = Counter({k: v for k, v in received.items() if k in ours})
    verdict.auto_replies_received = sum(received.values())
    verdict.duplicate_auto_replies = sorted(k for k, v in received.items() if v > 1)
    if verdict.duplicate_auto_replies:
        problems.append(f"{len(verdict.duplicate_auto_replies)} auto-reply(ies) sent more than once, e.g. to"
                        f" <{verdict.duplicate_auto_replies[0]}>")
    state = {r["message_id"]: r for r in outgoing}
    verdict.auto_replies_due = len(due)
    for row in due:
        mid = row["message_id"]
        out = state.get(mid)
        if out is None:
            verdict.missing_auto_replies.append(mid)
            problems.append(f"request {row['request_id']} (<{mid}>): no auto-reply decided")
            continue
        got = received[mid]
        if out["state"] == "unknown":
            verdict.auto_replies_unknown += 1
            verdict.auto_replies_unknown_received += got
        elif out["state"] == "sent":
            if got != 1:
                verdict.missing_auto_replies.append(mid)
                problems.append(f"request {row['request_id']} (<{mid}>): auto-reply 'sent' but received {got}x")
        else:
            verdict.missing_auto_replies.append(mid)
            problems.append(f"request {row['request_id']} (<{mid}>): auto-reply {out['state']}"
                            f" ({out['reason']}), received {got}x")
    not_due = set(received) - {r["message_id"] for r in due}
    if not_due:
        problems.append(f"{len(not_due)} auto-reply(ies) to mail that was not due one, e.g. <{min(not_due)}>")


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
