"""Writing a batch of parsed mail into requests: customers, requests, history, attachments.

Everything runs in the caller's one transaction, together with marking the
remote messages committed, so the fetcher archives a mail only once its
request is durable. The work is split in two so that a batch costs a fixed
handful of round trips instead of several per mail:

  plan   decide every mail in memory (conversation.Threads), new requests
         getting placeholder ids, so later mails of the batch see earlier ones;
  write  allocate the real ids in one query, then insert everything with
         executemany (psycopg pipelines those) and a few set-based statements.

Rows that other transactions may lock too are written in a fixed order
(customers by address, requests by id, people by (request, address)), so
concurrent ticketers wait for each other instead of deadlocking; the
conversation locks taken first (`lock_conversations`) serialise the mails of
one conversation across ticketers.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import psycopg

from services.ticketer.conversation import Match, Threads, conversation_keys, people_of, thread_ids
from services.ticketer.filtering import Filters, Held, NewRequest
from shared.parsed import ParsedMessage


@dataclass(frozen=True)
class Mail:
    raw_id: int
    mailbox_id: int
    category_id: int | None
    parsed: ParsedMessage


@dataclass(frozen=True)
class Outcome:
    """What one mail did. request_id None: automatic mail that matched no request (unmatched_mail)."""

    raw_id: int
    request_id: int | None
    history_id: int | None
    created: bool
    automatic: str | None
    rule: str | None = None  # which threading rule matched, None for a new request
    held: str | None = None  # blocked | discarded: no request, the mail waits in held_mail


@dataclass
class _Planned:
    mail: Mail
    request_id: int  # negative: a placeholder for a new request of this batch
    new: bool
    match: Match | None
    people: set[str] = field(default_factory=set)
    made: NewRequest | None = None  # what the filters decided for a new request


def lock_conversations(conn: psycopg.Connection, mails: list[tuple[int, ParsedMessage]]) -> None:
    """Serialise the mails of one conversation across ticketers (reply-before-parent race).

    One statement; the locks are taken in the order of their hash values, the
    same in every transaction, so two batches never deadlock on them.
    """
    keys = sorted({k for raw_id, parsed in mails for k in conversation_keys(parsed, raw_id)})
    conn.execute(
        "SELECT count(pg_advisory_xact_lock(h)) FROM"
        " (SELECT DISTINCT hashtextextended(k, 0) AS h FROM unnest(%s::text[]) k ORDER BY h) s",
        (keys,),
    )


def existing_outcomes(conn: psycopg.Connection, raw_ids: list[int]) -> dict[int, Outcome]:
    """Outcomes already recorded for these raw messages (a redelivery): published again as they were."""
    found: dict[int, Outcome] = {}
    for row in conn.execute(
        "SELECT raw_id, id, request_id, outcome, automatic, NULL AS held FROM history WHERE raw_id = ANY(%(r)s)"
        " UNION ALL SELECT raw_id, NULL, NULL, NULL, kind, NULL FROM unmatched_mail WHERE raw_id = ANY(%(r)s)"
        " UNION ALL SELECT raw_id, NULL, NULL, NULL, NULL, kind FROM held_mail"
        " WHERE raw_id = ANY(%(r)s) AND released_at IS NULL",
        {"r": raw_ids},
    ):
        found[row["raw_id"]] = Outcome(row["raw_id"], row["request_id"], row["id"],
                                       row["outcome"] == "created", row["automatic"], held=row["held"])
    return found


def _is_bounce(parsed: ParsedMessage) -> bool:
    return parsed.unparsed is None and (parsed.bounce is not None or parsed.automatic == "bounce")


def record_batch(conn: psycopg.Connection, mails: list[Mail], *, msgid_key: bytes,
                 tag_re: re.Pattern[str], own: frozenset[str], filters: Filters | None = None
                 ) -> list[Outcome]:
    """Record mails that have no outcome yet, in order; return one outcome per mail.

    `filters` (filtering.py): sender lists, spam, DMARC and mail rules; None records every mail.
    """
    if not mails:
        return []
    threads = Threads.load(conn, (m.parsed for m in mails if m.parsed.unparsed is None), msgid_key, tag_re)
    planned: list[_Planned] = []
    unmatched: list[tuple[Mail, str]] = []
    held: list[tuple[Mail, Held]] = []
    next_placeholder = -1
    for mail in mails:
        parsed = mail.parsed
        hold = filters.held_by_lists(mail.raw_id, mail.mailbox_id, parsed) if filters else None
        if hold is not None:
            held.append((mail, hold))
            continue
        people = people_of(parsed, own) if parsed.unparsed is None else set()
        made: NewRequest | Held | None = None
        if parsed.unparsed is not None:
            match = None  # nothing in it can be trusted to thread by
        elif _is_bounce(parsed):
            match = threads.decide_bounce(parsed)
            if match is None:
                unmatched.append((mail, _unmatched_reason(parsed)))
                continue
            people = set()  # a mailer-daemon is nobody's conversation partner
        else:
            match = threads.decide(parsed, allow_tag=not (filters and filters.dmarc_failed(mail.raw_id)))
            if match is None and filters is not None:  # unparsed mail skips them: it must reach a person
                made = filters.new_request(mail.raw_id, mail.mailbox_id, mail.category_id, parsed)
                if isinstance(made, Held):
                    held.append((mail, made))
                    continue
        if match is None:
            request_id, next_placeholder = next_placeholder, next_placeholder - 1
            # The customer is on the conversation even when Reply-To/From is odd.
            if parsed.from_ and parsed.from_.address:
                people.add(parsed.from_.address.lower())
        else:
            request_id = match.request_id
        planned.append(_Planned(mail, request_id, match is None, match, people, made))
        if parsed.unparsed is None:
            threads.remember(parsed, request_id, new=match is None, people=people)
    outcomes = _write(conn, planned)
    outcomes += _write_unmatched(conn, unmatched)
    outcomes += _write_held(conn, held)
    if filters is not None and filters.released:
        conn.execute(
            "UPDATE held_mail m SET request_id = h.request_id FROM history h"
            " WHERE h.raw_id = m.raw_id AND m.raw_id = ANY(%s) AND m.request_id IS NULL",
            (sorted(filters.released),))
    return outcomes


def _unmatched_reason(parsed: ParsedMessage) -> str:
    original = parsed.bounce.original_message_id if parsed.bounce else None
    if original:
        return f"the bounced mail <{original}> is not one Deskmail sent or received"
    return "the delivery report does not say which mail bounced, and nothing else links it to a request"


def _allocate(conn: psycopg.Connection, requests: int, history: int) -> tuple[list[int], list[int]]:
    row = conn.execute(
        "SELECT ARRAY(SELECT nextval(pg_get_serial_sequence('requests', 'id')) FROM generate_series(1, %s)) AS r,"
        " ARRAY(SELECT nextval(pg_get_serial_sequence('history', 'id')) FROM generate_series(1, %s)) AS h",
        (requests, history),
    ).fetchone()
    assert row is not None
    return list(row["r"]), list(row["h"])


def _write(conn: psycopg.Connection, planned: list[_Planned]) -> list[Outcome]:
    if not planned:
        return []
    new_count = sum(1 for p in planned if p.new)
    request_ids, history_ids = _allocate(conn, new_count, len(planned))
    real = {-(i + 1): rid for i, rid in enumerate(request_ids)}  # placeholder -> id
    for p in planned:
        if p.request_id < 0:
            p.request_id = real[p.request_id]
    customers = _upsert_customers(conn, planned)

    with conn.cursor() as cur:
        # Rows with ids of their own (new requests, history, attachments) cannot
        # collide with another transaction's: COPY, the cheapest way in.
        new_rows = []
        notes = []
        for p in planned:
            if not p.new:
                continue
            made = p.made or NewRequest(p.mail.category_id)
            new_rows.append(
                (p.request_id, p.mail.mailbox_id, made.category_id,
                 customers.get(p.mail.parsed.from_.address.lower()) if _person(p) else None,
                 _subject(p.mail.parsed)[:1000], p.mail.parsed.unparsed is not None,
                 made.status, made.spam_reason is not None, made.spam_reason, made.no_auto_reply))
            notes += [(p.request_id, "note", "filters", line, "Deskmail") for line in made.notes]
        if new_rows:
            _copy(cur, "requests (id, mailbox_id, category_id, customer_id, subject, unparsed, status,"
                       " spam, spam_reason, no_auto_reply)", new_rows)
        # A person's mail reopens a closed request; automatic mail (out-of-office,
        # bounces) is only recorded. Rows are locked in id order first (no deadlocks).
        touched: dict[int, bool] = {}
        for p in planned:
            if not p.new:
                touched[p.request_id] = touched.get(p.request_id, False) or p.mail.parsed.automatic is None
        if touched:
            ids = sorted(touched)
            cur.execute("SELECT id FROM requests WHERE id = ANY(%s) ORDER BY id FOR NO KEY UPDATE", (ids,))
            cur.execute(
                "UPDATE requests r SET updated_at = now(),"
                " status = CASE WHEN v.reopen THEN 'open' ELSE r.status END"
                " FROM unnest(%s::bigint[], %s::bool[]) AS v(id, reopen) WHERE r.id = v.id",
                (ids, [touched[i] for i in ids]),
            )
        history_rows = []
        attachment_rows = []
        originals: list[tuple[int, int]] = []
        for p, history_id in zip(planned, history_ids, strict=True):
            parsed = p.mail.parsed
            sender_address = parsed.from_.address if parsed.from_ else None
            sender_name = parsed.from_.name if parsed.from_ else None
            body = parsed.body_text
            if parsed.unparsed:
                body = (f"[Deskmail could not parse this mail ({parsed.unparsed})."
                        f" The original message is attached.]\n\n{body}")
            history_rows.append(
                (history_id, p.request_id, "incoming", p.mail.raw_id, "created" if p.new else "updated",
                 parsed.message_id, sender_address, sender_name, parsed.subject, body,
                 parsed.body_html, parsed.automatic, thread_ids(parsed))
            )
            attachment_rows += [
                (history_id, a.sha256, a.filename, a.content_type, a.size, a.content_id, a.inline)
                for a in parsed.attachments
            ]
            if parsed.unparsed is not None:
                originals.append((history_id, p.mail.raw_id))
        # A redelivery racing this batch would have waited on the raw:<id> lock and
        # found these rows; if history.raw_id is still violated, the unique error
        # is transient and the retry finds the stored outcome.
        _copy(cur, "history (id, request_id, kind, raw_id, outcome, message_id, from_address,"
                   " from_name, subject, body_text, body_html, automatic, thread_ids)", history_rows)
        if attachment_rows:
            _copy(cur, "attachments (history_id, sha256, filename, content_type, size, content_id, inline)",
                  attachment_rows)
        if notes:  # after the mails' own entries: what the filters decided, in order
            _copy(cur, "history (request_id, kind, subject, body_text, author)", notes)
        if originals:
            _attach_originals(cur, originals)
        _add_people(cur, planned)
        _mark_bounced(cur, [p for p in planned if _is_bounce(p.mail.parsed)])
    return [
        Outcome(p.mail.raw_id, p.request_id, history_id, p.new, p.mail.parsed.automatic,
                p.match.rule if p.match else None)
        for p, history_id in zip(planned, history_ids, strict=True)
    ]


def _copy(cur: psycopg.Cursor, target: str, rows: list[tuple]) -> None:
    with cur.copy(f"COPY {target} FROM STDIN") as copy:
        for row in rows:
            copy.write_row(row)


def _add_people(cur: psycopg.Cursor, planned: list[_Planned]) -> None:
    """Everyone on each conversation; new requests' people by COPY, the rest sorted, ON CONFLICT."""
    fresh = sorted({(p.request_id, a) for p in planned if p.new for a in p.people})
    new_ids = {p.request_id for p in planned if p.new}
    known = sorted({(p.request_id, a) for p in planned if p.request_id not in new_ids for a in p.people})
    if fresh:
        _copy(cur, "request_people (request_id, address)", fresh)
    if known:
        cur.execute(
            "INSERT INTO request_people (request_id, address)"
            " SELECT * FROM unnest(%s::bigint[], %s::text[]) ON CONFLICT DO NOTHING",
            ([r for r, _ in known], [a for _, a in known]),
        )


