"""End-to-end throughput and latency of the whole pipeline, against this machine's raw limits.

    python bench/e2e.py            # 10,000 mails (about 5 minutes)
    python bench/e2e.py --quick    # 1,000 mails, shorter phases (about a minute)
    python bench/e2e.py --rspamd --rules 50   # every mail checked by rspamd, 50 mail rules

Needs PostgreSQL and RabbitMQ on 127.0.0.1 (TEST_DATABASE_URL, TEST_AMQP_URL
override them) and the private Dovecot (scripts/dovecot.sh start). Each run
uses a fresh database, a queue prefix of its own and fresh Dovecot users.

Phases, in one run:

1. limits      the raw speed of the jobs the stages rest on, with plain
               clients and nothing of Deskmail (bench/limits.py).
2. throughput  N mails of the shared mix (bench/mailgen.py) are written into
               a Dovecot user's Maildir, then the four stages start as
               separate processes over RabbitMQ and PostgreSQL, auto-replies
               on (to an aiosmtpd sink in a process of its own) and archive on.
               The clock runs from the start of the processes until every
               mail is a committed request, every auto-reply has reached the
               sink and the INBOX is empty. Per stage: its own rate over its
               active span (first to last commit), CPU seconds and peak RSS.
3. latency     mails APPENDed over IMAP at a steady rate (50/s) to a second
               mailbox the fetcher IDLEs on; mail-to-request latency is the
               history entry's created_at minus the moment the APPEND was sent.
4. big mail    one mail with a 25 MB attachment through the running stages;
               the peak RSS figures printed are taken after it.
5. embedded    the same as 2 with `deskmail run` in one process (memory://
               broker, embedded PostgreSQL), fewer mails.

Deskmail's figures are printed as ratios of the limits of phase 1.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import imaplib
import multiprocessing as mp
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import psycopg  # noqa: E402
from psycopg.conninfo import conninfo_to_dict  # noqa: E402
from psycopg.rows import dict_row  # noqa: E402

from bench import limits  # noqa: E402
from bench.mailgen import generate_with_ids  # noqa: E402
from bench.procstats import ProcUsage, ServerWatch  # noqa: E402
from shared import db, mailboxes, smtp_settings  # noqa: E402
from shared.crypto import Keys  # noqa: E402
from shared.topology import Topology  # noqa: E402

ADMIN_URL = os.environ.get("TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
AMQP_URL = os.environ.get("TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672//")
DOVECOT_DIR = Path(os.environ.get("DOVECOT_DIR", "/tmp/deskmail-dovecot"))
IMAP_HOST, IMAP_PORT, PASSWORD = "127.0.0.1", 10143, "secret"
STAGES = ("fetcher", "parser", "ticketer", "replier")
SECRET = "bench-e2e-secret"
# Every new request gets its auto-reply: the benchmark's senders are not rate limited.
AUTO_REPLY_LIMITS = "1d:1000000"
BIG_ATTACHMENT = 25 * 1024 * 1024


# ---- the SMTP sink, in a process of its own -------------------------------------

def _sink_main(port: int, ready: mp.Event, stop: mp.Event, count: mp.Value, last: mp.Value) -> None:
    from aiosmtpd.controller import Controller

    class Handler:
        async def handle_DATA(self, server, session, envelope) -> str:  # noqa: ANN001
            with count.get_lock():
                count.value += 1
                last.value = time.time()
            return "250 2.0.0 Ok"

    controller = Controller(Handler(), hostname="127.0.0.1", port=port, server_hostname="localhost",
                            ready_timeout=10, data_size_limit=0)
    controller.start()
    ready.set()
    stop.wait()
    controller.stop()


class Sink:
    """An aiosmtpd server in another process (not sharing our GIL) that counts what it accepts."""

    def __init__(self) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = int(probe.getsockname()[1])
        self._ready, self._stop = mp.Event(), mp.Event()
        self._count, self._last = mp.Value("l", 0), mp.Value("d", 0.0)
        self._proc = mp.Process(target=_sink_main, daemon=True,
                                args=(self.port, self._ready, self._stop, self._count, self._last))

    def __enter__(self) -> Sink:
        self._proc.start()
        if not self._ready.wait(20):
            raise SystemExit("the SMTP sink process did not start")
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._proc.join(10)

    @property
    def pid(self) -> int:
        return int(self._proc.pid or 0)

    @property
    def count(self) -> int:
        return int(self._count.value)


# ---- Dovecot -------------------------------------------------------------------

USERS: list[str] = []  # removed at the end of the run


def new_user(label: str) -> str:
    user = f"bench-{label}-{uuid.uuid4().hex[:10]}"
    USERS.append(user)
    return user


def _login(user: str) -> imaplib.IMAP4:
    client = imaplib.IMAP4(IMAP_HOST, IMAP_PORT)
    client.login(user, PASSWORD)
    return client


def load_maildir(user: str, mails: Iterator[tuple[str, bytes]], keep: int) -> tuple[list[str], list[bytes], int]:
    """Write mails as Maildir files of a fresh Dovecot user (Dovecot indexes them on SELECT).

    Returns the Message-IDs, the first `keep` mails (for the limit probes) and the bytes written.
    """
    client = _login(user)  # creates the user's home and Maildir
    client.select("INBOX")
    client.logout()
    cur = DOVECOT_DIR / "home" / user / "Maildir" / "cur"
    cur.mkdir(parents=True, exist_ok=True)
    owner = cur.parent.stat()
    host = socket.gethostname()
    ids, kept, total = [], [], 0
    for i, (message_id, raw) in enumerate(mails):
        data = raw.replace(b"\r\n", b"\n")
        path = cur / f"{1700000000 + i}.M{i}P{os.getpid()}.{host},S={len(data)}:2,"
        path.write_bytes(data)
        os.chown(path, owner.st_uid, owner.st_gid)
        ids.append(message_id)
        total += len(raw)
        if len(kept) < keep:
            kept.append(raw)
    client = _login(user)
    client.select("INBOX")  # index now, as a live server would have
    client.logout()
    return ids, kept, total


def inbox_count(user: str) -> int:
    client = _login(user)
    try:
        _, data = client.status("INBOX", "(MESSAGES)")
        return int(data[0].split(b"MESSAGES ")[1].rstrip(b")"))
    finally:
        client.logout()


def big_mail(seed: int) -> tuple[str, bytes]:
    """A customer's mail with a 25 MB attachment (34 MB as base64)."""
    rng = random.Random(seed)
    message_id = f"big.{seed}.{rng.getrandbits(32):08x}@mail.example.com"
    data = base64.encodebytes(rng.randbytes(BIG_ATTACHMENT)).replace(b"\n", b"\r\n")
    head = (f"From: Big Sender <big.sender@example.com>\r\nTo: Support <support@example.test>\r\n"
            f"Subject: Scan of the whole contract\r\nMessage-ID: <{message_id}>\r\n"
            f"Date: Mon, 08 Jan 2024 10:00:00 +0100\r\nMIME-Version: 1.0\r\n"
            f'Content-Type: multipart/mixed; boundary="b1"\r\n\r\n--b1\r\n'
            f"Content-Type: text/plain; charset=utf-8\r\n\r\nThe scan is attached.\r\n--b1\r\n"
            f'Content-Type: application/pdf; name="contract.pdf"\r\nContent-Transfer-Encoding: base64\r\n'
            f'Content-Disposition: attachment; filename="contract.pdf"\r\n\r\n').encode()
    return message_id, head + data + b"--b1--\r\n"


