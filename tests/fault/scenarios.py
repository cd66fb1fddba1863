"""The reliability scenarios of issue 7, shared by the fault suite and bench/reliability.py.

Each scenario runs the four stages as processes against the real RabbitMQ,
PostgreSQL and Dovecot, with auto-replies and archiving on, feeds mail from
bench/mailgen.py into a Dovecot INBOX while it hurts the pipeline, waits until
the pipeline has settled, and returns a `Result`: the `Verdict` of
tests.support.pipeline.check_pipeline (lost, duplicated, duplicate
auto-replies, inbox, archive, queues, dead letters) and every fault injected
with the time the pipeline took to make progress again.

    sigkill     a random stage SIGKILLed every ~1.5 s, each at least `kills` times, restarted each time
    rabbitmq    `rabbitmqctl stop_app` for a few seconds in the middle of the run
    postgresql  `pg_ctlcluster ... restart` in the middle of the run
                (both only once work is in flight: the ticketer is paused until its queue holds
                `min_in_flight` messages, which are still unhandled when the fault begins)
    network     IMAP cut mid-FETCH, all IMAP connections reset, IMAP cut mid-MOVE (after the
                server took it), SMTP refused for a few seconds, SMTP cut after the end of DATA
    poison      one mail the ticketer fails on every time (its customer's row is locked by a
                forgotten operator session, the database has a lock_timeout): dead letter after
                the bounded retries; the session ends, `deskmail dead-letters replay`, a request
    malformed   mutated test mail and random bytes through a Maildir mailbox: each one a
                request (unparsed ones flagged, original attached), an unmatched bounce, or a
                visible dead letter with its raw message kept; no stage crashes or stalls

The IMAP and SMTP servers are always reached through a `TcpProxy`, so every
scenario runs the same network path. Sizes come from `Size`;
DESKMAIL_FAULT_SCALE multiplies the CI size (bench/reliability.py uses 5).
"""

from __future__ import annotations

import contextlib
import mailbox as stdlib_mailbox
import os
import random
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from psycopg.rows import dict_row

from services.app import App
from services.stages import STAGES
from shared import mailboxes, smtp_settings
from shared.db import transaction
from shared.settings import Settings
from tests.support import dovecot as dv
from tests.support.pipeline import (
    STAGE_COUNTER,
    ArchiveWatch,
    DeadLetter,
    Fault,
    Feeder,
    Progress,
    Stages,
    TcpProxy,
    Verdict,
    check_pipeline,
    dead_letters,
    queue_counts,
    ready_now,
    stage_env,
    wait_until,
)
from tests.support.smtp import SmtpSink

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))
import mailgen  # noqa: E402 - bench/ is not a package

# Our own test messages: the tests need nothing beside the repository.
PARSER_DATA = ROOT / "tests" / "data" / "parser"
PG_VERSION = next(iter(sorted(p.name for p in Path("/etc/postgresql").iterdir())), "15") \
    if Path("/etc/postgresql").is_dir() else "15"
SUPPORT = "support@acme.test"
ARCHIVE = "Archive"


def fault_scale() -> float:
    raw = os.environ.get("DESKMAIL_FAULT_SCALE", "") or "1"
    try:
        return max(0.1, float(raw))
    except ValueError:
        raise SystemExit(f"DESKMAIL_FAULT_SCALE must be a number, got {raw!r}") from None


@dataclass(frozen=True)
class Size:
    mails: int = 200  # per scenario
    kills_per_stage: int = 5
    kill_interval: float = 1.5  # seconds between two SIGKILLs (jittered)
    malformed: int = 1000

    @classmethod
    def from_scale(cls, scale: float) -> Size:
        return cls(mails=int(200 * scale), kills_per_stage=max(5, int(5 * scale ** 0.5)),
                   kill_interval=1.5, malformed=int(1000 * scale))


@dataclass
class Result:
    scenario: str
    verdict: Verdict
    faults: list[Fault] = field(default_factory=list)
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    @property
    def problems(self) -> list[str]:
        return self.verdict.problems