def _person(p: _Planned) -> bool:
    """Whether the sender of this mail is someone to keep as a customer."""
    parsed = p.mail.parsed
    return bool(parsed.from_ and parsed.from_.address) and parsed.automatic not in ("bounce", "own")


def _subject(parsed: ParsedMessage) -> str:
    if parsed.subject:
        return parsed.subject
    return "(unreadable mail)" if parsed.unparsed else "(no subject)"


def _upsert_customers(conn: psycopg.Connection, planned: list[_Planned]) -> dict[str, int]:
    """Find or create every sender of the batch by address, keeping the newest non-empty name.

    Rows are written in address order (no deadlock with another ticketer), and
    a name is only written when it changes: most mail comes from known people.
    """
    latest: dict[str, str] = {}
    spelled: dict[str, str] = {}
    for p in planned:
        if _person(p):
            sender = p.mail.parsed.from_
            assert sender is not None
            key = sender.address.lower()
            spelled.setdefault(key, sender.address)
            if sender.name or key not in latest:
                latest[key] = sender.name
    if not latest:
        return {}
    keys = sorted(latest)
    ids: dict[str, int] = {}
    for row in conn.execute(
        "INSERT INTO customers (address, name) SELECT * FROM unnest(%s::text[], %s::text[])"
        " ON CONFLICT (lower(address)) DO UPDATE SET name = EXCLUDED.name"
        " WHERE EXCLUDED.name <> '' AND customers.name IS DISTINCT FROM EXCLUDED.name"
        " RETURNING id, lower(address) AS a",
        ([spelled[k] for k in keys], [latest[k] for k in keys]),
    ):
        ids[row["a"]] = row["id"]
    rest = [k for k in keys if k not in ids]
    if rest:
        for row in conn.execute(
            "SELECT id, lower(address) AS a FROM customers WHERE lower(address) = ANY(%s)", (rest,)
        ):
            ids[row["a"]] = row["id"]
    return ids


