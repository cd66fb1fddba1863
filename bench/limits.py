"""The raw limits of this machine, measured with plain clients, for bench/e2e.py to compare against.

Each probe does the bare job one stage's work rests on, the fastest simple
way, with no Deskmail code involved:

    imap_fetch      imaplib, UID FETCH BODY.PEEK[] of 500 messages per command
    mime_parse      the stdlib email package: parse, read the body and attachments (one core)
    broker_publish  py-amqp, persistent event-sized messages to a quorum queue,
                    100 per batch, the batch's publisher confirms awaited together
    db_copy_raw     COPY of the raw mail bytes (lz4, as raw_messages), 100 per transaction
    db_insert_rows  executemany of ~300-byte rows, 100 per transaction
    smtp_send       smtplib over one kept session, auto-reply-sized messages

Every probe returns a `Limit` in messages per second.
"""

from __future__ import annotations

import email
import imaplib
import re
import smtplib
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from email import policy

import amqp
import psycopg


@dataclass(frozen=True)
class Limit:
    name: str
    what: str
    count: int
    seconds: float

    @property
    def rate(self) -> float:
        return self.count / self.seconds if self.seconds > 0 else 0.0


def imap_fetch(host: str, port: int, user: str, password: str, limit: int, chunk: int = 500) -> Limit:
    """Fetch the first `limit` messages of the user's INBOX in chunks, as raw bytes."""
    client = imaplib.IMAP4(host, port)
    client.login(user, password)
    client.select("INBOX", readonly=True)
    _, data = client.uid("SEARCH", "ALL")
    uids = data[0].split()[:limit]
    started = time.perf_counter()
    fetched = 0
    size = 0
    for start in range(0, len(uids), chunk):
        part = uids[start : start + chunk]
        _, items = client.uid("FETCH", f"{part[0].decode()}:{part[-1].decode()}", "(BODY.PEEK[])")
        for item in items:
            if isinstance(item, tuple):
                fetched += 1
                size += len(item[1])
    seconds = time.perf_counter() - started
    client.logout()
    return Limit("imap_fetch", f"imaplib UID FETCH, {chunk} per command ({size / seconds / 1e6:.0f} MB/s)",
                 fetched, seconds)


def _stdlib_read(raw: bytes) -> None:
    message = email.message_from_bytes(raw, policy=policy.default)
    body = message.get_body(("plain", "html"))
    if body is not None:
        body.get_content()
    for attachment in message.iter_attachments():
        attachment.get_content()


def mime_parse(mails: Sequence[bytes]) -> Limit:
    started = time.process_time()
    for raw in mails:
        _stdlib_read(raw)
    return Limit("mime_parse", "stdlib email, policy.default, body and attachments read (one core)",
                 len(mails), time.process_time() - started)


def broker_publish(amqp_url: str, count: int, batch: int = 100) -> Limit:
    """Persistent ~150-byte messages to a fresh quorum queue, confirms awaited per batch."""
    match = re.match(r"amqp://([^:]*):([^@]*)@([^:/]+)(?::(\d+))?", amqp_url)
    if match is None:
        raise SystemExit(f"cannot read the AMQP URL {amqp_url!r}")
    user, password, host, port = match.group(1), match.group(2), match.group(3), match.group(4) or "5672"
    queue = f"bench.limits.{uuid.uuid4().hex[:8]}"
    body = b'{"type":"mail.received","v":1,"id":"00000000-0000-0000-0000-000000000000",' \
           b'"ids":{"raw_id":123456,"mailbox_id":1}}'
    conn = amqp.Connection(f"{host}:{port}", userid=user, password=password)
    conn.connect()
    try:
        channel = conn.channel()
        channel.queue_declare(queue, durable=True, auto_delete=False, arguments={"x-queue-type": "quorum"})
        channel.confirm_select()
        acked = [0]

        def on_ack(tag: int, multiple: bool) -> None:
            acked[0] = max(acked[0], tag) if multiple else acked[0] + 1

        channel.events["basic_ack"].add(on_ack)
        started = time.perf_counter()
        sent = 0
        while sent < count:
            for _ in range(min(batch, count - sent)):
                channel.basic_publish(amqp.Message(body, delivery_mode=2, content_type="application/json"),
                                      exchange="", routing_key=queue)
                sent += 1
            while acked[0] < sent:
                conn.drain_events(timeout=30)
        seconds = time.perf_counter() - started
        channel.queue_delete(queue)
    finally:
        conn.close()
    return Limit("broker_publish", f"py-amqp, persistent, quorum queue, confirms per {batch}", count, seconds)