# Tuned for faults that last seconds: a 4 s SMTP outage must not exhaust the
# retries (3 in-process attempts, then 8 trips through the 1 s retry queue).
BASE_ENV = {
    "DESKMAIL_FETCH_LEASE_SECONDS": "6",  # a SIGKILLed fetcher's mailbox is taken over within 6 s
    "DESKMAIL_AUTO_REPLY_LIMITS": "1m:1000000",  # mailgen repeats senders; the limit is not under test
    "DESKMAIL_RETRY_ATTEMPTS": "3",
    "DESKMAIL_REDELIVERIES": "8",
    "DESKMAIL_RETRY_DELAY_MS": "1000",
    "DESKMAIL_PREFETCH": "32",
    "DESKMAIL_LOG_LEVEL": "INFO",
}


class Pipeline:
    """One scenario's world: mailbox, SMTP sink, proxies, stage processes, progress sampler."""

    def __init__(self, settings: Settings, work_dir: Path, *, maildir: Path | None = None,
                 env: dict[str, str] | None = None) -> None:
        self.settings = settings
        self.work_dir = work_dir
        self.maildir = maildir
        self.user = dv.new_user("fault")
        self.env = stage_env(settings, **{**BASE_ENV, **(env or {})})
        self.faults: list[Fault] = []
        self._stack = contextlib.ExitStack()

    def __enter__(self) -> Pipeline:
        stack = self._stack
        try:
            self.app = App(self.settings)
            stack.callback(self._close_pool)
            self.sink = stack.enter_context(SmtpSink())
            self.smtp_proxy = stack.enter_context(TcpProxy((self.sink.host, self.sink.port)))
            self.imap_proxy = stack.enter_context(TcpProxy((dv.HOST, dv.IMAP_PORT)))
            self._configure()
            self.progress = Progress(self.app.database_url)
            self.progress.start()
            stack.callback(self.progress.stop)
            self.watch: ArchiveWatch | None = None
            if self.maildir is None:
                self.watch = ArchiveWatch(self.user, ARCHIVE, self.app.database_url)
                self.watch.start()
                stack.callback(self.watch.stop)
            self.stages = Stages(self.env, self.work_dir / "logs")
            stack.callback(self._stop_stages)
            self.stages.start()
        except BaseException:
            stack.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self._stack.close()

    def _close_pool(self) -> None:
        if "pool" in self.app.__dict__:
            self.app.pool.close()

    def _stop_stages(self) -> None:
        codes = self.stages.stop()
        self.exit_codes = codes

    def _configure(self) -> None:
        if self.maildir is None:
            dv.create_folder(self.user, "INBOX")
            values = {"account_type": "imap", "host": "127.0.0.1", "port": self.imap_proxy.port,
                      "username": self.user, "security": "none"}
            password: str | None = dv.PASSWORD
        else:
            values = {"account_type": "maildir", "host": str(self.maildir), "username": "x", "security": "none"}
            password = None
        with transaction(self.app.pool) as conn:
            smtp_settings.set_system(conn, self.app.keys, {"host": "127.0.0.1", "port": self.smtp_proxy.port,
                                                           "security": "none"}, None)
            self.mailbox_id = mailboxes.create(conn, self.app.keys, {
                "from_name": "ACME Support", "address": SUPPORT, "archive": True, "archive_folder": ARCHIVE,
                "auto_reply": True, "poll_interval": 1, **values}, password)

    # -- helpers for scenarios --------------------------------------------------

    def fault(self, kind: str, target: str, started: float, counter: str | None = None,
              in_flight: int | None = None) -> Fault:
        fault = Fault(kind, target, started, time.monotonic(), counter, in_flight=in_flight)
        self.faults.append(fault)
        return fault

    def hold_work(self, at_least: int, timeout: float = 60.0) -> int:
        """Pause the ticketer until its queue holds `at_least` messages; return how many it holds.

        The ticketer is the only consumer of its queue, so while it is paused
        nothing leaves that queue: every message counted here is still on the
        broker, unhandled, when the caller's fault begins. Work in flight by
        construction, not by timing. The caller resumes the ticketer
        (`self.stages.resume("ticketer")`); on a failure here it is resumed.
        """
        queue = f"{self.settings.queue_prefix}.ticket"
        held = 0

        def enough() -> bool:
            nonlocal held
            # Ready messages only, counted live after the pause: a lower bound of what
            # waits (the paused ticketer may also hold a prefetched batch, unacked).
            held = ready_now(queue)
            return held >= at_least

        self.stages.pause("ticketer")
        try:
            wait_until(enough, timeout, f"{at_least} messages waiting in {queue} for the paused ticketer",
                       interval=0.3)
        except BaseException:
            self.stages.resume("ticketer")
            raise
        return held

    def sql(self, query: str, *params: object) -> list[dict]:
        with psycopg.connect(self.app.database_url, row_factory=dict_row, connect_timeout=3) as conn:
            return conn.execute(query, params).fetchall()

    def state(self) -> dict[str, object]:
        """Where the pipeline stands: the ledger's states, auto-replies, queues (for waiting and for errors)."""
        [row] = self.sql(
            "SELECT (SELECT count(*) FROM remote_messages WHERE state = 'archived') AS archived,"
            " (SELECT json_object_agg(state, n) FROM (SELECT state, count(*) AS n FROM remote_messages"
            "   GROUP BY state) s) AS ledger,"
            " (SELECT count(*) FROM outgoing_mail WHERE state IN ('pending', 'sending')) AS sending,"
            " (SELECT count(*) FROM history h JOIN requests r ON r.id = h.request_id WHERE h.kind = 'incoming'"
            "   AND h.outcome = 'created' AND NOT EXISTS (SELECT 1 FROM outgoing_mail o"
            "   WHERE o.request_id = r.id AND o.kind = 'auto_reply')) AS undecided")
        row["queues"] = {name: counts for name, counts in queue_counts(self.settings.queue_prefix).items()
                         if any(counts)}
        return row

    def settled(self, archived: int, less_dead: bool = False) -> bool:
        """All `archived` mails archived, every auto-reply decided and concluded, no queue holds a message.

        `less_dead`: a mail dead-lettered stays in the mailbox; expect that many fewer archived.
        """
        state = self._last_state = self.state()
        queues: dict[str, tuple[int, int]] = state["queues"]  # type: ignore[assignment]
        if less_dead:
            archived -= sum(ready for name, (ready, _) in queues.items() if name.endswith(".dead"))
        return (state["archived"] >= archived and not state["sending"] and not state["undecided"]
                and not any(not name.endswith(".dead") for name in state["queues"]))  # type: ignore[union-attr]

    def wait_settled(self, archived: int, timeout: float, less_dead: bool = False) -> None:
        self._last_state: dict[str, object] = {}
        try:
            wait_until(lambda: self.settled(archived, less_dead), timeout, f"{archived} mails archived and every queue empty",
                       interval=1.0)
        except AssertionError as exc:
            raise AssertionError(f"{exc}; last seen: {self._last_state}; stages alive:"
                                 f" { {n: self.stages.alive(n) for n in STAGES} }; logs in"
                                 f" {self.work_dir / 'logs'}") from None

    def check(self, mails: list[bytes], expect_dead: Callable[[list[DeadLetter]], list[str]] | None = None,
              held: list[bytes] | None = None, final: bool = True) -> Verdict:
        verdict = check_pipeline(self.app.database_url, self.settings.queue_prefix, mails,
                                 user=self.user if self.maildir is None else None, sink=self.sink,
                                 archive_folder=ARCHIVE, expect_dead=expect_dead, held=held or [])
        if self.watch is not None:
            early = self.watch.stop() if final else list(self.watch.violations)
            if early:
                verdict.problems.append(f"{len(early)} mail(s) archived before the commit, e.g. {early[0]}")
        crashed = self.stages.crashed()
        if crashed:
            verdict.problems.append(f"stages exited by themselves: {crashed}; logs in {self.work_dir / 'logs'}")
        return verdict

    def result(self, name: str, verdict: Verdict, started: float, notes: list[str] | None = None) -> Result:
        self.progress.settle(self.faults)
        notes = list(notes or [])
        if self.watch is not None:
            notes.append(f"archive watch: {self.watch.seen} mails seen arriving in the archive, each checked"
                         " against the committed requests")
        return Result(name, verdict, list(self.faults), time.monotonic() - started, notes)


