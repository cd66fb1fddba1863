"""The status page in the embedded default: the stages running in this process are its consumers.

Kombu's in-memory broker cannot tell how many consumers a queue has (it
answers 0), so a page that read only the broker said "Everything is running"
beside 0 consumers on every queue, whether the stages ran or not.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from services import runner
from services.admin import users
from services.app import App
from services.web.app import create_app
from shared.db import transaction
from shared.settings import Settings
from tests.integration.web_support import ADMIN, log_in

pytestmark = pytest.mark.integration
WORK_QUEUES = ("parse", "ticket", "reply")


@pytest.fixture
def embedded(database_url, tmp_path) -> Iterator[App]:
    """The embedded default's broker (memory://) beside the test's PostgreSQL."""
    settings = Settings(database_url=database_url, amqp_url=None, data_dir=tmp_path / "var",
                        secret_key="test-secret-" + uuid.uuid4().hex, queue_prefix=f"dmmem.{uuid.uuid4().hex[:8]}")
    application = App(settings)
    with transaction(application.pool) as conn:
        users.create_user(conn, *ADMIN)
    yield application
    application.pool.close()


def _work_rows(client: TestClient) -> dict[str, dict]:
    return {q["stage"]: q for q in client.get("/api/v1/status").json()["queues"] if q["kind"] == "work"}


def test_the_embedded_status_counts_the_stages_running_in_this_process(embedded):
    with TestClient(create_app(embedded)) as client:
        assert log_in(client).status_code == 303
        stages = [runner.build(embedded, name) for name in ("parser", "ticketer", "replier")]
        threads = [threading.Thread(target=s.run, daemon=True) for s in stages]
        for t in threads:
            t.start()
        try:
            deadline = time.monotonic() + 20
            while any(q["consumers"] != 1 for q in _work_rows(client).values()):
                assert time.monotonic() < deadline, _work_rows(client)
                time.sleep(0.2)
            page = client.get("/").text
            assert "Everything is running" in page and "No stage is taking work" not in page
        finally:
            for s in stages:
                s.stop()
            for t in threads:
                t.join(timeout=20)
        deadline = time.monotonic() + 20
        while any(q["consumers"] for q in _work_rows(client).values()):
            assert time.monotonic() < deadline, "stopped stages are still counted"
            time.sleep(0.2)
        page = client.get("/").text
        assert "Everything is running" not in page  # the queues are there, nothing takes from them
        assert "No stage is taking work from parse, ticket, reply" in page
