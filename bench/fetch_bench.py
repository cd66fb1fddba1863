"""Fetcher throughput against the real Dovecot: first import of a big mailbox, then archiving.

    python bench/fetch_bench.py            # 10,000 mixed messages
    python bench/fetch_bench.py --quick    # 1,000
    python bench/fetch_bench.py -n 5000 --security tls

Needs PostgreSQL and RabbitMQ on 127.0.0.1 (TEST_DATABASE_URL, TEST_AMQP_URL
override them) and the private Dovecot (scripts/dovecot.sh start). The mail
from bench/mailgen.py is written straight into a fresh Dovecot user's Maildir
(Dovecot indexes it on first use), so loading is not what is measured.

Import: from the start of the poll until every raw message is committed in
PostgreSQL and its mail.received event confirmed by RabbitMQ (the poll
returns only then). Latency is per stored batch: fetched -> committed ->
confirmed. Archive: every message marked committed, then one poll moves them
all to the archive folder (UID MOVE, 500 per command).
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import psycopg  # noqa: E402
from kombu import Connection  # noqa: E402
from mailgen import generate  # noqa: E402

from services.fetcher import poll as poll_module  # noqa: E402
from services.fetcher.poll import Poller  # noqa: E402
from shared import db, mailboxes  # noqa: E402
from shared.crypto import Keys  # noqa: E402
from shared.mailserver.connect import open_remote  # noqa: E402
from shared.publisher import Publisher  # noqa: E402
from shared.topology import Topology  # noqa: E402

ADMIN_URL = os.environ.get("TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
AMQP_URL = os.environ.get("TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672//")
DOVECOT_DIR = Path(os.environ.get("DOVECOT_DIR", "/tmp/deskmail-dovecot"))
PORTS = {"none": 10143, "starttls": 10143, "tls": 10993}


def load_maildir(user: str, messages: list[bytes]) -> float:
    """Write the messages as Maildir files of a fresh Dovecot user; returns MB written."""
    import imapclient

    client = imapclient.IMAPClient("127.0.0.1", port=10143, ssl=False)
    client.login(user, "secret")  # creates the user's home and Maildir
    client.select_folder("INBOX")
    client.logout()
    cur = DOVECOT_DIR / "home" / user / "Maildir" / "cur"
    cur.mkdir(parents=True, exist_ok=True)
    stat = cur.parent.stat()
    host = socket.gethostname()
    total = 0
    for i, raw in enumerate(messages):
        data = raw.replace(b"\r\n", b"\n")
        path = cur / f"{1700000000 + i}.M{i}P{os.getpid()}.{host},S={len(data)}:2,"
        path.write_bytes(data)
        os.chown(path, stat.st_uid, stat.st_gid)
        total += len(data)
    return total / 1e6


def percentiles(values: list[float]) -> str:
    values = sorted(values)
    if not values:
        return "n/a"

    def at(p: float) -> float:
        return values[min(len(values) - 1, int(p * len(values)))] * 1000

    return f"p50 {at(0.50):.0f} ms  p95 {at(0.95):.0f} ms  p99 {at(0.99):.0f} ms"


class TimedPoller(Poller):
    """Records how long each batch took from fetched to committed and confirmed."""

    batch_seconds: list[float]

    def _store(self, mailbox, folder, uidvalidity, batch):  # type: ignore[no-untyped-def]
        started = time.perf_counter()
        count = super()._store(mailbox, folder, uidvalidity, batch)
        if batch:
            self.batch_seconds.append(time.perf_counter() - started)
        return count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("-n", type=int, default=10_000)
    parser.add_argument("--quick", action="store_true", help="1,000 messages")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--security", choices=sorted(PORTS), default="none")
    parser.add_argument("--batch", type=int, default=poll_module.BATCH, help="messages stored per transaction")
    args = parser.parse_args()
    poll_module.BATCH = args.batch
    n = 1000 if args.quick else args.n

    messages = list(generate(n, args.seed))
    user = f"bench-{uuid.uuid4().hex[:10]}"
    started = time.perf_counter()
    megabytes = load_maildir(user, messages)
    print(f"loaded {n} messages ({megabytes:.0f} MB) into Dovecot user {user} in {time.perf_counter() - started:.1f} s")
    del messages

    name = f"deskmail_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = ADMIN_URL.rsplit("/", 1)[0] + "/" + name
    topology = Topology(f"bench.{uuid.uuid4().hex[:8]}")
    pool = None
    try:
        db.migrate(url)
        pool = db.make_pool(url, max_size=4)
        keys = Keys("bench-secret")
        with db.transaction(pool) as conn:
            mailbox_id = mailboxes.create(conn, keys, {
                "from_name": "Support", "address": f"{user}@example.test", "host": "127.0.0.1",
                "username": user, "account_type": "imap", "security": args.security,
                "port": PORTS[args.security], "allow_self_signed": True, "max_per_poll": n,
            }, "secret")
            mailbox = mailboxes.get(conn, mailbox_id, keys)
        with Connection(AMQP_URL) as broker:
            broker.ensure_connection(max_retries=3)
            topology.declare(broker)
            poller = TimedPoller(pool, Publisher(broker), topology)
            poller.batch_seconds = []

            started = time.perf_counter()
            remote = open_remote(mailbox)
            result = poller.poll(mailbox, remote)
            remote.close()
            elapsed = time.perf_counter() - started
            assert result.fetched == n, f"imported {result.fetched} of {n}"
            print(f"import   {n} messages in {elapsed:.2f} s: {n / elapsed:,.0f} messages/s, "
                  f"{megabytes / elapsed:.0f} MB/s  (batch of {poll_module.BATCH} fetched->committed->confirmed:"
                  f" {percentiles(poller.batch_seconds)})")

            with db.transaction(pool) as conn:
                conn.execute("UPDATE remote_messages SET state = 'committed' WHERE mailbox_id = %s", (mailbox_id,))
            started = time.perf_counter()
            remote = open_remote(mailbox)
            result = poller.poll(mailbox, remote)
            remote.close()
            elapsed = time.perf_counter() - started
            assert result.removed == n, f"archived {result.removed} of {n}"
            print(f"archive  {n} messages in {elapsed:.2f} s: {n / elapsed:,.0f} messages/s"
                  f" (UID MOVE of {500} per command)")

            channel = broker.channel()
            for queue in topology.all_queues():
                queue.bind(channel).delete()
            for exchange in (topology.exchange, topology.retry_exchange, topology.dead_exchange):
                exchange.bind(channel).delete()
    finally:
        if pool is not None:
            pool.close()
        with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        shutil.rmtree(DOVECOT_DIR / "home" / user, ignore_errors=True)


if __name__ == "__main__":
    main()
