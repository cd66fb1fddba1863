"""The parser stage's spam step: each mail's verdict, stored beside its parsed form.

With DESKMAIL_RSPAMD_URL set, every mail of a batch is sent to rspamd's
/checkv2 as soon as it is parsed, from a few threads at once, so the
network waits overlap with the parsing of the next mails; the batch then
waits for the answers until one deadline (DESKMAIL_RSPAMD_TIMEOUT_MS after
the first was sent). A mail whose answer is not there by then, or whose
check failed, goes on marked "unchecked" with the reason: rspamd down or
slow never holds mail up. After a batch in which rspamd failed, it is not
asked again for BREAK_SECONDS (its mail goes on unchecked at once) rather
than costing every batch the whole timeout.

Without rspamd (or when it fails), a verdict an upstream mail server wrote
into the headers counts (shared/spam/upstream.py). Mail from an allowed
sender (shared/filters/senders.py) is not sent to rspamd at all.
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_for
from dataclasses import dataclass, field, replace
from typing import Any

import psycopg
from prometheus_client import Counter, Histogram

from shared.filters.senders import SenderLists
from shared.parsed import ParsedMessage
from shared.settings import Settings
from shared.spam.rspamd import Rspamd
from shared.spam.upstream import upstream_verdict
from shared.spam.verdict import INSERT_SQL, Verdict

log = logging.getLogger(__name__)

LANES = 8  # checks in flight at once per parser process
BREAK_SECONDS = 30.0  # after a failed batch, rspamd is left alone this long
LISTS_TTL = 30.0  # seconds the sender lists are cached

CHECKS = Counter(
    "deskmail_spam_checks",
    "Mails by spam verdict source: rspamd, upstream header, unchecked (rspamd failed), none, allowed",
    ["result"],
)
CHECK_SECONDS = Histogram(
    "deskmail_spam_check_seconds", "Time of one rspamd /checkv2 call",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5),
)


@dataclass
class _Pending:
    upstream: Verdict | None
    future: Future[Verdict] | None = None
    problem: str | None = None


@dataclass
class Batch:
    """The verdicts of one chunk of mail, collected by `rows()`."""

    step: SpamStep
    lists: SenderLists
    mailboxes: dict[int, tuple[int, str]]  # raw_id -> (mailbox_id, mailbox address)
    pending: dict[int, _Pending] = field(default_factory=dict)
    started: float | None = None

    def add(self, raw_id: int, data: bytes, parsed: ParsedMessage) -> None:
        step = self.step
        upstream = upstream_verdict(data)
        mailbox_id, rcpt = self.mailboxes.get(raw_id, (None, None))
        sender = parsed.from_.address if parsed.from_ else None
        entry = self.lists.decide(sender, mailbox_id)
        if entry is not None and entry.list == "allow":
            CHECKS.labels("allowed").inc()
            return
        pending = _Pending(upstream)
        if step.rspamd is not None and step.pool is not None:
            if step.broken_until > time.monotonic():
                pending.problem = step.broken_reason
            else:
                if self.started is None:
                    self.started = time.monotonic()
                pending.future = step.pool.submit(step.check, raw_id, data, rcpt)
        self.pending[raw_id] = pending

    def rows(self) -> list[tuple[Any, ...]]:
        """Wait (until the deadline at most) and return the spam_verdicts rows."""
        step = self.step
        futures = [p.future for p in self.pending.values() if p.future is not None]
        if futures and self.started is not None:
            left = self.started + step.timeout - time.monotonic()
            wait_for(futures, timeout=max(0.0, left))
        failures: list[str] = []
        rows = []
        for raw_id, p in self.pending.items():
            verdict: Verdict | None = None
            problem = p.problem
            if p.future is not None:
                if p.future.done() and p.future.exception() is None:
                    verdict = p.future.result()
                else:
                    if not p.future.done():
                        p.future.cancel()
                        problem = f"rspamd did not answer within {step.timeout:g} s"
                    else:
                        problem = str(p.future.exception())
                    failures.append(problem)
            if verdict is not None:
                if p.upstream is not None and p.upstream.spam and not verdict.spam:
                    verdict = replace(verdict, spam=True)  # an upstream "yes" is believed (upstream.py)
                CHECKS.labels("rspamd").inc()
            elif step.rspamd is not None:
                verdict = replace(p.upstream or Verdict("unchecked"), state="unchecked", problem=problem)
                CHECKS.labels("unchecked").inc()
            elif p.upstream is not None:
                verdict = p.upstream
                CHECKS.labels("upstream").inc()
            else:
                CHECKS.labels("none").inc()
                continue
            rows.append(verdict.row(raw_id))
        if failures:
            step.broke(failures[0], len(failures), len(self.pending))
        elif futures:
            step.broken_until = 0.0
        return rows


class SpamStep:
    """Per parser process: the rspamd client, its threads, and the cached sender lists."""

    def __init__(self, settings: Settings) -> None:
        self.rspamd = (Rspamd(settings.rspamd_url, timeout=settings.rspamd_timeout)
                       if settings.rspamd_url else None)
        self.timeout = settings.rspamd_timeout
        self.pool = ThreadPoolExecutor(LANES, "rspamd") if self.rspamd else None
        self.broken_until = 0.0
        self.broken_reason: str | None = None
        self._lists = SenderLists()
        self._lists_at = -LISTS_TTL

    def batch(self, conn: psycopg.Connection, raw_ids: list[int]) -> Batch:
        """A chunk's verdicts to collect; reads each mail's mailbox and, now and then, the lists."""
        if self.rspamd is None:  # the lists only spare rspamd's work; upstream headers need nothing
            return Batch(self, SenderLists(), {})
        if time.monotonic() - self._lists_at > LISTS_TTL:
            self._lists = SenderLists.load(conn)
            self._lists_at = time.monotonic()
        mailboxes = {r["id"]: (r["mailbox_id"], r["address"]) for r in conn.execute(
            "SELECT r.id, r.mailbox_id, m.address FROM raw_messages r"
            " JOIN mailboxes m ON m.id = r.mailbox_id WHERE r.id = ANY(%s)", (raw_ids,))}
        return Batch(self, self._lists, mailboxes)

    def check(self, raw_id: int, data: bytes, rcpt: str | None) -> Verdict:
        assert self.rspamd is not None
        started = time.monotonic()
        try:
            return self.rspamd.check(data, rcpt=rcpt, queue_id=f"deskmail-{raw_id}")
        finally:
            CHECK_SECONDS.observe(time.monotonic() - started)

    def broke(self, problem: str, failed: int, of: int) -> None:
        self.broken_until = time.monotonic() + BREAK_SECONDS
        self.broken_reason = f"rspamd failed moments ago ({problem}); not asked for {BREAK_SECONDS:g} s"
        log.warning("rspamd gave no verdict; mail goes on unchecked",
                    extra={"problem": problem, "failed": failed, "of": of,
                           "pause_seconds": BREAK_SECONDS})

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=False, cancel_futures=True)


def store(conn: psycopg.Connection, rows: list[tuple[Any, ...]]) -> None:
    if rows:
        with conn.cursor() as cur:
            cur.executemany(INSERT_SQL, sorted(rows, key=lambda r: r[0]))
