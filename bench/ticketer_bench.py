"""Ticketer throughput: mail.parsed events from RabbitMQ into requests in PostgreSQL.

    python bench/ticketer_bench.py            # 10,000 mails
    python bench/ticketer_bench.py --quick    # 1,000 mails
    python bench/ticketer_bench.py --profile  # plus where the handler's time goes

Before timing: the shared mail mix (bench/mailgen.py: new requests, replies
to earlier mails, some with attachments) is parsed with the real parser and
inserted as the fetcher and parser leave it (raw_messages, remote_messages,
blobs, parsed_messages) into a fresh database, and one mail.parsed event per
mail is published to a fresh queue. Timed: the real Worker with
TicketerHandler consuming the backlog, committing each batch and publishing
request.created/updated with confirms, until every output is on the reply
queue. Then every guarantee is checked: one history entry per mail, replies
in their parent's request, every remote message committed.

Prints mails/s and the latency of a batch and per mail (p50/p95/p99).
Needs PostgreSQL and RabbitMQ (BENCH_DATABASE_URL, BENCH_AMQP_URL; default
the local servers the tests use).
"""

from __future__ import annotations

import argparse
import cProfile
import hashlib
import io
import json
import os
import pstats
import sys
import threading
import time
import uuid
from multiprocessing import Pool
from pathlib import Path

import psycopg
from psycopg.rows import dict_row

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from mailgen import SUPPORT, generate_with_ids  # noqa: E402

from services.parser.mime import parse_message  # noqa: E402
from services.ticketer.stage import TicketerHandler  # noqa: E402
from shared import db as dbmod  # noqa: E402
from shared.crypto import Keys  # noqa: E402
from shared.events import MAIL_PARSED, Event  # noqa: E402
from shared.publisher import Publisher  # noqa: E402
from shared.settings import Settings  # noqa: E402
from shared.topology import Topology  # noqa: E402
from shared.worker import Worker, connect  # noqa: E402

