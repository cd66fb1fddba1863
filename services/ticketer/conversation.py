"""Which request a mail belongs to: the threading rules, in order, for a whole batch.

1. An id in In-Reply-To or References (In-Reply-To first, then References
   newest first: the likeliest parent first) that belongs to a request's
   mail: one of Deskmail's own signed Message-IDs (tamper-evident,
   shared/msgid.py), or any incoming or outgoing mail in a request's
   history. Failing that, a mail that already replied to this one (the
   reply was processed first): its request.
2. The request tag in the subject, but only from the request's customer or
   someone already on its conversation: guessing a number must not let a
   stranger write into another customer's request (their mail becomes a new
   request that mentions the tag).
3. Otherwise: a new request.

`Threads.load` reads what the database knows for every mail of a batch in a
few queries; `decide` then applies the rules mail by mail and `remember`
adds each decision, so a later mail of the same batch sees the earlier ones
exactly as if they had been committed one by one. The caller holds the
conversation locks (record.lock_conversations) before loading, so what is
loaded cannot change under it for the conversations that matter.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

import psycopg

from shared.msgid import request_id_from_message_id
from shared.parsed import Address, ParsedMessage


@dataclass(frozen=True)
class Match:
    request_id: int
    rule: str  # "signed-message-id", "message-id", "reply-first", "subject-tag", "bounced-mail"


def thread_ids(parsed: ParsedMessage) -> list[str]:
    """In-Reply-To first, then References newest first: the likeliest parent first."""
    seen: dict[str, None] = {}
    for mid in [*parsed.in_reply_to, *reversed(parsed.references)]:
        if mid:
            seen.setdefault(mid, None)
    return list(seen)


def conversation_keys(parsed: ParsedMessage, raw_id: int) -> list[str]:
    """The advisory-lock keys of one mail: itself, its own id and every id it threads to.

    Two mails of one conversation share at least one key (the parent's id is
    the parent's own key and in the reply's thread ids), so they are never
    decided at the same time by two ticketers: the second one sees the
    first one's committed rows.
    """
    keys = [f"raw:{raw_id}"]
    keys += [f"mid:{m}" for m in thread_ids(parsed)]
    if parsed.message_id:
        keys.append(f"mid:{parsed.message_id}")
    if parsed.bounce is not None and parsed.bounce.original_message_id:
        keys.append(f"mid:{parsed.bounce.original_message_id}")
    return keys


def people_of(parsed: ParsedMessage, own: frozenset[str]) -> set[str]:
    """Everyone a mail puts on the conversation: From, To and Cc, less our own mailboxes."""
    addresses: list[Address] = [*([parsed.from_] if parsed.from_ else []), *parsed.to, *parsed.cc]
    return {a.address.lower() for a in addresses if a.address and a.address.lower() not in own}


@dataclass
class Threads:
    """What is known about conversations, for the mails of one batch."""

    msgid_key: bytes
    tag_re: re.Pattern[str]
    by_message_id: dict[str, int] = field(default_factory=dict)  # a request's mail -> request
    by_outgoing_id: dict[str, int] = field(default_factory=dict)  # our outgoing mail -> request
    reply_first: dict[str, int] = field(default_factory=dict)  # id a reply threads to -> its request
    existing: set[int] = field(default_factory=set)  # request ids known to exist
    people: dict[int, set[str]] = field(default_factory=dict)  # request -> customer and people

    @classmethod
    def load(cls, conn: psycopg.Connection, mails: Iterable[ParsedMessage], msgid_key: bytes,
             tag_re: re.Pattern[str]) -> Threads:
        self = cls(msgid_key, tag_re)
        mails = list(mails)
        ids: set[str] = set()
        own: set[str] = set()
        candidates: set[int] = set()
        for parsed in mails:
            tids = thread_ids(parsed)
            if parsed.bounce is not None and parsed.bounce.original_message_id:
                tids.append(parsed.bounce.original_message_id)
            ids.update(tids)
            for mid in tids:
                signed = request_id_from_message_id(mid, msgid_key)
                if signed is not None:
                    candidates.add(signed)
            if parsed.message_id:
                own.add(parsed.message_id)
            candidates.update(int(n) for n in tag_re.findall(parsed.subject))
        if ids:
            # Oldest entry first: a Message-ID seen twice (one mail sent to two
            # of our mailboxes) belongs to the request that had it first.
            for row in conn.execute(
                "SELECT message_id, request_id, 'h' AS src FROM"
                " (SELECT message_id, request_id FROM history WHERE message_id = ANY(%(ids)s) ORDER BY id) h"
                " UNION ALL SELECT message_id, request_id, 'o' FROM outgoing_mail"
                " WHERE message_id = ANY(%(ids)s)",
                {"ids": sorted(ids)},
            ):
                self.by_message_id.setdefault(row["message_id"], row["request_id"])
                if row["src"] == "o":
                    self.by_outgoing_id.setdefault(row["message_id"], row["request_id"])
        if own:
            for row in conn.execute(
                "SELECT t.mid, h.request_id FROM history h CROSS JOIN LATERAL unnest(h.thread_ids) t(mid)"
                " WHERE h.thread_ids && %(own)s::text[] AND t.mid = ANY(%(own)s) ORDER BY h.id",
                {"own": sorted(own)},
            ):
                self.reply_first.setdefault(row["mid"], row["request_id"])
        if candidates:
            rows = conn.execute(
                "SELECT r.id, lower(c.address) AS customer, ARRAY("
                "  SELECT address FROM request_people p WHERE p.request_id = r.id"
                "  UNION SELECT lower(to_address) FROM outgoing_mail o WHERE o.request_id = r.id"
                " ) AS people"
                " FROM requests r LEFT JOIN customers c ON c.id = r.customer_id WHERE r.id = ANY(%s)",
                (sorted(c for c in candidates if c < 2**63),),
            ).fetchall()
            for row in rows:
                self.existing.add(row["id"])
                people = set(row["people"])
                if row["customer"]:
                    people.add(row["customer"])
                self.people[row["id"]] = people
        return self

    def decide(self, parsed: ParsedMessage, *, allow_tag: bool = True) -> Match | None:
        """The request this mail belongs to by rules 1 and 2, or None for a new request.

        `allow_tag` False (the sender failed DMARC): rule 2 does not apply.
        """
        for mid in thread_ids(parsed):
            signed = request_id_from_message_id(mid, self.msgid_key)
            if signed is not None and signed in self.existing:
                return Match(signed, "signed-message-id")
            found = self.by_message_id.get(mid)
            if found is not None:
                return Match(found, "message-id")
        if parsed.message_id:
            found = self.reply_first.get(parsed.message_id)
            if found is not None:
                return Match(found, "reply-first")
        sender = parsed.from_.address.lower() if parsed.from_ and parsed.from_.address else ""
        if sender and allow_tag:
            for number in self.tag_re.findall(parsed.subject):
                request_id = int(number)
                if request_id in self.existing and sender in self.people.get(request_id, ()):
                    return Match(request_id, "subject-tag")
        return None

    def decide_bounce(self, parsed: ParsedMessage) -> Match | None:
        """A bounce belongs to the request of the mail that bounced, else to the usual rules."""
        original = parsed.bounce.original_message_id if parsed.bounce else None
        if original:
            found = self.by_outgoing_id.get(original)
            if found is not None:
                return Match(found, "bounced-mail")
            signed = request_id_from_message_id(original, self.msgid_key)
            if signed is not None and signed in self.existing:
                return Match(signed, "bounced-mail")
            found = self.by_message_id.get(original)
            if found is not None:
                return Match(found, "bounced-mail")
        return self.decide(parsed)

    def remember(self, parsed: ParsedMessage, request_id: int, *, new: bool, people: set[str]) -> None:
        """Make a decision visible to the rest of the batch, as a commit would."""
        if new:
            self.existing.add(request_id)
            self.people[request_id] = set(people)
        elif request_id in self.people:
            self.people[request_id] |= people
        if parsed.message_id:
            self.by_message_id.setdefault(parsed.message_id, request_id)
        for mid in thread_ids(parsed):
            self.reply_first.setdefault(mid, request_id)
