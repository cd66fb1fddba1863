"""Probes and metrics of a stage: /healthz, /readyz and /metrics on the real broker and database.

- /healthz fails while a stage's loop is stuck in a handler, and recovers;
- /readyz fails in a stage process pointed at a closed broker or database port;
- /metrics, read with prometheus_client's own parser, counts exactly what a
  known run of mails did: handled, failed, retried, dead-lettered, handling
  time, queue depths, and per mailbox the last successful poll and errors.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time

import pytest
from prometheus_client.parser import text_string_to_metric_families

from bench.mailgen import generate
from services.app import App
from shared import metrics
from shared import worker as worker_module
from shared.errors import Transient
from shared.events import MAIL_PARSED, MAIL_RECEIVED, Event
from shared.health import HealthServer
from shared.publisher import Publisher
from shared.worker import Worker, connect
from tests.conftest import stage_env
from tests.integration.ops_helpers import (
    Stages,
    add_mailbox,
    free_port,
    http_get,
    make_maildir,
    scalar,
    wait_for,
)

pytestmark = pytest.mark.integration


def test_healthz_fails_while_the_handler_is_stuck_and_recovers(app):
    release = threading.Event()
    entered = threading.Event()

    class Blocking:
        stage = "parse"

        def handle(self, events):
            entered.set()
            release.wait(20)  # a handler hung on a lock or a dead socket
            return [("ticket", Event(MAIL_PARSED, dict(e.ids))) for e in events]

    worker = Worker(app.settings, app.topology, Blocking())
    worker.heartbeat.max_age = 1.0
    server = HealthServer(0, [worker.heartbeat], {}, host="127.0.0.1").start()
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    try:
        # Idle but looping: alive, for longer than max_age.
        time.sleep(1.5)
        assert http_get(server.port, "/healthz") == (200, "ok")
        with connect(app.settings) as conn:
            Publisher(conn).publish_events(app.topology.exchange, "parse",
                                           [Event(MAIL_RECEIVED, {"raw_id": 1, "mailbox_id": 1})])
        assert entered.wait(10)
        status, body = wait_for(lambda: (r := http_get(server.port, "/healthz"))[0] == 503 and r,
                                timeout=5, what="/healthz to fail")
        assert "parse loop idle" in body
        release.set()
        wait_for(lambda: http_get(server.port, "/healthz")[0] == 200, timeout=5, what="/healthz to recover")
    finally:
        release.set()
        worker.stop()
        thread.join(10)
        server.stop()


def _start(settings, stage: str, **env: str) -> tuple[subprocess.Popen, int]:
    port = free_port()
    full = {**stage_env(settings), "DESKMAIL_HTTP_PORT": str(port), **env}
    proc = subprocess.Popen([sys.executable, "-m", "services.cli", stage], env=full, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return proc, port


def test_readyz_fails_when_the_broker_or_the_database_is_unreachable(settings):
    closed = free_port()  # nothing listens there
    healthy, healthy_port = _start(settings, "parser")
    no_broker, broker_port = _start(settings, "parser", AMQP_URL=f"amqp://guest:guest@127.0.0.1:{closed}//")
    no_db, db_port = _start(settings, "parser", DATABASE_URL=f"postgresql://postgres@127.0.0.1:{closed}/x")
    procs = [healthy, no_broker, no_db]
    try:
        wait_for(lambda: http_get(healthy_port, "/readyz") == (200, "ok"), 20, "the healthy stage to be ready")
        status, body = wait_for(lambda: http_get(broker_port, "/readyz"), 20, "the broker-less stage to answer")
        assert status == 503 and body.startswith("broker:") and "database" not in body, body
        status, body = wait_for(lambda: http_get(db_port, "/readyz"), 20, "the database-less stage to answer")
        assert status == 503 and "database:" in body and "broker" not in body, body
        # Waiting for a dependency is not a stuck loop: liveness stays green, so
        # Kubernetes holds traffic back instead of restarting the pods.
        assert http_get(broker_port, "/healthz")[0] == 200
        assert http_get(db_port, "/healthz")[0] == 200
        assert all(p.poll() is None for p in procs), "a stage exited instead of waiting for its dependency"
        # SIGTERM is not held up by the wait for the broker.
        started = time.monotonic()
        no_broker.terminate()
        assert no_broker.wait(10) == 0 and time.monotonic() - started < 5
    finally:
        for p in procs:
            p.kill()  # shutdown is not the point here (see test_ops_shutdown.py)
        for p in procs:
            p.wait(30)


def _sample(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    status, text = http_get(port, "/metrics")
    assert status == 200
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def _delta(before: dict, after: dict, name: str, **labels: str) -> float:
    key = (name, tuple(sorted(labels.items())))
    return after.get(key, 0.0) - before.get(key, 0.0)


def test_metrics_count_a_known_run(app, tmp_path, monkeypatch):
    """20 mails from a Maildir, one transient failure, one poison event, one broken mailbox."""
    monkeypatch.setattr(worker_module, "DEPTH_INTERVAL", 0.3)
    n = 20
    good = add_mailbox(app, str(make_maildir(tmp_path, generate(n, seed=6))))
    broken = add_mailbox(app, str(tmp_path / "no-such-maildir"), address="broken@acme.test")
    retried = metrics.RETRIED.labels("parse")
    retried_before = retried._value.get()

    stages = Stages(app, ["fetcher", "parser", "ticketer"])
    parser = stages.runnables["parser"]
    real = parser.handler

    class FlakyOnce:
        """Raw message 1 fails transiently until it has been through the retry queue once."""

        stage = "parse"

        def handle(self, events):
            if any(e["raw_id"] == 1 for e in events) and retried._value.get() == retried_before:
                raise Transient("database restarting")
            return real.handle(events)

    parser.handler = FlakyOnce()
    server = HealthServer(0, [r.heartbeat for r in stages.runnables.values()], App(app.settings).ready_checks(),
                          host="127.0.0.1").start()
    before = _sample(server.port)
    try:
        with stages:
            with connect(app.settings) as conn:  # a poison event: its raw message does not exist
                app.topology.declare(conn)
                Publisher(conn).publish_events(app.topology.exchange, "parse",
                                               [Event(MAIL_RECEIVED, {"raw_id": 10**6, "mailbox_id": good})])
            wait_for(lambda: scalar(app, "SELECT count(*) AS n FROM history WHERE kind = 'incoming'") == n,
                     60, f"{n} history entries")
            work = app.topology.queue_name("parse")
            dead = f"{work}.dead"
            expected = {work: 0, f"{work}.retry": 0, dead: 1}
            wait_for(lambda: all(_sample(server.port).get(("deskmail_queue_depth", (("queue", q),))) == v
                                 for q, v in expected.items()), 10, "the queue depth gauges to settle")
            after = _sample(server.port)
    finally:
        server.stop()

    assert _delta(before, after, "deskmail_messages_handled_total", stage="parse") == n
    assert _delta(before, after, "deskmail_messages_handled_total", stage="ticket") == n
    assert _delta(before, after, "deskmail_messages_retried_total", stage="parse") == 1
    assert _delta(before, after, "deskmail_messages_dead_lettered_total", stage="parse") == 1
    assert _delta(before, after, "deskmail_messages_dead_lettered_total", stage="ticket") == 0
    # Every attempt that raised: >= 2 for raw 1 (in-process attempts), 1 for the poison.
    assert _delta(before, after, "deskmail_messages_failed_total", stage="parse") >= 3
    assert _delta(before, after, "deskmail_messages_failed_total", stage="ticket") == 0
    # One observation per message handled: n, the poison, and raw 1's second delivery.
    assert _delta(before, after, "deskmail_handle_seconds_count", stage="parse") == n + 2
    assert _delta(before, after, "deskmail_handle_seconds_count", stage="ticket") == n
    assert _delta(before, after, "deskmail_handle_seconds_bucket", stage="ticket", le="+Inf") == n
    assert 0 < _delta(before, after, "deskmail_handle_seconds_sum", stage="ticket") < 60
    assert after[("deskmail_queue_depth", (("queue", work),))] == 0
    assert after[("deskmail_queue_depth", (("queue", f"{work}.retry"),))] == 0
    assert after[("deskmail_queue_depth", (("queue", dead),))] == 1
    last_success = after[("deskmail_mailbox_last_success_timestamp_seconds", (("mailbox", str(good)),))]
    assert abs(time.time() - last_success) < 60
    broken_key = ("deskmail_mailbox_last_success_timestamp_seconds", (("mailbox", str(broken)),))
    assert after.get(broken_key) == before.get(broken_key)  # never set by this run
    assert _delta(before, after, "deskmail_mailbox_errors_total", mailbox=str(broken)) >= 1
    assert _delta(before, after, "deskmail_mailbox_errors_total", mailbox=str(good)) == 0
    assert _delta(before, after, "deskmail_mails_fetched_total", mailbox=str(good)) == n