# ---- the database and the broker -------------------------------------------------

@contextlib.contextmanager
def scratch_database() -> Iterator[str]:
    name = f"deskmail_e2e_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        url = ADMIN_URL.rsplit("/", 1)[0] + "/" + name
        db.migrate(url)
        yield url
    finally:
        with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def delete_queues(prefix: str) -> None:
    from kombu import Connection

    topology = Topology(prefix)
    with Connection(AMQP_URL) as conn:
        channel = conn.channel()
        for queue in topology.all_queues():
            with contextlib.suppress(Exception):
                queue.bind(channel).delete()
        for exchange in (topology.exchange, topology.retry_exchange, topology.dead_exchange):
            with contextlib.suppress(Exception):
                exchange.bind(channel).delete()


def configure(url: str, sink_port: int, user: str, *, system_smtp: bool = True, rules: int = 0) -> int:
    """The system SMTP pointing at the sink, an IMAP mailbox for `user` and `rules` mail rules; its id."""
    keys = Keys(SECRET)
    with psycopg.connect(url, row_factory=dict_row) as conn:
        if system_smtp:
            smtp_settings.set_system(conn, keys, {"host": "127.0.0.1", "port": sink_port, "security": "none"},
                                     None)
        mailbox_id = mailboxes.create(conn, keys, {
            "from_name": "Example Support", "address": f"{user}@example.test", "host": IMAP_HOST,
            "port": IMAP_PORT, "username": user, "account_type": "imap", "security": "none",
            "archive": True, "archive_folder": "Archive", "auto_reply": True, "poll_interval": 1,
            "max_per_poll": 2000, "max_message_bytes": 64 * 1024 * 1024,
        }, PASSWORD)
        add_rules(conn, mailbox_id, rules)
        conn.commit()
    return mailbox_id


