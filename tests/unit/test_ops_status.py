"""The operations logic without servers: status rules, management API rates, log binding."""

from __future__ import annotations

import io
import json
import logging
import threading
import uuid
from http.server import BaseHTTPRequestHandler, HTTPServer

from kombu import Connection

from services.admin.status import queue_health
from shared import log as logsetup
from shared.broker_admin import QueueInfo, _add_api_rates, _replay_headers
from shared.errors import Permanent
from shared.events import MAIL_RECEIVED, Event
from shared.publisher import Publisher
from shared.settings import Settings
from shared.topology import Topology
from shared.worker import Worker
from tests.support.stages import run_until_empty


def problem(**kw) -> str | None:
    info = QueueInfo(kw.pop("name", "deskmail.parse"), "parse", kw.pop("kind", "work"), **kw)
    [health] = queue_health([info])
    return health.problem


def test_queue_rules():
    assert problem(messages=0, consumers=0) is None  # idle and unconsumed: fine
    assert "no consumer" in problem(messages=3, consumers=0)
    assert problem(messages=3, consumers=2) is None  # no sampling, no API: cannot judge
    assert "did not shrink" in problem(messages=3, consumers=2, change_rate=0.0)
    assert problem(messages=3, consumers=2, change_rate=-1.5) is None
    assert "none delivered" in problem(messages=3, consumers=2, deliver_rate=0.0, change_rate=0.0)
    assert problem(messages=3, consumers=2, deliver_rate=40.0, change_rate=2.0) is None  # busy, not stuck
    assert "dead letter" in problem(name="deskmail.parse.dead", kind="dead", messages=1, consumers=0)
    assert problem(name="deskmail.parse.retry", kind="retry", messages=5, consumers=0) is None
    assert "does not exist" in problem()


def test_management_api_rates_are_read_with_credentials():
    seen = {}

    class Api(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            seen["path"], seen["auth"] = self.path, self.headers.get("Authorization")
            body = json.dumps([{"name": "deskmail.parse", "messages_ready": 7, "messages_unacknowledged": 16,
                                "consumers": 2, "message_stats": {"publish_details": {"rate": 12.5},
                                                                  "deliver_get_details": {"rate": 11.0}}},
                               {"name": "deskmail.parse.dead", "messages_ready": 0}]).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Api)
    threading.Thread(target=server.handle_request, daemon=True).start()
    infos = [QueueInfo("deskmail.parse", "parse", "work", 7, 2), QueueInfo("deskmail.parse.dead", "parse", "dead", 0, 0)]
    _add_api_rates(infos, f"http://ops:s%40cret@127.0.0.1:{server.server_address[1]}/", "/")
    server.server_close()
    assert seen["path"].startswith("/api/queues/%2F?")
    assert seen["auth"] == "Basic b3BzOnNAY3JldA=="  # ops:s@cret
    assert (infos[0].publish_rate, infos[0].deliver_rate, infos[0].unacked) == (12.5, 11.0, 16)
    assert (infos[1].publish_rate, infos[1].deliver_rate) == (0.0, 0.0)  # no stats yet: zero, not missing


def test_a_replayed_message_starts_without_its_failure_headers():
    headers = {"x-deskmail-error": "boom", "x-deskmail-stage": "parse", "x-deskmail-failed-at": "t",
               "x-deskmail-redeliveries": 2, "x-death": [{}], "x-trace": "keep", "x-deskmail-replayed": 1}
    assert _replay_headers(headers) == {"x-trace": "keep", "x-deskmail-replayed": 2}


def test_worker_log_lines_carry_the_event_ids():
    stream = io.StringIO()
    logsetup.setup("INFO", stream)

    class Poison:
        stage = "parse"

        def handle(self, events):
            logging.getLogger("test.handler").info("handling")
            raise Permanent("no such raw message")

    prefix = f"mem{uuid.uuid4().hex[:6]}"
    topology = Topology(prefix)
    worker = Worker(Settings(queue_prefix=prefix, retry_attempts=1, prefetch=8), topology, Poison())
    with Connection("memory://") as conn:
        topology.declare(conn)
        Publisher(conn).publish_events(topology.exchange, "parse", [Event(MAIL_RECEIVED, {"raw_id": 5, "mailbox_id": 2})])
        assert run_until_empty(worker, timeout=20) == 1
    logging.getLogger().handlers.clear()
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    for event in ("handling", "dead-lettered"):
        [line] = [x for x in lines if x["event"] == event]
        assert (line["raw_id"], line["mailbox_id"]) == (5, 2), line
    assert not any("raw_id" in x for x in lines if x["event"] in ("consuming", "stopped"))


def test_looking_at_a_dead_letter_never_drops_it():
    # Each `list` returns the message once, and quorum queues count returns as deliveries.
    assert Topology("x").dead_queue("parse").queue_arguments["x-delivery-limit"] >= 10**9
