"""The replier end to end: request.created events -> templates -> MIME -> SMTP.

10,000 new requests (drawn from bench/mailgen.py: senders, subjects,
Message-IDs, References) are written to a scratch PostgreSQL database the way
the ticketer leaves them; the replier's handler then takes the request.created
events in batches of `prefetch` (as the worker hands them over), decides each
auto-reply (loop rules, rate limit), renders it, builds the MIME and sends it
to an aiosmtpd server running in another process (so it does not share our
GIL), over one kept SMTP session. Target: at least 400 mails/s.

    PYTHONPATH=. python bench/replier_bench.py [--quick] [-n N]

Needs the PostgreSQL of the test suite (TEST_DATABASE_URL, default
postgresql://postgres@127.0.0.1:5432/postgres); the scratch database is dropped at the end.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import socket
import statistics
import time
from email.parser import BytesHeaderParser
from email.utils import parseaddr

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from bench.mailgen import generate
from services.replier.stage import ReplierHandler
from shared import db, smtp_settings
from shared.crypto import Keys
from shared.events import REQUEST_CREATED, Event
from shared.mailserver.smtp import Sender, open_session
from shared.settings import Settings

ADMIN_URL = os.environ.get("TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
SUPPORT = "support@example.test"


# ---- the SMTP server, in its own process ------------------------------------

def _smtp_server(port: int, ready: mp.Event, stop: mp.Event, count: mp.Value) -> None:
    from aiosmtpd.controller import Controller

    class Handler:
        async def handle_DATA(self, server, session, envelope) -> str:  # noqa: ANN001
            with count.get_lock():
                count.value += 1
            return "250 2.0.0 Ok"

    controller = Controller(Handler(), hostname="127.0.0.1", port=port,
                            server_hostname="localhost", ready_timeout=10)
    controller.start()
    ready.set()
    stop.wait()
    controller.stop()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ---- fixtures in the database -------------------------------------------------

def _seed(url: str, keys: Keys, port: int, n: int) -> list[Event]:
    """n requests, each with its incoming mail and parsed form; returns request.created events."""
    headers = BytesHeaderParser()
    rows = []
    for i, raw in enumerate(generate(n, seed=7)):
        h = headers.parsebytes(raw)
        name, address = parseaddr(str(h.get("From", "")))
        refs = [r.strip("<>") for r in str(h.get("References", "")).split()]
        rows.append((i, name, address or f"anon{i}@example.com", str(h.get("Subject", ""))[:200],
                     str(h.get("Message-ID", "")).strip("<>") or None, refs))
    with psycopg.connect(url, autocommit=False) as conn:
        conn.execute(
            "INSERT INTO mailboxes (from_name, address, host, username, account_type, auto_reply)"
            " VALUES ('{{ agent.name if agent else \"Example Support\" }}', %s, 'localhost', 'x',"
            " 'imap', true)", (SUPPORT,))
        conn.row_factory = dict_row
        smtp_settings.set_system(conn, keys, {"host": "127.0.0.1", "port": port,
                                              "security": "none"}, None)
        events = []
        with conn.cursor() as cur:
            for i, name, address, subject, mid, refs in rows:
                cust = cur.execute(
                    "INSERT INTO customers (address, name) VALUES (%s, %s)"
                    " ON CONFLICT (lower(address)) DO UPDATE SET name = EXCLUDED.name RETURNING id",
                    (address, name)).fetchone()["id"]
                raw_id = cur.execute(
                    "INSERT INTO raw_messages (mailbox_id, data, size, sha256)"
                    " VALUES (1, '\\x00', 1, %s) RETURNING id", (str(i),)).fetchone()["id"]
                parsed = {"from": {"name": name, "address": address}, "reply_to": [], "to": [],
                          "cc": [], "subject": subject, "message_id": mid, "in_reply_to": [],
                          "references": refs, "body_text": "", "reply_text": "",
                          "attachments": [], "automatic": None, "bounce": None, "defects": [],
                          "unparsed": None, "date": None, "body_html": None}
                cur.execute("INSERT INTO parsed_messages (raw_id, parsed) VALUES (%s, %s)",
                            (raw_id, Jsonb(parsed)))
                req = cur.execute(
                    "INSERT INTO requests (mailbox_id, customer_id, subject) VALUES (1, %s, %s)"
                    " RETURNING id", (cust, subject)).fetchone()["id"]
                hist = cur.execute(
                    "INSERT INTO history (request_id, kind, raw_id, outcome, message_id,"
                    " from_address, from_name, subject, body_text) VALUES"
                    " (%s, 'incoming', %s, 'created', %s, %s, %s, %s, 'Hello, my printer...')"
                    " RETURNING id", (req, raw_id, mid, address, name, subject)).fetchone()["id"]
                events.append(Event(REQUEST_CREATED, {"request_id": req, "history_id": hist}))
        conn.commit()
    return events


def _session_cost(port: int, mails: int = 200) -> tuple[float, float]:
    """ms per mail with a new session each time, and with one kept session."""
    s = smtp_settings.SmtpSettings(0, "bench", True, "127.0.0.1", port, "none", None)
    data = b"From: a@example.test\r\nTo: b@example.test\r\nSubject: x\r\n\r\nx\r\n"
    t0 = time.perf_counter()
    for _ in range(mails):
        client = open_session(s)
        client.sendmail("a@example.test", ["b@example.test"], data)
        client.quit()
    fresh = (time.perf_counter() - t0) / mails * 1000
    sender = Sender()
    t0 = time.perf_counter()
    for _ in range(mails):
        sender.send(s, "a@example.test", ["b@example.test"], data)
    kept = (time.perf_counter() - t0) / mails * 1000
    sender.close()
    return fresh, kept


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-n", type=int, default=10_000)
    ap.add_argument("--quick", action="store_true", help="1,000 events instead of 10,000")
    ap.add_argument("--batch", type=int, default=64, help="events per handle() call (prefetch)")
    args = ap.parse_args()
    n = 1_000 if args.quick else args.n

    port = _free_port()
    ready, stop, count = mp.Event(), mp.Event(), mp.Value("l", 0)
    server = mp.Process(target=_smtp_server, args=(port, ready, stop, count), daemon=True)
    server.start()
    if not ready.wait(20):
        raise SystemExit("the SMTP server process did not start")

    name = f"deskmail_bench_{os.getpid()}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = ADMIN_URL.rsplit("/", 1)[0] + "/" + name
    try:
        db.migrate(url)
        settings = Settings(database_url=url, amqp_url="amqp://unused", secret_key="bench",
                            mail_domain="example.test", auto_reply_limits="1m:1000000")
        keys = Keys("bench")
        t0 = time.perf_counter()
        events = _seed(url, keys, port, n)
        print(f"seeded {n} requests from bench/mailgen.py in {time.perf_counter() - t0:.1f}s")
        fresh, kept = _session_cost(port)
        print(f"SMTP cost:   {fresh:.2f} ms/mail with a new session each, {kept:.2f} ms/mail"
              " over one kept session")
        pool = db.make_pool(url, max_size=8)
        handler = ReplierHandler(settings, pool, keys)
        before = count.value
        per_mail: list[float] = []
        start = time.perf_counter()
        for i in range(0, n, args.batch):
            batch = events[i:i + args.batch]
            t = time.perf_counter()
            handler.handle(batch)
            per_mail.append((time.perf_counter() - t) * 1000 / len(batch))
        elapsed = time.perf_counter() - start
        handler.close()
        deadline = time.monotonic() + 10
        while count.value - before < n and time.monotonic() < deadline:
            time.sleep(0.05)
        received = count.value - before
        with pool.connection() as conn:
            states = {r["state"]: r["n"] for r in conn.execute(
                "SELECT state, count(*) AS n FROM outgoing_mail GROUP BY state")}
        pool.close()
        q = statistics.quantiles(per_mail, n=100) if len(per_mail) > 1 else per_mail * 99
        print(f"events:      {n} request.created in batches of {args.batch}")
        print(f"received:    {received} mails by the SMTP server; outgoing states {states}")
        print(f"throughput:  {n / elapsed:,.0f} mails/s (one replier process; target 400)")
        print(f"latency ms per mail (batch time / batch size): p50 {q[49]:.2f}  p95 {q[94]:.2f}"
              f"  p99 {q[98]:.2f}")
        print(f"batch latency ms: p50 {statistics.median(per_mail) * args.batch:.0f}")
        if received != n:
            raise SystemExit(f"FAIL: {n - received} mails did not arrive")
    finally:
        stop.set()
        server.join(10)
        with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    main()