def bench_rules(count: int) -> list[dict]:
    """`count` mail rules of every kind an administrator writes, cycling through ten shapes.

    Most match little of the mix, as in life; each matching one sets a category. Header
    and recipient conditions make the ticketer read each mail's head as well.
    """
    words = ["invoice", "refund", "password", "delivery", "urgent", "login", "order", "cancel",
             "warranty", "upgrade", "quote", "contract", "outage", "backup", "license"]
    shapes = [
        lambda w: [{"field": "subject", "op": "contains", "value": w}],
        lambda w: [{"field": "body", "op": "regex", "value": rf"\b{w}\s+(no\.?|number|#)\s*\d{{3,}}"}],
        lambda w: [{"field": "from", "op": "contains", "value": f"@{w}.example"}],
        lambda w: [{"field": "recipient", "op": "equals", "value": f"{w}@example.test"}],
        lambda w: [{"field": "header", "header": "X-Mailer", "op": "contains", "value": w}],
        lambda w: [{"field": "subject", "op": "regex", "value": rf"^(re|fwd?):\s*{w}"},
                   {"field": "attachments", "value": True}],
        lambda w: [{"field": "body", "op": "contains", "value": f"{w} request"},
                   {"field": "automatic", "value": False}],
        lambda w: [{"field": "cc", "op": "contains", "value": w}],
        lambda w: [{"field": "subject", "op": "equals", "value": w}],
        lambda w: [{"field": "body", "op": "contains", "value": w, "negate": True},
                   {"field": "subject", "op": "contains", "value": f"[{w}]"}],
    ]
    out = []
    for i in range(count):
        word = words[i % len(words)]
        out.append({"name": f"bench {i + 1}: {word}", "match": "all", "conditions": shapes[i % len(shapes)](word),
                    "actions": [{"action": "category", "value": f"Bench {word}"}]})
    return out


def add_rules(conn: psycopg.Connection, mailbox_id: int, count: int) -> None:
    from psycopg.types.json import Jsonb

    from shared.filters.rules import clean

    for position, values in enumerate(bench_rules(count), start=1):
        rule = clean(values)
        conn.execute("INSERT INTO mail_rules (mailbox_id, position, name, match, conditions, actions)"
                     " VALUES (%s, %s, %s, %s, %s, %s)",
                     (mailbox_id if position % 2 else None, position, rule["name"], rule["match"],
                      Jsonb(rule["conditions"]), Jsonb(rule["actions"])))


def rspamd_env() -> dict[str, str]:
    """The tests' rspamd (scripts/rspamd.sh), started if need be: its DESKMAIL_RSPAMD_* settings."""
    script = ROOT / "scripts" / "rspamd.sh"
    subprocess.run(["bash", str(script), "start"], check=True, stdout=subprocess.DEVNULL)
    out = subprocess.run(["bash", str(script), "env"], check=True, capture_output=True, text=True).stdout
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


_COUNTS_SQL = """
SELECT (SELECT count(*) FROM raw_messages WHERE mailbox_id = %(m)s) AS stored,
       (SELECT count(*) FROM parsed_messages p JOIN raw_messages r ON r.id = p.raw_id
         WHERE r.mailbox_id = %(m)s) AS parsed,
       (SELECT count(*) FROM history h JOIN raw_messages r ON r.id = h.raw_id
         WHERE r.mailbox_id = %(m)s AND h.kind = 'incoming')
     + (SELECT count(*) FROM unmatched_mail u JOIN raw_messages r ON r.id = u.raw_id
         WHERE r.mailbox_id = %(m)s)
     + (SELECT count(*) FROM held_mail WHERE mailbox_id = %(m)s) AS ticketed,
       (SELECT count(*) FROM history h JOIN requests q ON q.id = h.request_id
         WHERE q.mailbox_id = %(m)s AND h.kind = 'incoming' AND h.outcome = 'created'
           AND h.automatic IS NULL AND NOT q.spam AND q.no_auto_reply IS NULL) AS due,
       (SELECT count(*) FROM requests WHERE mailbox_id = %(m)s AND spam) AS spam,
       (SELECT count(*) FROM spam_verdicts v JOIN raw_messages r ON r.id = v.raw_id
         WHERE r.mailbox_id = %(m)s AND v.state = 'unchecked') AS unchecked,
       (SELECT count(*) FROM outgoing_mail o JOIN requests q ON q.id = o.request_id
         WHERE q.mailbox_id = %(m)s AND o.kind = 'auto_reply' AND o.state = 'sent') AS sent,
       (SELECT count(*) FROM outgoing_mail o JOIN requests q ON q.id = o.request_id
         WHERE q.mailbox_id = %(m)s AND o.kind = 'auto_reply' AND o.state IN ('pending', 'sending')) AS unsent,
       (SELECT count(*) FROM outgoing_mail o JOIN requests q ON q.id = o.request_id
         WHERE q.mailbox_id = %(m)s AND o.kind = 'auto_reply'
           AND o.state IN ('failed', 'unknown', 'skipped')) AS not_sent,
       (SELECT count(*) FROM remote_messages WHERE mailbox_id = %(m)s AND state = 'archived') AS archived
"""

