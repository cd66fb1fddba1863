"""The `deskmail` command run in this process against the test's database and RabbitMQ.

    from tests.integration.cli_support import cli  # noqa: F401

    def test_x(cli):
        code, out, err = cli("mailbox", "list", stdin="...")
"""

from __future__ import annotations

import io
import logging
from collections.abc import Callable, Iterator

import pytest

from services.cli import main
from tests.conftest import stage_env

Cli = Callable[..., tuple[int, str, str]]


@pytest.fixture
def cli(settings, monkeypatch, capsys) -> Iterator[Cli]:
    for key, value in stage_env(settings).items():
        monkeypatch.setenv(key, value)
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)

    def run(*args: str, stdin: str | None = None) -> tuple[int, str, str]:
        if stdin is not None:
            monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
        capsys.readouterr()
        code = main(list(args))
        out, err = capsys.readouterr()
        return code, out, err

    yield run
    # App.from_env() logs to this test's captured stderr; later tests must not.
    root.handlers[:] = saved[0]
    root.setLevel(saved[1])
