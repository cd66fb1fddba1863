"""Graceful shutdown: SIGTERM in the middle of 500 mails loses and duplicates nothing.

The fetcher, parser and ticketer run as their own processes (the process
boundary and the signal are the point) on the real RabbitMQ and PostgreSQL,
importing the shared benchmark mix from a Maildir. While mail is flowing,
every stage gets SIGTERM, as Kubernetes sends it; each must exit by itself
within the pod's grace period. After a restart every mail is exactly one
history entry, the Maildir is empty (all archived) and nothing was
dead-lettered.
"""

from __future__ import annotations

import mailbox as stdlib_mailbox
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench.mailgen import generate
from tests.conftest import stage_env
from tests.integration.ops_helpers import (
    add_mailbox,
    broker_messages,
    make_maildir,
    scalar,
    wait_for,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

N = 500
STAGES = ("fetcher", "parser", "ticketer")
GRACE_SECONDS = 30  # the Deployments' terminationGracePeriodSeconds


def start(settings, log_dir: Path, round_: int) -> dict[str, subprocess.Popen]:
    procs = {}
    for stage in STAGES:
        # A small prefetch keeps several batches in flight, so the signal lands mid-work.
        env = {**stage_env(settings), "DESKMAIL_PREFETCH": "16"}
        with open(log_dir / f"{stage}.{round_}.log", "wb") as log:
            procs[stage] = subprocess.Popen([sys.executable, "-m", "services.cli", stage], env=env, stdout=log, stderr=subprocess.STDOUT)
    return procs


def terminate(procs: dict[str, subprocess.Popen]) -> dict[str, float]:
    """SIGTERM every stage at once; the seconds each took to exit (asserted by the caller)."""
    sent = time.monotonic()
    for p in procs.values():
        p.send_signal(signal.SIGTERM)
    took = {}
    for stage, p in procs.items():
        try:
            p.wait(timeout=max(0.1, GRACE_SECONDS - (time.monotonic() - sent)))
        except subprocess.TimeoutExpired:
            p.kill()  # what the kubelet does after the grace period
            p.wait()
        took[stage] = time.monotonic() - sent
    return took


def test_sigterm_during_500_mails_loses_and_duplicates_nothing(app, settings, tmp_path):
    maildir = make_maildir(tmp_path, generate(N, seed=11))
    add_mailbox(app, str(maildir))
    history = "SELECT count(*) AS n FROM history WHERE kind = 'incoming'"

    procs = start(settings, tmp_path, 1)
    try:
        wait_for(lambda: scalar(app, history) >= 30, 120, "the first requests")
        took = terminate(procs)
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.kill()
    at_stop = scalar(app, history)
    codes = {stage: p.returncode for stage, p in procs.items()}
    assert codes == dict.fromkeys(STAGES, 0), (codes, took)
    assert max(took.values()) < GRACE_SECONDS, took
    assert at_stop < N, "the run finished before the signal: nothing was tested"
    for stage in STAGES:
        log = (tmp_path / f"{stage}.1.log").read_text()
        assert '"event": "stopped"' in log and "did not finish in time" not in log, log[-2000:]

    procs = start(settings, tmp_path, 2)
    try:
        wait_for(lambda: scalar(app, history) >= N, 180, f"{N} history entries", interval=0.5)
        # Archived after their requests committed: the Maildir empties.
        wait_for(lambda: len(stdlib_mailbox.Maildir(maildir, create=False)) == 0, 60, "the Maildir to empty")
    finally:
        terminate(procs)

    assert scalar(app, history) == N
    assert scalar(app, "SELECT count(DISTINCT raw_id) AS n FROM history WHERE kind = 'incoming'") == N
    assert scalar(app, "SELECT count(*) AS n FROM raw_messages") == N  # no mail imported twice
    assert scalar(app, "SELECT count(*) AS n FROM raw_messages r WHERE NOT EXISTS"
                       " (SELECT 1 FROM history h WHERE h.raw_id = r.id)") == 0
    assert scalar(app, "SELECT count(*) AS n FROM remote_messages WHERE state = 'archived'") == N
    for stage in ("parse", "ticket"):
        assert broker_messages(f"{app.topology.queue_name(stage)}.dead") == []
    print(f"stopped after {at_stop} of {N} mails; exit times {took}")