def _mails(n: int, seed: int) -> list[bytes]:
    return list(mailgen.generate(n, seed))


def min_in_flight(mails: int) -> int:
    """How many messages an outage scenario holds on the broker when its fault begins."""
    return max(1, min(20, mails // 5))


def _feeder(pipeline: Pipeline, mails: list[bytes], over: float) -> Feeder:
    """Feed `mails` evenly over about `over` seconds, in waves every 0.5 s."""
    waves = max(1, int(over / 0.5))
    feeder = Feeder(pipeline.user, mails, per_wave=max(1, -(-len(mails) // waves)), interval=0.5)
    feeder.start()
    return feeder


# -- 1. SIGKILL --------------------------------------------------------------------


def sigkill(settings: Settings, work_dir: Path, size: Size, seed: int = 1) -> Result:
    mails = _mails(size.mails, seed)
    rng = random.Random(seed)
    order = [s for s in STAGES for _ in range(size.kills_per_stage)]
    rng.shuffle(order)
    started = time.monotonic()
    with Pipeline(settings, work_dir) as p:
        # Mail keeps arriving until about the last kill, so that most kills hit work in flight.
        feeder = _feeder(p, mails, over=len(order) * (size.kill_interval + 0.4) * 0.9)
        time.sleep(1.0)
        for stage in order:
            time.sleep(size.kill_interval * rng.uniform(0.6, 1.4))
            t = time.monotonic()
            p.stages.kill(stage)
            time.sleep(0.2)
            p.stages.start(stage)
            p.fault("sigkill", stage, t, counter=STAGE_COUNTER[stage])
        feeder.join()
        p.wait_settled(len(mails), timeout=120)
        verdict = p.check(mails)
        notes = [f"SIGKILLs per stage: {dict(p.stages.kills)}"]
        return p.result("sigkill", verdict, started, notes)


# -- 2. RabbitMQ stopped -------------------------------------------------------------


def _rabbitmqctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", *args], check=True, capture_output=True, timeout=120)


def rabbitmq(settings: Settings, work_dir: Path, size: Size, seed: int = 2, outage: float = 5.0) -> Result:
    mails = _mails(size.mails, seed)
    started = time.monotonic()
    with Pipeline(settings, work_dir) as p:
        feeder = _feeder(p, mails, over=12)
        try:
            held = p.hold_work(min_in_flight(len(mails)))
            t = time.monotonic()
            try:
                _rabbitmqctl("stop_app")
                # The ticketer wakes with the batch it had taken (unacked) and a dead connection:
                # what it commits now it cannot ack, and the restarted broker redelivers it.
                p.stages.resume("ticketer")
                time.sleep(outage)
            finally:
                _rabbitmqctl("start_app")  # always: other tests share this broker
                _rabbitmqctl("await_startup")
        finally:
            p.stages.resume("ticketer")
        p.fault("rabbitmq", "broker", t, in_flight=held)
        feeder.join()
        p.wait_settled(len(mails), timeout=150)
        return p.result("rabbitmq", p.check(mails), started)


# -- 3. PostgreSQL restarted ---------------------------------------------------------


def restart_postgresql() -> None:
    subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", PG_VERSION, "main", "restart"],
                   check=True, capture_output=True, timeout=120)


def postgresql(settings: Settings, work_dir: Path, size: Size, seed: int = 3) -> Result:
    mails = _mails(size.mails, seed)
    started = time.monotonic()
    with Pipeline(settings, work_dir) as p:
        feeder = _feeder(p, mails, over=10)
        try:
            held = p.hold_work(min_in_flight(len(mails)))
            t = time.monotonic()
            try:
                restart_postgresql()
            finally:
                # `restart` either finished or failed; make sure the server is up for everyone else.
                wait_until(lambda: psycopg.connect(p.app.database_url, connect_timeout=2).close() is None, 60,
                           "PostgreSQL to accept connections again")
        finally:
            # It wakes with the messages it held and database connections the restart closed.
            p.stages.resume("ticketer")
        p.fault("postgresql", "database", t, in_flight=held)
        feeder.join()
        p.wait_settled(len(mails), timeout=150)
        return p.result("postgresql", p.check(mails), started)


# -- 4. network faults through the proxies ---------------------------------------------


def network(settings: Settings, work_dir: Path, size: Size, seed: int = 4) -> Result:
    mails = _mails(size.mails, seed)
    started = time.monotonic()
    notes = []
    with Pipeline(settings, work_dir) as p:
        feeder = _feeder(p, mails, over=16)
        time.sleep(1.5)

        def cut(kind: str, proxy: TcpProxy, trigger: bytes, after: int, counter: str | None) -> None:
            t = time.monotonic()
            fired = proxy.cut_when(trigger, after)
            if fired.wait(15):
                p.fault(kind, trigger.decode().strip(), t, counter)
            else:
                notes.append(f"{kind}: the trigger {trigger!r} never came (no such traffic in 15 s)")

        cut("imap-cut-mid-fetch", p.imap_proxy, b"BODY.PEEK[]", 8000, "stored")
        time.sleep(1)
        t = time.monotonic()
        n = p.imap_proxy.cut_all()
        p.fault("imap-reset-all", f"{n} connection(s)", t, "stored")
        time.sleep(1)
        cut("imap-cut-mid-move", p.imap_proxy, b" MOVE ", 0, "archived")
        time.sleep(1)
        t = time.monotonic()
        p.smtp_proxy.refuse(4.0)
        p.fault("smtp-unreachable", "4 s", t, "replied")
        cut("smtp-cut-after-data", p.smtp_proxy, b"\r\n.\r\n", 0, "replied")
        feeder.join()
        p.wait_settled(len(mails), timeout=150)
        return p.result("network", p.check(mails), started, notes)


# -- 5. poison mail --------------------------------------------------------------------

POISON_SENDER = "poison.customer@example.org"


def _poison_mail(n: int) -> bytes:
    return (f"From: Pat Poison <{POISON_SENDER}>\r\nTo: {SUPPORT}\r\nSubject: Order {n} never arrived\r\n"
            f"Message-ID: <poison-{n}-{os.getpid()}-{time.time_ns()}@example.org>\r\n"
            "Date: Mon, 08 Jan 2024 10:00:00 +0100\r\nMIME-Version: 1.0\r\n"
            "Content-Type: text/plain; charset=utf-8\r\n\r\nWhere is my parcel?\r\n").encode()


def poison(settings: Settings, work_dir: Path, size: Size, seed: int = 5) -> Result:
    """A mail whose customer row is locked by a forgotten operator session.

    The cause, as it happens: someone ran `BEGIN; SELECT ... FROM customers
    ... FOR UPDATE` in psql (say, to correct a customer's name) and left the
    session open. The database has `lock_timeout = 500ms` (an operator's
    setting; Deskmail sets none itself). Every mail from that customer makes
    the ticketer wait for the row lock and fail with "canceling statement
    due to lock timeout": a transient error, so it is retried (3 attempts in
    process, 2 trips through the retry queue), then dead-lettered. The rest
    of its batch is recorded (the worker isolates the failing message). The
    fix: end the session; then `deskmail dead-letters replay --all`.
    """
    env = {"DESKMAIL_REDELIVERIES": "2"}
    mails = _mails(size.mails, seed)
    first, second = _poison_mail(1), _poison_mail(2)
    started = time.monotonic()
    name = settings.database_url.rsplit("/", 1)[1]  # type: ignore[union-attr]
    with psycopg.connect(settings.database_url, autocommit=True) as admin:
        admin.execute(f"ALTER DATABASE \"{name}\" SET lock_timeout = '500ms'")
    with Pipeline(settings, work_dir, env=env) as p:
        dv.append(p.user, [first])
        p.wait_settled(1, timeout=60)  # the customer exists, with one request
        blocker = psycopg.connect(settings.database_url)
        try:
            blocker.execute("SELECT * FROM customers WHERE lower(address) = %s FOR UPDATE", (POISON_SENDER,))
            t = time.monotonic()
            at = len(mails) // 2
            feeder = _feeder(p, [*mails[:at], second, *mails[at:]], over=8)
            feeder.join()
            dead_queue = f"{settings.queue_prefix}.ticket.dead"
            wait_until(lambda: queue_counts(settings.queue_prefix).get(dead_queue, (0, 0))[0] == 1, 90,
                       "the poison mail in the ticketer's dead-letter queue")
            p.wait_settled(len(mails) + 1, timeout=120)  # everything else went through
            before = p.check([first, *mails], expect_dead=_one_poison_letter(p), held=[second], final=False)
        finally:
            blocker.rollback()  # the operator ends the session: the cause is gone
            blocker.close()
        p.fault("poison", "ticketer", t)
        replay = subprocess.run([sys.executable, "-m", "services.cli", "dead-letters", "replay", "--all"],
                                env=p.env, capture_output=True, text=True, timeout=60, cwd=ROOT)
        notes = [f"before the replay: {len(before.dead)} dead letter(s); other problems: {before.problems}",
                 f"deskmail dead-letters replay --all: exit {replay.returncode}: "
                 f"{' / '.join(replay.stdout.strip().splitlines())[-300:]}"]
        p.wait_settled(len(mails) + 2, timeout=90)
        verdict = p.check([first, *mails, second])
        if replay.returncode != 0:
            verdict.problems.append(f"replay failed: {replay.stderr.strip()[-500:]}")
        verdict.problems.extend(f"before the replay: {x}" for x in before.problems)
        return p.result("poison", verdict, started, notes)


def _one_poison_letter(p: Pipeline) -> Callable[[list[DeadLetter]], list[str]]:
    def judge(dead: list[DeadLetter]) -> list[str]:
        if len(dead) != 1:
            return [f"expected exactly the poison mail in the dead-letter queues, found {len(dead)}: "
                    f"{[(d.stage, d.event) for d in dead]}"]
        [letter] = dead
        [row] = p.sql("SELECT c.address FROM raw_messages r JOIN parsed_messages pm ON pm.raw_id = r.id,"
                      " LATERAL (SELECT pm.parsed->'from'->>'address' AS address) c WHERE r.id = %s",
                      letter.event["ids"]["raw_id"])
        problems = []
        if letter.stage != "ticket" or row["address"] != POISON_SENDER:
            problems.append(f"the dead letter is not the poison mail: {letter.stage} {letter.event} {row}")
        if "lock timeout" not in str(letter.headers.get("x-deskmail-error")):
            problems.append(f"dead letter for another reason: {letter.headers.get('x-deskmail-error')}")
        if letter.headers.get("x-deskmail-redeliveries") != 2:
            problems.append(f"dead-lettered after {letter.headers.get('x-deskmail-redeliveries')} trips through"
                            " the retry queue, expected the bound of 2")
        return problems
    return judge


# -- 6. malformed mail through a Maildir -------------------------------------------------


def seed_mails() -> list[bytes]:
    """What the malformed mail is made from: the parser's test messages and a mailgen mix."""
    return [f.read_bytes() for f in sorted(PARSER_DATA.glob("*.eml"))] + list(mailgen.generate(40, seed=9))


def mutate(rng: random.Random, base: list[bytes]) -> bytes:
    """A broken mail: a seed mail mutated one to three ways, or random bytes."""
    if rng.random() < 0.12 or not base:
        return rng.randbytes(rng.randint(0, 4000))
    data = bytearray(rng.choice(base))
    for _ in range(rng.randint(1, 3)):
        how = rng.randrange(9)
        n = len(data)
        if how == 0 and n:  # truncated anywhere
            del data[rng.randrange(n):]
        elif how == 1 and n:  # bytes flipped
            for _ in range(rng.randint(1, 50)):
                data[rng.randrange(n)] = rng.randrange(256)
        elif how == 2:  # the header/body separator gone
            data = bytearray(bytes(data).replace(b"\n\n", b"\n", 1).replace(b"\r\n\r\n", b"\r\n", 1))
        elif how == 3 and n:  # NULs and control bytes sprinkled in
            for _ in range(rng.randint(1, 20)):
                data.insert(rng.randrange(n), rng.choice(b"\x00\x01\x1b\x7f\xff"))
        elif how == 4:  # a huge header line
            data[0:0] = b"X-Junk: " + b"A" * rng.randint(1000, 200_000) + b"\n"
        elif how == 5:  # boundaries broken
            data = bytearray(bytes(data).replace(b"boundary=", b"boundary=x", 1).replace(b"--", b"-", 3))
        elif how == 6:  # charset and encoding lies
            data = bytearray(bytes(data).replace(b"charset=", b"charset=x-unknown-", 1)
                             .replace(b"base64", b"quoted-printable", 1))
        elif how == 7 and n:  # a slice duplicated
            a = rng.randrange(n)
            data[a:a] = data[a : a + rng.randint(1, 5000)]
        elif how == 8:  # headers folded wrong / addresses mangled
            data = bytearray(bytes(data).replace(b"From:", b"From: <<@@>>", 1).replace(b"\n ", b"\n\n ", 2))
    return bytes(data)


def malformed(settings: Settings, work_dir: Path, size: Size, seed: int = 6) -> Result:
    """Broken mail through the whole pipeline, from a local Maildir (fast to fill, same fetcher code path
    as IMAP from the poll on; Dovecot would reject or rewrite some of these bytes)."""
    rng = random.Random(seed)
    base = seed_mails()
    broken = [mutate(rng, base) for _ in range(size.malformed)]
    maildir = work_dir / "Maildir"
    box = stdlib_mailbox.Maildir(maildir, create=True)
    keys = {box.add(m): m for m in broken}
    box.close()
    started = time.monotonic()
    with Pipeline(settings, work_dir, maildir=maildir) as p:
        # Waiting for all of them archived is the "no stall" check: a stuck stage times out here.
        timeout = 120 + size.malformed * 0.05
        p.wait_settled(len(broken), timeout, less_dead=True)
        verdict = _check_malformed(p, keys)
        verdict.problems.extend(f"stage exited by itself: {k} ({v})" for k, v in p.stages.crashed().items())
        reasons = Counter(f"{d.stage}: {str(d.headers.get('x-deskmail-error'))[:160]}" for d in verdict.dead)
        notes = [f"{len(base)} seed mails mutated, seed {seed}"]
        notes += [f"dead letter x{n}: {why}" for why, n in reasons.most_common(5)]
        return p.result("malformed", verdict, started, notes)


def _check_malformed(p: Pipeline, keys: dict[str, bytes]) -> Verdict:
    verdict = Verdict(mails=len(keys))
    problems = verdict.problems
    rows = p.sql(
        "SELECT rm.remote_id, rm.raw_id, rm.state, r.data IS NOT NULL AS kept,"
        " (SELECT count(*) FROM history h WHERE h.raw_id = rm.raw_id AND h.kind = 'incoming') AS entries,"
        " (SELECT count(*) FROM unmatched_mail u WHERE u.raw_id = rm.raw_id) AS unmatched,"
        " (SELECT q.unparsed FROM history h JOIN requests q ON q.id = h.request_id"
        "   WHERE h.raw_id = rm.raw_id) AS flagged,"
        " (SELECT count(*) FROM history h JOIN attachments a ON a.history_id = h.id"
        "   WHERE h.raw_id = rm.raw_id) AS attachments,"
        " (pm.parsed->>'unparsed') IS NOT NULL AS unparsed"
        " FROM remote_messages rm JOIN raw_messages r ON r.id = rm.raw_id"
        " LEFT JOIN parsed_messages pm ON pm.raw_id = rm.raw_id")
    by_key = {}
    for row in rows:
        if row["remote_id"] in by_key:
            verdict.duplicated.append(row["remote_id"])
        by_key[row["remote_id"]] = row
    verdict.dead = dead_letters(p.settings.queue_prefix)
    dead_raw = {d.event.get("ids", {}).get("raw_id") for d in verdict.dead}
    kinds = {"request": 0, "unparsed": 0, "unmatched": 0, "dead": 0}
    for key in keys:
        row = by_key.get(key)
        if row is None:
            verdict.lost.append(key)
            continue
        if row["entries"] == 1:
            kinds["request"] += 1
            if row["unparsed"]:
                kinds["unparsed"] += 1
                if not row["flagged"] or not row["attachments"]:
                    problems.append(f"unparsed mail {key}: request flagged {row['flagged']},"
                                    f" {row['attachments']} attachment(s) (the original must be attached)")
        elif row["unmatched"] == 1 and row["entries"] == 0:
            kinds["unmatched"] += 1
        elif row["raw_id"] in dead_raw and row["kept"]:
            kinds["dead"] += 1
        else:
            verdict.lost.append(key)
            problems.append(f"mail {key} (raw {row['raw_id']}): {row['entries']} history entries,"
                            f" unmatched {row['unmatched']}, not a dead letter")
        if row["state"] != "archived" and row["raw_id"] not in dead_raw:
            problems.append(f"mail {key} still {row['state']} in the Maildir")
    verdict.requests = kinds["request"]
    verdict.archived = sum(1 for r in rows if r["state"] == "archived")
    left = stdlib_mailbox.Maildir(p.maildir, create=False)  # type: ignore[arg-type]
    verdict.inbox_left = len(left)
    if verdict.inbox_left != kinds["dead"]:
        problems.append(f"{verdict.inbox_left} mail(s) left in the Maildir, {kinds['dead']} dead letter(s)")
    if verdict.lost:
        problems.append(f"{len(verdict.lost)} malformed mail(s) lost, e.g. {verdict.lost[0]}")
    if verdict.duplicated:
        problems.append(f"{len(verdict.duplicated)} malformed mail(s) imported twice")
    sent = p.sql("SELECT message_id FROM outgoing_mail WHERE state IN ('sent', 'unknown')")
    got: dict[str, int] = {}
    for m in p.sink.messages:
        mid = (m.message["Message-ID"] or "").strip().strip("<>")
        got[mid] = got.get(mid, 0) + 1
    verdict.auto_replies_due = len(sent)
    verdict.auto_replies_received = sum(got.values())
    verdict.duplicate_auto_replies = [k for k, v in got.items() if v > 1]
    if verdict.duplicate_auto_replies:
        problems.append(f"{len(verdict.duplicate_auto_replies)} auto-reply(ies) received twice")
    missing = [r["message_id"] for r in sent if r["message_id"].strip("<>") not in got]
    unknown = {r["message_id"] for r in p.sql("SELECT message_id FROM outgoing_mail WHERE state = 'unknown'")}
    if [m for m in missing if m not in unknown]:
        problems.append(f"{len(missing)} auto-reply(ies) recorded sent but never received")
    for name, (ready, unacked) in queue_counts(p.settings.queue_prefix).items():
        if not name.endswith(".dead") and (ready or unacked):
            problems.append(f"queue {name}: {ready} ready, {unacked} unacknowledged")
    verdict.details = kinds
    return verdict


SCENARIOS: dict[str, Callable[[Settings, Path, Size], Result]] = {
    "sigkill": sigkill, "rabbitmq": rabbitmq, "postgresql": postgresql, "network": network,
    "poison": poison, "malformed": malformed,
}


def describe(result: Result) -> str:
    lines = [f"{result.scenario}: {result.seconds:.1f} s; {result.verdict.summary()}"]
    for fault in result.faults:
        rec = "n/a (no work pending)" if fault.recovery is None else f"{fault.recovery:.2f} s"
        held = "" if fault.in_flight is None else f", {fault.in_flight} message(s) in flight when it began"
        lines.append(f"  fault {fault.kind:<22} {fault.target:<14} lasted {fault.cleared - fault.started:5.2f} s,"
                     f" progress again after {rec}{held}")
    lines += [f"  note: {n}" for n in result.notes]
    lines += [f"  PROBLEM: {x}" for x in result.problems]
    return "\n".join(lines)