def _attach_originals(cur: psycopg.Cursor, originals: list[tuple[int, int]]) -> None:
    """Invariant 6: an unparsed mail reaches a person with its original bytes attached.

    The bytes go from raw_messages to blobs inside the server, never through Python.
    """
    raw_ids = [r for _, r in originals]
    cur.execute(
        "INSERT INTO blobs (sha256, size, data)"
        " SELECT DISTINCT ON (1) encode(sha256(data), 'hex'), length(data), data"
        " FROM raw_messages WHERE id = ANY(%s) ORDER BY 1 ON CONFLICT DO NOTHING",
        (raw_ids,),
    )
    cur.execute(
        "INSERT INTO attachments (history_id, sha256, filename, content_type, size, inline)"
        " SELECT v.h, encode(sha256(r.data), 'hex'), 'original.eml', 'message/rfc822', length(r.data), false"
        " FROM unnest(%s::bigint[], %s::bigint[]) AS v(h, raw) JOIN raw_messages r ON r.id = v.raw",
        ([h for h, _ in originals], raw_ids),
    )


def _mark_bounced(cur: psycopg.Cursor, bounces: list[_Planned]) -> None:
    """Set the delivery state of the outgoing mail a report is about.

    Status 2.x.x is a success report and 4.x.x a delay (the mail may still
    arrive): those only note the report. Anything else, or no status at all
    (old mailers write prose), is a failure.
    """
    rows = []
    for p in bounces:
        bounce = p.mail.parsed.bounce
        if bounce is None or not bounce.original_message_id:
            continue
        status = (bounce.status or "").strip()
        detail = " ".join(x for x in (status, bounce.recipient or "") if x)
        if status.startswith("2"):
            state, reason = None, f"delivery report: delivered {detail}".strip()
        elif status.startswith("4"):
            state, reason = None, f"delivery report: delayed {detail}".strip()
        else:
            state, reason = "failed", f"bounced: {detail}".strip() if detail else "bounced"
        rows.append((state, reason, bounce.original_message_id, p.request_id))
    if rows:
        cur.executemany(
            "UPDATE outgoing_mail SET state = coalesce(%s, state), reason = %s"
            " WHERE message_id = %s AND request_id = %s",
            rows,
        )


