"""The probe and metrics endpoint every stage serves.

/healthz  liveness: the stage's loop has made progress recently (a stuck
          handler fails it even though the process is up)
/readyz   readiness: the broker and the database answer
/metrics  Prometheus text format
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

log = logging.getLogger(__name__)


class Heartbeat:
    """Beaten by a loop on every iteration; stale after `max_age` seconds."""

    def __init__(self, name: str, max_age: float = 60.0) -> None:
        self.name = name
        self.max_age = max_age
        self.last = time.monotonic()

    def beat(self) -> None:
        self.last = time.monotonic()

    def age(self) -> float:
        return time.monotonic() - self.last

    @property
    def alive(self) -> bool:
        return self.age() <= self.max_age


class HealthServer:
    def __init__(
        self,
        port: int,
        heartbeats: list[Heartbeat],
        ready_checks: dict[str, Callable[[], None]],
        host: str = "0.0.0.0",
    ) -> None:
        self.heartbeats = heartbeats
        self.ready_checks = ready_checks
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                status, body, ctype = server.answer(self.path)
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:  # probes every few seconds: no noise
                pass

        self.httpd = ThreadingHTTPServer((host, port), Handler)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="health", daemon=True)

    def start(self) -> HealthServer:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def answer(self, path: str) -> tuple[int, bytes, str]:
        if path == "/healthz":
            stale = [f"{h.name} loop idle {h.age():.0f}s" for h in self.heartbeats if not h.alive]
            return (503, ("; ".join(stale)).encode(), "text/plain") if stale else (200, b"ok", "text/plain")
        if path == "/readyz":
            problems = []
            for name, check in self.ready_checks.items():
                try:
                    check()
                except Exception as exc:  # noqa: BLE001 - any failure means not ready
                    problems.append(f"{name}: {exc}")
            if problems:
                return 503, "; ".join(problems).encode(), "text/plain"
            return 200, b"ok", "text/plain"
        if path == "/metrics":
            return 200, generate_latest(), CONTENT_TYPE_LATEST
        return 404, b"not found", "text/plain"
