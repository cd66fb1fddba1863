"""Running stages: build the ones asked for, serve their health, stop them on a signal.

`deskmail <stage>` runs one stage in its own process; `deskmail run` runs
all of them (and the admin web) as threads of one process. Same code path
either way. Each stage is built by the builder its entry module registered
(services/stages.py); a stage's module is imported only when that stage is
run, so `deskmail parser` loads neither the IMAP client nor the web framework.
"""

from __future__ import annotations

import importlib
import logging
import signal
import threading
import time

import psycopg

from services.app import App
from services.stages import RUNNABLE, STAGES, Runnable, builder
from shared.health import HealthServer, Heartbeat

log = logging.getLogger(__name__)

# Within Kubernetes' default grace period (30 s) with room for the process to exit.
SHUTDOWN_SECONDS = 25.0


def build(app: App, name: str) -> Runnable:
    """Stage `name` (or "web"), built on `app`, not yet running."""
    if name not in RUNNABLE:
        raise SystemExit(f"unknown stage {name!r}; stages: {', '.join(STAGES)}")
    importlib.import_module(f"services.{name}.main")  # registers its builder
    return builder(name)(app)


def _build_all(app: App, names: list[str], stop: threading.Event) -> list[Runnable]:
    """The stages, once the database answers; until then /readyz says why (no crash loop)."""
    while not stop.is_set():
        try:
            return [build(app, n) for n in names]
        except psycopg.OperationalError as exc:
            log.warning("database unreachable; retrying in 5 s", extra={"error": str(exc)})
            stop.wait(5)
    return []


def run(app: App, names: list[str], serve_http: bool = True) -> None:
    """Run stages until SIGTERM/SIGINT; each finishes what it holds before exiting.

    The health port (DESKMAIL_HTTP_PORT) comes up first, so /readyz can
    tell an orchestrator that the database or broker is missing. On a
    signal every stage stops taking work, finishes and acks what it holds;
    whatever is still unacked after SHUTDOWN_SECONDS goes back to the
    queue when the process exits (at-least-once, idempotent stages).
    """
    stop = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        log.info("stopping", extra={"signal": signal.Signals(signum).name})
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    heartbeats: list[Heartbeat] = []
    server = None
    if serve_http:
        server = HealthServer(app.settings.http_port, heartbeats, app.ready_checks()).start()
        log.info("serving /healthz, /readyz and /metrics", extra={"port": server.port})
    runnables = _build_all(app, names, stop)
    heartbeats.extend(r.heartbeat for r in runnables)
    threads = [threading.Thread(target=r.run, name=n, daemon=True) for n, r in zip(names, runnables, strict=False)]
    for t in threads:
        t.start()
    if threads:
        log.info("started", extra={"stages": names, "embedded": app.settings.embedded})
    while not stop.is_set() and threads and all(t.is_alive() for t in threads):
        stop.wait(0.5)
    for r in runnables:
        r.stop()
    deadline = time.monotonic() + SHUTDOWN_SECONDS
    for t in threads:
        t.join(timeout=max(0.0, deadline - time.monotonic()))
    unfinished = [t.name for t in threads if t.is_alive()]
    if unfinished:
        log.warning("stages did not finish in time; their unacked messages return to the queue",
                    extra={"stages": unfinished})
    if server is not None:
        server.stop()
    log.info("exited")
