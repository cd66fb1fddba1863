"""Helpers for the fetcher's real-server tests (tests/integration/test_fetcher*.py).

`Harness` runs polls in-process against the test's database, broker queues
and the private Dovecot; `TcpProxy` sits between the fetcher and a real
server to stall, cut or rewrite the conversation (a server that drops the
connection mid-fetch, a man in the middle stripping STARTTLS, a broker that
stops confirming).
"""

from __future__ import annotations

import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from kombu import Connection

from services.app import App
from services.fetcher.poll import Poller, PollResult
from shared import mailboxes
from shared.db import transaction
from shared.mailserver.connect import open_remote
from shared.publisher import Publisher
from tests.support import dovecot as dv

PORTS = {("imap", "none"): dv.IMAP_PORT, ("imap", "starttls"): dv.IMAP_PORT, ("imap", "tls"): dv.IMAPS_PORT,
         ("pop3", "none"): dv.POP3_PORT, ("pop3", "starttls"): dv.POP3_PORT, ("pop3", "tls"): dv.POP3S_PORT}


def mail(subject: str, body: str = "Hello, my printer is broken.", size: int = 0) -> bytes:
    text = body + ("\r\n" + "x" * 76) * (size // 78)
    return (f"From: Customer <c-{uuid.uuid4().hex[:6]}@example.com>\r\nTo: support@example.test\r\n"
            f"Subject: {subject}\r\nMessage-ID: <{uuid.uuid4().hex}@example.com>\r\n"
            f"Date: Mon, 01 Jan 2024 10:00:00 +0000\r\n\r\n{text}\r\n").encode()


def add_mailbox(app: App, user: str, kind: str = "imap", security: str = "none", **values: Any) -> int:
    password = values.pop("password", dv.PASSWORD)
    fields = {"from_name": "Support", "address": f"{user}@example.test", "host": dv.HOST, "username": user,
              "account_type": kind, "security": security, "port": PORTS[(kind, security)],
              "poll_interval": 1, **values}
    if kind == "pop3":
        fields.setdefault("archive", False)
    with transaction(app.pool) as conn:
        return mailboxes.create(conn, app.keys, fields, password)


def ledger(app: App, mailbox_id: int) -> list[dict[str, Any]]:
    with app.pool.connection() as conn:
        return conn.execute(
            "SELECT rm.*, r.sha256, r.truncated, r.data FROM remote_messages rm JOIN raw_messages r"
            " ON r.id = rm.raw_id WHERE rm.mailbox_id = %s ORDER BY rm.raw_id", (mailbox_id,)).fetchall()


def status(app: App, mailbox_id: int) -> dict[str, Any]:
    with app.pool.connection() as conn:
        row = conn.execute("SELECT * FROM mailboxes WHERE id = %s", (mailbox_id,)).fetchone()
        assert row is not None
        return row


def commit_all(app: App, mailbox_id: int) -> int:
    """What the ticketer does once a request is committed: the fetcher may now remove the mail."""
    with transaction(app.pool) as conn:
        return conn.execute("UPDATE remote_messages SET state = 'committed' WHERE mailbox_id = %s"
                            " AND state IN ('stored', 'published')", (mailbox_id,)).rowcount


def parse_queue_events(app: App) -> list[dict[str, Any]]:
    """Drain the parse queue and return the mail.received payloads (each event once)."""
    import json

    out = []
    with Connection(app.settings.broker_url) as conn:
        queue = app.topology.queue("parse")(conn.channel())
        while (message := queue.get(no_ack=True)) is not None:
            out.append(json.loads(message.body)["ids"])
    return out


@dataclass
class Harness:
    """Polls a mailbox in-process, as one fetcher thread would."""

    app: App
    _conn: Connection | None = None
    _publisher: Publisher | None = None

    def __post_init__(self) -> None:
        self._conn = Connection(self.app.settings.broker_url)
        self._conn.ensure_connection(max_retries=3)
        self.app.topology.declare(self._conn)
        self._publisher = Publisher(self._conn)

    def poll(self, mailbox_id: int) -> PollResult:
        with self.app.pool.connection() as conn:
            mailbox = mailboxes.get(conn, mailbox_id, self.app.keys)
        remote = open_remote(mailbox)
        try:
            assert self._publisher is not None
            return Poller(self.app.pool, self._publisher, self.app.topology).poll(mailbox, remote)
        finally:
            remote.close()

    def close(self) -> None:
        if self._conn is not None:
            self._conn.release()


def wait_for(check: Callable[[], object], timeout: float, what: str, interval: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


@dataclass
class TcpProxy:
    """127.0.0.1:<port> -> target, relaying both ways until told otherwise.

    cut_after:  drop every connection once the server has sent this many bytes
    stall:      stop relaying (the peer sees a silent, open connection)
    rewrite:    (old, new) replaced in what the server sends
    """

    target_port: int
    target_host: str = "127.0.0.1"
    cut_after: int | None = None
    rewrite: tuple[bytes, bytes] | None = None
    stall: threading.Event = field(default_factory=threading.Event)
    port: int = 0
    _server: socket.socket | None = None
    _socks: list[socket.socket] = field(default_factory=list)

    def start(self) -> TcpProxy:
        self._server = socket.socket()
        self._server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._server.bind(("127.0.0.1", 0))
        self._server.listen(16)
        self.port = self._server.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def _accept(self) -> None:
        assert self._server is not None
        while True:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            upstream = socket.create_connection((self.target_host, self.target_port))
            self._socks += [client, upstream]
            threading.Thread(target=self._pump, args=(client, upstream, False), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, True), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, from_server: bool) -> None:
        sent = 0
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                while self.stall.is_set():
                    time.sleep(0.05)
                if from_server and self.rewrite:
                    data = data.replace(*self.rewrite)
                if from_server and self.cut_after is not None and sent + len(data) > self.cut_after:
                    dst.sendall(data[: max(self.cut_after - sent, 0)])
                    break
                dst.sendall(data)
                sent += len(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for s in self._socks:
            try:
                s.close()
            except OSError:
                pass


@pytest.fixture
def harness(app: App, monkeypatch: pytest.MonkeyPatch, dovecot: Any) -> Any:
    """A Harness on the test's app that trusts the test Dovecot's certificate."""
    monkeypatch.setenv("DESKMAIL_CA_FILE", str(dovecot.ca_file))
    h = Harness(app)
    yield h
    h.close()