ADMIN_URL = os.environ.get("BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
AMQP_URL = os.environ.get("BENCH_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672//")


def _parse(item: tuple[str, bytes]) -> tuple[bytes, dict, list[tuple[str, int, bytes]]]:
    raw = item[1]
    parsed = parse_message(raw, own_addresses=frozenset({SUPPORT}))
    return raw, parsed.to_json(), [(a.sha256, a.size, a.data) for a in parsed.attachments]


def prepare(url: str, n: int, seed: int) -> tuple[int, list[str], dict[str, str]]:
    """Parse and store n mails; return the mailbox id, their Message-IDs and reply -> parent."""
    started = time.perf_counter()
    mails = list(generate_with_ids(n, seed))
    with Pool(os.cpu_count() or 2) as pool:
        parsed = pool.map(_parse, mails, chunksize=50)
    parents = {}
    for (mid, _), (_, pj, _) in zip(mails, parsed, strict=True):
        if pj["in_reply_to"]:
            parents[mid] = pj["in_reply_to"][0]
    with psycopg.connect(url, row_factory=dict_row) as conn:
        cat = conn.execute("INSERT INTO categories (name) VALUES ('Support') RETURNING id").fetchone()["id"]
        mailbox = conn.execute(
            "INSERT INTO mailboxes (from_name, address, host, username, account_type, category_id)"
            " VALUES ('Support', %s, 'imap.example.test', 'support', 'imap', %s) RETURNING id",
            (SUPPORT, cat),
        ).fetchone()["id"]
        with conn.cursor() as cur:
            with cur.copy("COPY raw_messages (id, mailbox_id, data, size, sha256) FROM STDIN") as copy:
                for i, (raw, _, _) in enumerate(parsed, 1):
                    copy.write_row((i, mailbox, raw, len(raw), hashlib.sha256(raw).hexdigest()))
            cur.execute("SELECT setval(pg_get_serial_sequence('raw_messages', 'id'), %s)", (n,))
            with cur.copy("COPY remote_messages (mailbox_id, folder, uidvalidity, remote_id, raw_id, state)"
                          " FROM STDIN") as copy:
                for i in range(1, n + 1):
                    copy.write_row((mailbox, "INBOX", 1, str(i), i, "published"))
            blobs: dict[str, tuple[int, bytes]] = {}
            for _, _, atts in parsed:
                for sha, size, data in atts:
                    blobs[sha] = (size, data)
            with cur.copy("COPY blobs (sha256, size, data) FROM STDIN") as copy:
                for sha, (size, data) in blobs.items():
                    copy.write_row((sha, size, data))
            with cur.copy("COPY parsed_messages (raw_id, parsed) FROM STDIN") as copy:
                for i, (_, pj, _) in enumerate(parsed, 1):
                    copy.write_row((i, json.dumps(pj)))
        conn.execute("ANALYZE")
        conn.commit()
        # Flush the preparation's writes now, not during the timed run.
        conn.execute("CHECKPOINT")
    size = sum(len(r) for r, _, _ in parsed)
    print(f"prepared {n} mails ({size / n / 1024:.0f} KB average, {len(parents)} replies,"
          f" {sum(1 for _, _, a in parsed if a)} with attachments) in {time.perf_counter() - started:.1f} s")
    return mailbox, [m for m, _ in mails], parents


class Timed:
    """Wraps the handler: batch sizes and durations, and an optional profile."""

    def __init__(self, handler: TicketerHandler, profile: bool) -> None:
        self.handler = handler
        self.stage = handler.stage
        self.batches: list[tuple[int, float]] = []
        self.profiler = cProfile.Profile() if profile else None
        self.first: float | None = None  # when the first batch arrived (after connecting)

    def handle(self, events: list) -> list:
        t0 = time.perf_counter()
        if self.first is None:
            self.first = t0
        if self.profiler:
            self.profiler.enable()
        try:
            return self.handler.handle(events)
        finally:
            if self.profiler:
                self.profiler.disable()
            self.batches.append((len(events), time.perf_counter() - t0))


def _cpu(pid: int) -> float:
    """CPU seconds (user + system) used so far by a local process: the server's share of the work."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(p * len(values)))] * 1000


def run(args: argparse.Namespace) -> None:
    name = f"deskmail_bench_{uuid.uuid4().hex[:8]}"
    url = ADMIN_URL.rsplit("/", 1)[0] + "/" + name
    prefix = f"bench.{uuid.uuid4().hex[:8]}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    topology = Topology(prefix)
    try:
        dbmod.migrate(url)
        mailbox, message_ids, parents = prepare(url, args.n, args.seed)
        settings = Settings(database_url=url, amqp_url=AMQP_URL, queue_prefix=prefix,
                            secret_key="bench", prefetch=args.prefetch)
        with connect(settings) as conn:
            topology.declare(conn)
            publisher = Publisher(conn)
            events = [Event(MAIL_PARSED, {"raw_id": i, "mailbox_id": mailbox}) for i in range(1, args.n + 1)]
            for start in range(0, len(events), 1000):
                publisher.publish_events(topology.exchange, "ticket", events[start:start + 1000])
        pool = dbmod.make_pool(url, max_size=1)
        with pool.connection() as conn:
            backend = conn.execute("SELECT pg_backend_pid() AS p").fetchone()["p"]
        server_cpu0, client_cpu0 = _cpu(backend), time.process_time()
        handler = Timed(TicketerHandler(pool, Keys("bench").message_id_key), args.profile)
        worker = Worker(settings, topology, handler)  # type: ignore[arg-type]
        thread = threading.Thread(target=worker.run, daemon=True)
        started = time.perf_counter()
        thread.start()
        with connect(settings) as conn:
            channel = conn.channel()
            reply_queue = topology.queue("reply").bind(channel)
            while True:
                _, ready, _ = reply_queue.queue_declare(passive=True)
                if ready >= args.n or time.perf_counter() - started > args.timeout:
                    break
                time.sleep(0.02)
        elapsed = time.perf_counter() - started
        server_cpu, client_cpu = _cpu(backend) - server_cpu0, time.process_time() - client_cpu0
        worker.stop()
        thread.join(10)
        pool.close()
        check(url, args.n, message_ids, parents, ready)
        sizes = [s for s, _ in handler.batches]
        per_batch = [d for _, d in handler.batches]
        per_mail = [d / s for s, d in handler.batches for _ in range(s)]
        print(f"ticketer: {args.n} mails in {elapsed:.2f} s = {args.n / elapsed:.0f} mails/s"
              f"  (prefetch {args.prefetch}, {len(sizes)} batches, {sum(sizes) / len(sizes):.0f} mails each)")
        steady = started + elapsed - (handler.first or started)
        print(f"  without the Worker's start (connect, declare): {args.n / steady:.0f} mails/s")
        print(f"  batch latency    p50 {pct(per_batch, .5):7.1f} ms  p95 {pct(per_batch, .95):7.1f} ms"
              f"  p99 {pct(per_batch, .99):7.1f} ms")
        print(f"  per-mail latency p50 {pct(per_mail, .5):7.3f} ms  p95 {pct(per_mail, .95):7.3f} ms"
              f"  p99 {pct(per_mail, .99):7.3f} ms  (batch time / batch size)")
        print(f"  CPU per mail     {client_cpu / args.n * 1000:.3f} ms ticketer process"
              f" + {server_cpu / args.n * 1000:.3f} ms its PostgreSQL backend"
              f" (load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)")
        if handler.profiler:
            out = io.StringIO()
            pstats.Stats(handler.profiler, stream=out).sort_stats("cumulative").print_stats(25)
            print(out.getvalue())
    finally:
        with connect(Settings(amqp_url=AMQP_URL)) as conn:
            channel = conn.channel()
            for queue in topology.all_queues():
                queue.bind(channel).delete()
            for exchange in (topology.exchange, topology.retry_exchange, topology.dead_exchange):
                exchange.bind(channel).delete()
        with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def check(url: str, n: int, message_ids: list[str], parents: dict[str, str], published: int) -> None:
    """Every guarantee, after the run: fail loudly rather than print a fast wrong number."""
    with psycopg.connect(url, row_factory=dict_row) as conn:
        history = conn.execute("SELECT count(*) AS c, count(DISTINCT raw_id) AS d FROM history").fetchone()
        request_of = {r["message_id"]: r["request_id"]
                      for r in conn.execute("SELECT message_id, request_id FROM history")}
        waiting = conn.execute("SELECT count(*) AS c FROM remote_messages WHERE state <> 'committed'").fetchone()
        requests = conn.execute("SELECT count(*) AS c FROM requests").fetchone()["c"]
    problems = []
    if published != n:
        problems.append(f"{published} events published for {n} mails")
    if history["c"] != n or history["d"] != n:
        problems.append(f"{history['c']} history entries ({history['d']} distinct mails) for {n} mails")
    misplaced = [m for m, p in parents.items() if p in request_of and request_of.get(m) != request_of[p]]
    if misplaced:
        problems.append(f"{len(misplaced)} replies not in their parent's request")
    if waiting["c"]:
        problems.append(f"{waiting['c']} remote messages not marked committed")
    if requests != n - len(parents):
        problems.append(f"{requests} requests for {n - len(parents)} conversations")
    if problems:
        raise SystemExit("guarantee broken: " + "; ".join(problems))
    print(f"checked: {n} history entries, {requests} requests, {len(parents)} replies in their"
          " parent's request, all committed, one output per mail")


def main() -> None:
    parser = argparse.ArgumentParser(description="ticketer benchmark")
    parser.add_argument("-n", type=int, default=10_000)
    parser.add_argument("--quick", action="store_true", help="1,000 mails")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--prefetch", type=int, default=256, help="messages per Worker batch")
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--timeout", type=float, default=300.0)
    args = parser.parse_args()
    if args.quick:
        args.n = 1000
    run(args)


if __name__ == "__main__":
    main()