_SPANS_SQL = """
SELECT 'fetcher' AS stage, min(received_at) AS first, max(received_at) AS last, count(*) AS n
  FROM raw_messages WHERE mailbox_id = %(m)s
UNION ALL
SELECT 'parser', min(p.created_at), max(p.created_at), count(*)
  FROM parsed_messages p JOIN raw_messages r ON r.id = p.raw_id WHERE r.mailbox_id = %(m)s
UNION ALL
SELECT 'ticketer', min(h.created_at), max(h.created_at), count(*)
  FROM history h JOIN raw_messages r ON r.id = h.raw_id WHERE r.mailbox_id = %(m)s AND h.kind = 'incoming'
UNION ALL
SELECT 'replier', min(o.sent_at), max(o.sent_at), count(*)
  FROM outgoing_mail o JOIN requests q ON q.id = o.request_id
 WHERE q.mailbox_id = %(m)s AND o.kind = 'auto_reply' AND o.state = 'sent'
"""


OUTAGES: list[str] = []  # database errors seen while watching: the figures then include an outage


def counts(url: str, mailbox_id: int) -> dict[str, int] | None:
    """The pipeline's progress on one mailbox; None while the database does not answer."""
    try:
        with psycopg.connect(url, row_factory=dict_row, autocommit=True, connect_timeout=5) as conn:
            row = conn.execute(_COUNTS_SQL, {"m": mailbox_id}).fetchone()
    except psycopg.OperationalError as exc:
        OUTAGES.append(f"{time.strftime('%H:%M:%S')} {str(exc).strip().splitlines()[-1]}")
        return None
    assert row is not None
    return {k: int(v) for k, v in row.items()}


@dataclass
class Span:
    stage: str
    first: float  # epoch seconds
    last: float
    count: int

    def rate(self) -> float:
        return self.count / (self.last - self.first) if self.last > self.first else float("nan")


def spans(url: str, mailbox_id: int) -> dict[str, Span]:
    with psycopg.connect(url, row_factory=dict_row, autocommit=True) as conn:
        rows = conn.execute(_SPANS_SQL, {"m": mailbox_id}).fetchall()
    return {r["stage"]: Span(r["stage"], r["first"].timestamp(), r["last"].timestamp(), int(r["n"]))
            for r in rows if r["first"] is not None}


# ---- the stage processes ----------------------------------------------------------

