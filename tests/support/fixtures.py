"""Pytest fixtures for the real-server tests.

Registered from tests/conftest.py with ``pytest_plugins``. Importing this
module starts nothing: Dovecot starts when a test first asks for ``dovecot``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.support import dovecot as dv
from tests.support import rspamd as rs
from tests.support.smtp import SmtpSink


@dataclass(frozen=True)
class DovecotServer:
    """Where the test Dovecot listens, plus the mailbox helpers of
    tests.support.dovecot, so a test needs only this one fixture."""

    host: str = dv.HOST
    imap_port: int = dv.IMAP_PORT
    imaps_port: int = dv.IMAPS_PORT
    pop3_port: int = dv.POP3_PORT
    pop3s_port: int = dv.POP3S_PORT
    password: str = dv.PASSWORD
    ca_file: Path = dv.CA_FILE
    log_file: Path = dv.LOG_FILE

    ssl_context = staticmethod(dv.ssl_context)
    new_user = staticmethod(dv.new_user)
    imap = staticmethod(dv.imap)
    append = staticmethod(dv.append)
    create_folder = staticmethod(dv.create_folder)
    folder_exists = staticmethod(dv.folder_exists)
    list_uids = staticmethod(dv.list_uids)
    fetch_all = staticmethod(dv.fetch_all)
    folder_count = staticmethod(dv.folder_count)
    uidvalidity = staticmethod(dv.uidvalidity)


@pytest.fixture(scope="session")
def dovecot() -> DovecotServer:
    """The private Dovecot, started on first use (scripts/dovecot.sh start)."""
    dv.ensure_dovecot()
    return DovecotServer()


@pytest.fixture(scope="session")
def rspamd() -> rs.RspamdServer:
    """The tests' private rspamd, started on first use (scripts/rspamd.sh start)."""
    return rs.ensure_rspamd()


@pytest.fixture
def smtp_sink() -> Iterator[SmtpSink]:
    """A started plain-SMTP sink without AUTH, stopped after the test."""
    with SmtpSink() as sink:
        yield sink


@pytest.fixture
def smtp_sink_factory() -> Iterator[Callable[..., SmtpSink]]:
    """Start sinks with SmtpSink's options, e.g. ``factory(tls="ssl")``.

    Every sink made through it is stopped after the test.
    """
    sinks: list[SmtpSink] = []

    def make(**options: Any) -> SmtpSink:
        sink = SmtpSink(**options).start()
        sinks.append(sink)
        return sink

    yield make
    for sink in sinks:
        sink.stop()
