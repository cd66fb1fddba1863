"""Fixtures shared by the whole suite: a fresh database per test, isolated queues, an App.

Integration tests use the real PostgreSQL and RabbitMQ on this machine
(TEST_DATABASE_URL, TEST_AMQP_URL override them). Each test gets its own
database, cloned from a migrated template (cheap), and its own queue prefix,
whose queues and exchanges are deleted afterwards.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from services.app import App
from shared import db
from shared.settings import Settings
from tests.support.pipeline import stage_env  # noqa: F401 - tests import it from here

pytest_plugins = ["tests.support.fixtures", "tests.integration.fetcher_helpers"]

ADMIN_URL = os.environ.get("TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
AMQP_URL = os.environ.get("TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2F")
TEMPLATE_DB = f"deskmail_template_{os.getpid()}"


def _url(name: str) -> str:
    return ADMIN_URL.rsplit("/", 1)[0] + "/" + name


@pytest.fixture(scope="session")
def template_database() -> Iterator[str]:
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{TEMPLATE_DB}"')
        conn.execute(f'CREATE DATABASE "{TEMPLATE_DB}"')
    db.migrate(_url(TEMPLATE_DB))
    yield TEMPLATE_DB
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{TEMPLATE_DB}" WITH (FORCE)')


@pytest.fixture
def database_url(template_database: str) -> Iterator[str]:
    name = f"deskmail_t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template_database}"')
    yield _url(name)
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def queue_prefix() -> Iterator[str]:
    prefix = f"dmtest.{uuid.uuid4().hex[:10]}"
    yield prefix
    from kombu import Connection

    from shared.topology import Topology

    topology = Topology(prefix)
    with Connection(AMQP_URL) as conn:
        channel = conn.channel()
        for queue in topology.all_queues():
            queue.bind(channel).delete()
        for exchange in (topology.exchange, topology.retry_exchange, topology.dead_exchange):
            exchange.bind(channel).delete()


@pytest.fixture
def settings(database_url: str, queue_prefix: str, tmp_path: Path) -> Settings:
    return Settings(
        database_url=database_url,
        amqp_url=AMQP_URL,
        data_dir=tmp_path / "var",
        secret_key="test-secret-" + uuid.uuid4().hex,
        queue_prefix=queue_prefix,
        mail_domain="deskmail.test",
        retry_delay_ms=300,
        retry_attempts=2,
        redeliveries=2,
        prefetch=32,
    )


@pytest.fixture
def app(settings: Settings) -> Iterator[App]:
    application = App(settings)
    yield application
    if "pool" in application.__dict__:
        application.pool.close()