@dataclass
class Processes:
    env: dict[str, str]
    log_dir: Path
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def start(self, names: tuple[str, ...]) -> None:
        for name in names:
            if name in self.procs and self.procs[name].poll() is None:
                continue  # running already (--staged started it)
            log = open(self.log_dir / f"{name}.log", "ab")  # noqa: SIM115 - the child holds it
            self.procs[name] = subprocess.Popen([sys.executable, "-m", "services.cli", name], env=self.env,
                                                cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
            log.close()

    def usage(self) -> dict[str, ProcUsage]:
        return {name: ProcUsage.of(p.pid) for name, p in self.procs.items()}

    def check_alive(self) -> None:
        dead = {n: p.returncode for n, p in self.procs.items() if p.poll() is not None}
        if dead:
            raise SystemExit(f"stage(s) exited during the run: {dead}; logs in {self.log_dir}")

    def stop(self) -> dict[str, int]:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        codes = {}
        for name, proc in self.procs.items():
            try:
                codes[name] = proc.wait(40)
            except subprocess.TimeoutExpired:
                proc.kill()
                codes[name] = proc.wait()
        return codes


def stage_env(**values: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_URL", "AMQP_URL", "DESKMAIL_"))}
    env.update(DESKMAIL_SECRET_KEY=SECRET, DESKMAIL_HTTP_PORT="0", DESKMAIL_MAIL_DOMAIN="deskmail.test",
               DESKMAIL_AUTO_REPLY_LIMITS=AUTO_REPLY_LIMITS, PYTHONPATH=str(ROOT))
    env.update(values)
    return env


def wait_done(url: str, mailbox_id: int, n: int, user: str, sink: Sink, sink_base: int, procs: Processes,
              started: float, timeout: float, label: str) -> float:
    """Seconds from `started` until all n mails are requests, replies received and the INBOX empty."""
    deadline = started + timeout
    next_print = time.monotonic() + 5
    last_counts: dict[str, int] | None = None
    last_change = time.monotonic()
    while True:
        procs.check_alive()
        c = counts(url, mailbox_id)
        received = sink.count - sink_base
        now = time.monotonic()
        if c is None:
            if now > deadline:
                raise SystemExit(f"{label}: the database did not answer; {OUTAGES[-1]}")
            time.sleep(1)
            continue
        if now >= next_print:
            print(f"  [{label} {now - started:5.1f}s] stored {c['stored']} parsed {c['parsed']} ticketed"
                  f" {c['ticketed']} replies {received}/{c['due']} archived {c['archived']}"
                  + (f" (auto-replies failed/unknown/skipped: {c['not_sent']})" if c["not_sent"] else ""),
                  flush=True)
            if c != last_counts:
                last_counts, last_change = c, now
            elif now - last_change > 60:
                raise SystemExit(f"{label}: no progress for 60 s: {c}, sink {received}; logs in {procs.log_dir}")
            next_print = now + 5
        if c["ticketed"] >= n and c["archived"] >= n and received >= c["due"] and not c["unsent"]:
            done = time.monotonic()
            if inbox_count(user) == 0:
                return done - started
        if now > deadline:
            raise SystemExit(f"{label}: not finished after {timeout:.0f} s: {c}, sink {received};"
                             f" logs in {procs.log_dir}")
        time.sleep(0.1)


def staged_run(url: str, mailbox_id: int, n: int, procs: Processes, sink: Sink, sink_base: int,
               watch: ServerWatch) -> None:
    """Start the stages one after the other, each once the one before has done all n mails.

    Each stage then has the whole backlog and the machine to itself: its own
    throughput, undisturbed by the others (and a clean target for py-spy).
    """
    counter = {"fetcher": "stored", "parser": "parsed", "ticketer": "ticketed", "replier": "sent"}
    for name in STAGES:
        started = time.monotonic()
        procs.start((name,))
        watch.clients[name] = procs.procs[name].pid
        while True:
            procs.check_alive()
            c = counts(url, mailbox_id)
            if c is not None and c[counter[name]] >= (c["due"] if name == "replier" else n):
                break
            if time.monotonic() - started > max(300.0, n / 5):
                raise SystemExit(f"staged: {name} did not finish: {c}")
            time.sleep(0.1)
        seconds = time.monotonic() - started
        usage = procs.usage()[name]
        done = c["sent"] if name == "replier" else n
        print(f"  staged: {name:9} alone: {done} in {seconds:5.1f} s = {done / seconds:6,.0f}/s"
              f" (including its start-up), CPU {usage.cpu_seconds:.1f} s, peak RSS {usage.peak_rss_mb:.0f} MB",
              flush=True)


# ---- report helpers -----------------------------------------------------------------

def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p * len(ordered)))] if ordered else float("nan")


def ratio(value: float, limit: limits.Limit | None) -> str:
    if limit is None or limit.rate <= 0:
        return ""
    return f"{value / limit.rate:6.1%} of {limit.name} ({limit.rate:,.0f}/s)"


# ---- phases --------------------------------------------------------------------------

def measure_limits(user: str, sample: list[bytes], n: int, sink: Sink, url: str) -> dict[str, limits.Limit]:
    probes = {}
    print("limits (plain clients, nothing of Deskmail):", flush=True)
    count = min(n, 3000)
    for probe in (
        lambda: limits.imap_fetch(IMAP_HOST, IMAP_PORT, user, PASSWORD, count),
        lambda: limits.mime_parse(sample),
        lambda: limits.broker_publish(AMQP_URL, max(count, 2000)),
        lambda: limits.db_copy_raw(url, sample),
        lambda: limits.db_insert_rows(url, max(count, 2000)),
        lambda: limits.smtp_send("127.0.0.1", sink.port, min(count, 2000)),
    ):
        limit = probe()
        probes[limit.name] = limit
        print(f"  {limit.name:15} {limit.rate:9,.0f} /s   {limit.what}", flush=True)
    return probes


