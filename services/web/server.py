"""Serving the admin web with uvicorn, as a stage-like runnable (`deskmail web`, services/web/main.py).

DESKMAIL_WEB_HOST (default 127.0.0.1: the admin manages mailbox credentials,
so it is not exposed unless asked) and DESKMAIL_WEB_PORT (default 8000).
In Kubernetes set DESKMAIL_WEB_HOST=0.0.0.0 and terminate TLS at the
ingress; uvicorn trusts X-Forwarded-Proto from DESKMAIL_WEB_FORWARDED_IPS
(default 127.0.0.1) so cookies get `Secure` when the browser used https.
"""

from __future__ import annotations

import logging
import threading
import time

import uvicorn

from services.app import App
from shared.health import Heartbeat

log = logging.getLogger(__name__)


class _ServingHeartbeat(Heartbeat):
    """Alive while uvicorn serves: the web has no loop of its own to beat."""

    def __init__(self, server: uvicorn.Server) -> None:
        super().__init__("web")
        self.server = server

    def age(self) -> float:
        return 0.0 if self.server.started and not self.server.should_exit else super().age()


class WebServer:
    def __init__(self, core: App, host: str | None = None, port: int | None = None) -> None:
        from services.web.app import create_app

        self.host = host or core.settings.web_host
        self.port = core.settings.web_port if port is None else port
        config = uvicorn.Config(
            create_app(core), host=self.host, port=self.port, log_config=None, access_log=False,
            proxy_headers=True, forwarded_allow_ips=core.settings.web_forwarded_ips,
            timeout_graceful_shutdown=20,
        )
        self.server = uvicorn.Server(config)
        self.heartbeat: Heartbeat = _ServingHeartbeat(self.server)
        self._stopped = threading.Event()

    def run(self) -> None:
        # In a thread uvicorn installs no signal handlers; services.runner.run stops us.
        log.info("web serving", extra={"host": self.host, "port": self.port})
        try:
            self.server.run()
        except SystemExit:  # uvicorn exits when it cannot bind (port in use)
            pass
        if not self.server.should_exit:
            # Keep the thread (and the other stages of `deskmail run`) alive;
            # the stale heartbeat makes /healthz say the web is down.
            log.error("the admin web is not serving (port in use?)", extra={"host": self.host, "port": self.port})
            self._stopped.wait()

    def stop(self) -> None:
        self.server.should_exit = True
        self._stopped.set()

    def bound_port(self) -> int:
        """The port actually bound (useful with port 0), once started."""
        deadline = time.monotonic() + 10
        while not self.server.started and time.monotonic() < deadline:
            time.sleep(0.02)
        return int(self.server.servers[0].sockets[0].getsockname()[1])


def serve_in_thread(core: App, port: int = 0) -> tuple[WebServer, threading.Thread]:
    """Start the web on 127.0.0.1:`port` in a daemon thread (tests, benchmarks)."""
    web = WebServer(core, "127.0.0.1", port)
    thread = threading.Thread(target=web.run, name="web", daemon=True)
    thread.start()
    web.bound_port()
    return web, thread
