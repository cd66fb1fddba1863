"""Helpers shared by the operations tests (tests/integration/test_ops_*.py)."""

from __future__ import annotations

import mailbox as stdlib_mailbox
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from pathlib import Path

import pika

from services import runner
from services.app import App
from shared import mailboxes
from shared.db import transaction
from tests.conftest import AMQP_URL


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def http_get(port: int, path: str, timeout: float = 5.0) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=timeout) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def wait_for(check: Callable[[], object], timeout: float, what: str, interval: float = 0.1) -> object:
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = check()
        except Exception:  # noqa: BLE001 - not there yet (a port not open, a row missing)
            value = None
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def make_maildir(root: Path, mails: Iterable[bytes]) -> Path:
    box = stdlib_mailbox.Maildir(root / "Maildir", create=True)
    for m in mails:
        box.add(m)
    box.close()
    return root / "Maildir"


def add_mailbox(app: App, host: str, address: str = "support@acme.test", **extra: object) -> int:
    with transaction(app.pool) as conn:
        return mailboxes.create(conn, app.keys, {
            "from_name": "Support", "address": address, "account_type": "maildir",
            "host": host, "username": "x", "security": "none", "poll_interval": 1, **extra,
        }, password=None)


def scalar(app: App, sql: str, *params: object) -> int:
    with app.pool.connection() as conn:
        return int(conn.execute(sql, params).fetchone()["n"])


def broker_messages(queue: str) -> list[tuple[bytes, dict]]:
    """(body, headers) of what is really on a queue, read with pika: the independent witness."""
    connection = pika.BlockingConnection(pika.URLParameters(AMQP_URL))
    try:
        channel = connection.channel()
        found = []
        while True:
            method, props, body = channel.basic_get(queue, auto_ack=False)
            if method is None:
                break
            found.append((body, dict(props.headers or {})))
        channel.close()  # unacked: they go back to the queue
        return found
    finally:
        connection.close()


class Stages:
    """Stages of an App run as threads of the test process (no signal handlers, no health port)."""

    def __init__(self, app: App, names: list[str]) -> None:
        self.runnables = {n: runner.build(app, n) for n in names}
        self.threads = [threading.Thread(target=r.run, name=n, daemon=True) for n, r in self.runnables.items()]

    def __enter__(self) -> Stages:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        for r in self.runnables.values():
            r.stop()
        for t in self.threads:
            t.join(15)