def throughput_phase(args: argparse.Namespace, url: str, sink: Sink, procs: Processes,
                     watch_holder: list[ServerWatch]) -> dict:
    n = args.n
    user = new_user("e2e")
    started = time.perf_counter()
    ids, sample, size = load_maildir(user, generate_with_ids(n, args.seed), keep=min(n, 2000))
    print(f"loaded {n} mails ({size / 1e6:.0f} MB, {size / n / 1024:.1f} KB average) into Dovecot user {user}"
          f" in {time.perf_counter() - started:.1f} s", flush=True)
    probes = {} if args.no_limits else measure_limits(user, sample, n, sink, url)
    del sample
    mailbox_id = configure(url, sink.port, user, rules=args.rules)
    sink_base = sink.count
    watch = ServerWatch(conninfo_to_dict(url)["dbname"]).start()
    watch_holder.append(watch)
    ours_before = ProcUsage.of(os.getpid()).cpu_seconds + ProcUsage.of(sink.pid).cpu_seconds
    started = time.monotonic()
    wall_started = time.time()
    if args.staged:
        staged_run(url, mailbox_id, n, procs, sink, sink_base, watch)
    procs.start(STAGES)
    watch.clients.update({name: proc.pid for name, proc in procs.procs.items()})
    print(f"throughput: {n} mails, four stage processes (logs in {procs.log_dir})", flush=True)
    elapsed = wait_done(url, mailbox_id, n, user, sink, sink_base, procs, started, max(180.0, n / 10), "e2e")
    usage = procs.usage()
    watch.stop()
    ours = ProcUsage.of(os.getpid()).cpu_seconds + ProcUsage.of(sink.pid).cpu_seconds - ours_before
    return {"staged": args.staged, "ours": ours, "n": n, "elapsed": elapsed, "usage": usage, "watch": watch, "probes": probes,
            "spans": spans(url, mailbox_id), "counts": counts(url, mailbox_id), "wall_started": wall_started,
            "ids": ids, "user": user}


def latency_phase(args: argparse.Namespace, url: str, sink: Sink) -> dict:
    user = new_user("latency")
    client = _login(user)
    client.create("Archive")
    client.logout()
    mailbox_id = configure(url, sink.port, user, system_smtp=False)
    # The fetcher picks the new mailbox up, polls it once and goes into IDLE.
    deadline = time.monotonic() + 30
    with psycopg.connect(url, autocommit=True) as conn:
        while conn.execute("SELECT last_poll_at FROM mailboxes WHERE id = %s", (mailbox_id,)).fetchone()[0] is None:
            if time.monotonic() > deadline:
                raise SystemExit("the fetcher did not take the latency mailbox within 30 s")
            time.sleep(0.1)
    time.sleep(0.5)
    total = int(args.rate * args.latency_seconds)
    mails = list(generate_with_ids(total, args.seed + 1))
    appended: dict[str, float] = {}
    client = _login(user)
    print(f"latency: {total} mails appended at {args.rate:.0f}/s with IDLE", flush=True)
    start = time.monotonic()
    behind = 0.0
    for i, (message_id, raw) in enumerate(mails):
        due = start + i / args.rate
        wait = due - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        else:
            behind = max(behind, -wait)
        appended[message_id] = time.time()
        client.append("INBOX", None, None, raw)
    client.logout()
    feed_seconds = time.monotonic() - start
    deadline = time.monotonic() + 120
    with psycopg.connect(url, autocommit=True) as conn:
        while True:
            rows = conn.execute(
                "SELECT h.message_id, h.created_at FROM history h JOIN raw_messages r ON r.id = h.raw_id"
                " WHERE r.mailbox_id = %s AND h.kind = 'incoming'", (mailbox_id,)).fetchall()
            if len(rows) >= total or time.monotonic() > deadline:
                break
            time.sleep(0.2)
    latencies = [created.timestamp() - appended[mid] for mid, created in rows if mid in appended]
    return {"total": total, "done": len(rows), "latencies": latencies, "feed_seconds": feed_seconds,
            "behind": behind, "user": user, "mailbox_id": mailbox_id}


def big_mail_phase(args: argparse.Namespace, url: str, sink: Sink, latency: dict) -> float:
    message_id, raw = big_mail(args.seed)
    base = sink.count
    started = time.monotonic()
    client = _login(latency["user"])
    client.append("INBOX", None, None, raw)
    client.logout()
    del raw
    deadline = time.monotonic() + 180
    with psycopg.connect(url, autocommit=True) as conn:
        while True:
            row = conn.execute("SELECT count(*) FROM history WHERE message_id = %s", (message_id,)).fetchone()
            if row[0] and sink.count > base:
                return time.monotonic() - started
            if time.monotonic() > deadline:
                raise SystemExit("the 25 MB mail did not become a request with its auto-reply within 180 s")
            time.sleep(0.2)


def embedded_phase(args: argparse.Namespace, sink: Sink, work: Path) -> dict:
    import pgserver

    n = args.embedded_n
    user = new_user("embedded")
    ids, _, size = load_maildir(user, generate_with_ids(n, args.seed + 2), keep=0)
    data_dir = work / "embedded"
    (data_dir / "pgdata").mkdir(parents=True)
    server = pgserver.get_server(data_dir / "pgdata", cleanup_mode="delete")
    try:
        url = server.get_uri()
        db.migrate(url)
        mailbox_id = configure(url, sink.port, user)
        env = stage_env(DESKMAIL_DATA_DIR=str(data_dir), DESKMAIL_WEB="0")
        procs = Processes(env, work)
        watch = ServerWatch(conninfo_to_dict(url).get("dbname", "postgres"), pgdata=str(data_dir / "pgdata")).start()
        base = sink.count
        started = time.monotonic()
        procs.start(("run",))
        watch.clients["run"] = procs.procs["run"].pid
        print(f"embedded: {n} mails, `deskmail run` in one process", flush=True)
        try:
            elapsed = wait_done(url, mailbox_id, n, user, sink, base, procs, started, max(180.0, n / 5),
                                "embedded")
            usage = procs.usage()
            watch.stop()
        finally:
            codes = procs.stop()
    finally:
        server.cleanup()
    return {"n": n, "elapsed": elapsed, "usage": usage["run"], "watch": watch, "codes": codes}