def _write_unmatched(conn: psycopg.Connection, unmatched: list[tuple[Mail, str]]) -> list[Outcome]:
    if not unmatched:
        return []
    rows = []
    for mail, reason in sorted(unmatched, key=lambda u: u[0].raw_id):
        parsed = mail.parsed
        bounce = parsed.bounce
        rows.append((mail.raw_id, mail.mailbox_id, parsed.automatic or "bounce", reason,
                     parsed.from_.address if parsed.from_ else None, parsed.subject,
                     bounce.original_message_id if bounce else None,
                     bounce.recipient if bounce else None, bounce.status if bounce else None))
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO unmatched_mail (raw_id, mailbox_id, kind, reason, from_address, subject,"
            " original_message_id, recipient, status) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)"
            " ON CONFLICT (raw_id) DO NOTHING",
            rows,
        )
    return [Outcome(m.raw_id, None, None, False, m.parsed.automatic or "bounce") for m, _ in unmatched]


def _write_held(conn: psycopg.Connection, held: list[tuple[Mail, Held]]) -> list[Outcome]:
    """Mail that makes no request: kept in held_mail with its reason (raw_id: one row per mail)."""
    if not held:
        return []
    rows = [(mail.raw_id, mail.mailbox_id, h.kind, h.reason,
             mail.parsed.from_.address if mail.parsed.from_ else None, mail.parsed.subject[:1000])
            for mail, h in sorted(held, key=lambda x: x[0].raw_id)]
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO held_mail (raw_id, mailbox_id, kind, reason, from_address, subject)"
            " VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (raw_id) DO NOTHING", rows)
    return [Outcome(m.raw_id, None, None, False, m.parsed.automatic, held=h.kind) for m, h in held]