def db_copy_raw(database_url: str, mails: Sequence[bytes], batch: int = 100) -> Limit:
    with psycopg.connect(database_url) as conn:
        table = f"bench_raw_{uuid.uuid4().hex[:8]}"
        conn.execute(f"CREATE TABLE {table} (id bigserial PRIMARY KEY, data bytea NOT NULL)")
        try:
            conn.execute(f"ALTER TABLE {table} ALTER COLUMN data SET COMPRESSION lz4")
        except psycopg.Error:
            conn.rollback()
            conn.execute(f"CREATE TABLE IF NOT EXISTS {table} (id bigserial PRIMARY KEY, data bytea NOT NULL)")
        conn.commit()
        started = time.perf_counter()
        for start in range(0, len(mails), batch):
            with conn.cursor() as cur, cur.copy(f"COPY {table} (data) FROM STDIN") as copy:
                for raw in mails[start : start + batch]:
                    copy.write_row((raw,))
            conn.commit()
        seconds = time.perf_counter() - started
        size = sum(map(len, mails))
        conn.execute(f"DROP TABLE {table}")
        conn.commit()
    return Limit("db_copy_raw", f"COPY of the raw mail, lz4, {batch} per transaction"
                 f" ({size / seconds / 1e6:.0f} MB/s)", len(mails), seconds)


def db_insert_rows(database_url: str, count: int, batch: int = 100) -> Limit:
    with psycopg.connect(database_url) as conn:
        table = f"bench_rows_{uuid.uuid4().hex[:8]}"
        conn.execute(f"CREATE TABLE {table} (id bigserial PRIMARY KEY, ref bigint NOT NULL, address text,"
                     " subject text, body text, created_at timestamptz NOT NULL DEFAULT now())")
        conn.commit()
        row = ("someone@example.com", "Printer prints blank pages " * 2, "Hello, the printer... " * 10)
        started = time.perf_counter()
        for start in range(0, count, batch):
            with conn.cursor() as cur:
                cur.executemany(f"INSERT INTO {table} (ref, address, subject, body) VALUES (%s, %s, %s, %s)",
                                [(i, *row) for i in range(start, min(count, start + batch))])
            conn.commit()
        seconds = time.perf_counter() - started
        conn.execute(f"DROP TABLE {table}")
        conn.commit()
    return Limit("db_insert_rows", f"executemany INSERT of ~300-byte rows, {batch} per transaction",
                 count, seconds)


def smtp_send(host: str, port: int, count: int) -> Limit:
    body = ("Hello,\r\n\r\nthank you for your mail. We have opened request [#123] and will answer soon.\r\n"
            * 20)
    data = (f"From: Support <support@example.test>\r\nTo: customer@example.com\r\nSubject: [#123] Re: x\r\n"
            f"Auto-Submitted: auto-replied\r\nMessage-ID: <probe@example.test>\r\n\r\n{body}").encode()
    client = smtplib.SMTP(host, port, local_hostname="bench.local")
    started = time.perf_counter()
    for _ in range(count):
        client.sendmail("support@example.test", ["customer@example.com"], data)
    seconds = time.perf_counter() - started
    client.quit()
    return Limit("smtp_send", f"smtplib, one kept session, {len(data) / 1024:.1f} KB messages", count, seconds)