# ---- the report -------------------------------------------------------------------------

def report(tp: dict, lat: dict | None, big: float | None, peak: dict[str, ProcUsage], emb: dict | None,
           cores: int) -> None:
    n, elapsed, probes = tp["n"], tp["elapsed"], tp["probes"]
    rate = n / elapsed
    print()
    if tp["staged"]:
        print("== (--staged: the stages ran one after the other; the end-to-end time is their sum)")
    print(f"== end to end (four processes): {n} mails in {elapsed:.1f} s = {rate:,.0f} mails/s"
          f"   (target 250/s: {'met' if rate >= 250 else 'NOT met'})")
    if OUTAGES:
        print(f"   WARNING: the database did not answer {len(OUTAGES)} time(s) during the run (first:"
              f" {OUTAGES[0]}); another process restarted it? The figures include that outage.")
    c = tp["counts"]
    print(f"   {c['ticketed']} mails ticketed, {c['due']} new requests due an auto-reply, {c['sent']} auto-replies"
          f" sent ({c['not_sent']} failed/unknown/skipped), {c['archived']} archived, INBOX empty;"
          f" {c['spam']} spam requests, {c['unchecked']} mails not checked by rspamd")
    busy, available = tp["watch"].machine_busy()
    servers = tp["watch"].cpu_seconds()
    total_stage_cpu = sum(u.cpu_seconds for u in tp["usage"].values())
    others = busy - total_stage_cpu - sum(servers.values()) - tp["ours"]
    print(f"   machine: {busy:.0f} of {available:.0f} CPU s busy ({busy / available:.0%} of {cores} cores);"
          f" of that, processes outside this benchmark {max(others, 0):.0f} CPU s, this script and the SMTP"
          f" sink {tp['ours']:.0f}")
    print()
    print(f"   {'stage':10} {'own rate':>12} {'active span':>16} {'CPU s':>7} {'CPU ms/mail':>12}"
          f" {'its PG ms/mail':>15} {'peak RSS':>9}")
    relevant = {"fetcher": "imap_fetch", "parser": "mime_parse", "ticketer": "db_insert_rows",
                "replier": "smtp_send"}
    start = tp["wall_started"]
    for name in STAGES:
        span = tp["spans"].get(name)
        usage = tp["usage"][name]
        mem = peak.get(name, usage).peak_rss_mb
        own = f"{span.rate():,.0f}/s" if span else "n/a"
        when = f"{span.first - start:5.1f}-{span.last - start:5.1f} s" if span else ""
        per = usage.cpu_seconds * 1000 / max(span.count if span else n, 1)
        pg = servers.get(f"postgresql: {name}", 0.0) * 1000 / max(span.count if span else n, 1)
        print(f"   {name:10} {own:>12} {when:>16} {usage.cpu_seconds:7.1f} {per:12.1f} {pg:15.1f} {mem:7.0f} MB"
              f"   {ratio(span.rate() if span else 0, probes.get(relevant[name]))}")
    print("   servers' CPU s: " + ", ".join(f"{k} {v:.1f}" for k, v in sorted(servers.items()))
          + f"; stages {total_stage_cpu:.1f}")
    per_mail = (total_stage_cpu + sum(servers.values())) * 1000 / n
    print("   (RabbitMQ and Dovecot serve other test runs too: their figures include that work)")
    print(f"   CPU per mail, all processes: {per_mail:.1f} ms (stages {total_stage_cpu * 1000 / n:.1f} ms)"
          f" -> at most {cores * 1000 / per_mail:,.0f} mails/s on {cores} cores")
    if probes:
        print()
        print("   end to end as a share of each raw limit:")
        for limit in probes.values():
            print(f"     {ratio(rate, limit)}")
    if lat is not None:
        values = lat["latencies"]
        p50, p95, p99 = pct(values, 0.5), pct(values, 0.95), pct(values, 0.99)
        print()
        print(f"== latency at {lat['total'] / lat['feed_seconds']:.0f} mails/s with IDLE ({lat['done']} of"
              f" {lat['total']} mails; the feeder fell behind by at most {lat['behind'] * 1000:.0f} ms):")
        print(f"   mail-to-request p50 {p50 * 1000:.0f} ms  p95 {p95 * 1000:.0f} ms  p99 {p99 * 1000:.0f} ms"
              f"  max {max(values) * 1000:.0f} ms   (targets p50 < 1000, p99 < 3000:"
              f" {'met' if p50 < 1 and p99 < 3 else 'NOT met'})")
    if big is not None:
        print()
        worst = max(u.peak_rss_mb for u in peak.values())
        print(f"== a mail with a {BIG_ATTACHMENT // 2**20} MB attachment: request and auto-reply in {big:.1f} s;"
              f" peak RSS per stage over the whole run: "
              + ", ".join(f"{k} {u.peak_rss_mb:.0f} MB" for k, u in peak.items())
              + f"   (target < 200 MB: {'met' if worst < 200 else 'NOT met'})")
    if emb is not None:
        rate = emb["n"] / emb["elapsed"]
        servers = emb["watch"].cpu_seconds()
        print()
        print(f"== embedded (`deskmail run`, one process, memory:// broker, embedded PostgreSQL): {emb['n']} mails"
              f" in {emb['elapsed']:.1f} s = {rate:,.0f} mails/s")
        print(f"   process: CPU {emb['usage'].cpu_seconds:.1f} s"
              f" ({emb['usage'].cpu_seconds * 1000 / emb['n']:.1f} ms/mail), peak RSS {emb['usage'].peak_rss_mb:.0f} MB;"
              " servers' CPU s: " + ", ".join(f"{k} {v:.1f}" for k, v in sorted(servers.items())))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("-n", type=int, default=10_000, help="mails in the throughput phase")
    parser.add_argument("--quick", action="store_true", help="1,000 mails and short phases (about a minute)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--rate", type=float, default=50.0, help="mails/s appended in the latency phase")
    parser.add_argument("--latency-seconds", type=float, default=30.0)
    parser.add_argument("--embedded-n", type=int, default=None,
                        help="mails in the embedded phase (default 2000, --quick 300; 0: skip)")
    parser.add_argument("--no-limits", action="store_true", help="skip the raw-limit probes")
    parser.add_argument("--no-big", action="store_true", help="skip the 25 MB attachment")
    parser.add_argument("--only-throughput", action="store_true", help="phases 1-2 only (for profiling)")
    parser.add_argument("--staged", action="store_true",
                        help="first run each stage alone on the backlog (its own throughput), then the rest")
    parser.add_argument("--keep-logs", action="store_true", help="keep the stages' logs (printed path)")
    parser.add_argument("--rspamd", action="store_true",
                        help="check every mail with the tests' rspamd (scripts/rspamd.sh start)")
    parser.add_argument("--rules", type=int, default=0, help="mail rules on the throughput mailbox (e.g. 50)")
    args = parser.parse_args()
    if args.quick:
        args.n, args.latency_seconds = 1000, 8.0
    if args.embedded_n is None:
        args.embedded_n = 300 if args.quick else 2000
    cores = os.cpu_count() or 1
    work = Path(tempfile.mkdtemp(prefix="deskmail-e2e-"))
    prefix = f"bench.e2e.{uuid.uuid4().hex[:8]}"
    print(f"Deskmail end-to-end benchmark: {cores} cores, seed {args.seed}, {time.strftime('%Y-%m-%d %H:%M')},"
          f" rspamd {'on' if args.rspamd else 'off'}, {args.rules} mail rules", flush=True)
    spam_env = rspamd_env() if args.rspamd else {}
    lat = big = emb = None
    watch_holder: list[ServerWatch] = []
    try:
        with Sink() as sink, scratch_database() as url:
            env = stage_env(DATABASE_URL=url, AMQP_URL=AMQP_URL, DESKMAIL_QUEUE_PREFIX=prefix, **spam_env)
            procs = Processes(env, work)
            try:
                tp = throughput_phase(args, url, sink, procs, watch_holder)
                if not args.only_throughput:
                    lat = latency_phase(args, url, sink)
                    if not args.no_big:
                        big = big_mail_phase(args, url, sink, lat)
                peak = procs.usage()
            finally:
                codes = procs.stop()
                delete_queues(prefix)
            bad = {k: v for k, v in codes.items() if v != 0}
            if bad:
                print(f"warning: stages exited with {bad} on SIGTERM; logs in {work}")
            if not args.only_throughput and args.embedded_n > 0:
                emb = embedded_phase(args, sink, work)
        report(tp, lat, big, peak, emb, cores)
    finally:
        for watch in watch_holder:
            if watch.is_alive():
                watch.stop()
        for user in USERS:
            shutil.rmtree(DOVECOT_DIR / "home" / user, ignore_errors=True)
        if args.keep_logs:
            print(f"logs: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
