"""The ticketer's filters: sender lists, spam verdicts, DMARC and mail rules, for one batch.

In record.record_batch, for each mail, in this order:

  1. sender lists: a blocked sender's mail (new or an update) makes nothing
     and is held with the reason; an allowed sender's is never spam;
  2. threading, where a mail whose From fails DMARC may not join a request
     by the subject tag alone (a forged customer address must not append to
     a request whose number it guesses);
  3. for a mail that opens a new request: its spam verdict (the mailbox's
     threshold, else rspamd's own), then the mail rules, which may discard
     it (held, with the rule's reason), route it, close it, mark it spam,
     withhold the auto-reply or add notes.

Everything decided is written into the new request's history. Mail an
administrator released from the held list comes through again with
`released` set: no block, no discard, not spam.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import psycopg

from shared.filters.facts import facts_of, read_headers
from shared.filters.rules import Rule, evaluate
from shared.filters.senders import SenderLists
from shared.parsed import ParsedMessage
from shared.spam.verdict import Verdict


@dataclass
class NewRequest:
    """How a new request is made, beyond the defaults."""

    category_id: int | None
    status: str = "open"
    spam_reason: str | None = None
    no_auto_reply: str | None = None
    notes: list[str] = field(default_factory=list)  # history lines, in order


@dataclass(frozen=True)
class Held:
    kind: str  # blocked | discarded
    reason: str


@dataclass
class Filters:
    lists: SenderLists
    rules: dict[int | None, list[Rule]]
    verdicts: dict[int, Verdict]
    thresholds: dict[int, float | None]
    released: set[int]
    headers: dict[int, dict[str, list[str]]]
    conn: psycopg.Connection
    _categories: dict[str, int] = field(default_factory=dict)

    @classmethod
    def load(cls, conn: psycopg.Connection, mails: Iterable[tuple[int, int]]) -> Filters:
        """The filters for mails given as (raw_id, mailbox_id): a few queries per batch."""
        mails = list(mails)
        raw_ids = [r for r, _ in mails]
        mailbox_ids = sorted({m for _, m in mails})
        rules: dict[int | None, list[Rule]] = {}
        for row in conn.execute(
            "SELECT id, name, mailbox_id, match, conditions, actions, enabled, position FROM mail_rules"
            " WHERE enabled AND (mailbox_id IS NULL OR mailbox_id = ANY(%s))"
            " ORDER BY mailbox_id NULLS FIRST, position, id", (mailbox_ids,)):
            rules.setdefault(row["mailbox_id"], []).append(Rule.from_row(row))
        verdicts = {r["raw_id"]: Verdict.from_row(r) for r in conn.execute(
            "SELECT * FROM spam_verdicts WHERE raw_id = ANY(%s)", (raw_ids,))}
        thresholds = {r["id"]: r["spam_threshold"] for r in conn.execute(
            "SELECT id, spam_threshold FROM mailboxes WHERE id = ANY(%s)", (mailbox_ids,))}
        released = {r["raw_id"] for r in conn.execute(
            "SELECT raw_id FROM held_mail WHERE raw_id = ANY(%s) AND released_at IS NOT NULL", (raw_ids,))}
        # Headers only for mailboxes that have a rule reading them, and only those fields.
        wanted = {m: set().union(*(r.headers for r in rules.get(None, []) + rules.get(m, [])))
                  for m in mailbox_ids}
        names = set().union(*wanted.values()) if wanted else set()
        headers = read_headers(conn, [r for r, m in mails if wanted.get(m)], names)
        return cls(SenderLists.load(conn), rules, verdicts, thresholds, released, headers, conn)

    # -- 1. sender lists -------------------------------------------------------

    def held_by_lists(self, raw_id: int, mailbox_id: int, parsed: ParsedMessage) -> Held | None:
        if raw_id in self.released or parsed.from_ is None:
            return None
        entry = self.lists.decide(parsed.from_.address, mailbox_id)
        if entry is not None and entry.list == "block":
            return Held("blocked", f"sender {parsed.from_.address} is on the {entry.describe()}")
        return None

    # -- 2. DMARC ----------------------------------------------------------------

    def dmarc_failed(self, raw_id: int) -> bool:
        verdict = self.verdicts.get(raw_id)
        return verdict is not None and verdict.dmarc_failed

    # -- 3. a new request ----------------------------------------------------------

    def new_request(self, raw_id: int, mailbox_id: int, category_id: int | None,
                    parsed: ParsedMessage) -> NewRequest | Held:
        released = raw_id in self.released
        verdict = self.verdicts.get(raw_id)
        out = NewRequest(category_id)
        allowed = None
        if parsed.from_ is not None:
            entry = self.lists.decide(parsed.from_.address, mailbox_id)
            allowed = entry if entry is not None and entry.list == "allow" else None
        if released:
            out.notes.append("released from the held mail by an administrator")
        spam = verdict is not None and verdict.is_spam(self.thresholds.get(mailbox_id))
        if spam and verdict is not None:
            if allowed is not None:
                out.notes.append(f"not spam: sender on the {allowed.describe()}"
                                 f" (the filter said spam: {verdict.describe()})")
            elif released:
                out.notes.append(f"not spam: released (the filter said spam: {verdict.describe()})")
            else:
                out.spam_reason = verdict.describe()
                out.notes.append(f"spam by {out.spam_reason}")
        if verdict is not None and verdict.dmarc_failed:
            out.no_auto_reply = (f"the sender failed DMARC ({verdict.dmarc_domain or 'its domain'}"
                                 f" publishes policy {verdict.dmarc_policy})")
            out.notes.append(out.no_auto_reply + ": no auto-reply, and its request tag alone joins it"
                             " to no request")
        rules = self.rules.get(None, []) + self.rules.get(mailbox_id, [])
        if rules:
            facts = facts_of(parsed, verdict, self.headers.get(raw_id))
            decision = evaluate(rules, facts, released=released)
            out.notes += decision.history
            if decision.discard is not None:
                return Held("discarded", decision.discard)
            if decision.category is not None:
                out.category_id = self._category(decision.category)
            if decision.spam is not None and out.spam_reason is None and allowed is None:
                out.spam_reason = f"rule '{decision.spam}'"
            if decision.no_auto_reply is not None and out.no_auto_reply is None:
                out.no_auto_reply = f"rule '{decision.no_auto_reply}'"
            if decision.close:
                out.status = "closed"
            out.notes += decision.notes
        return out

    def _category(self, name: str) -> int:
        """The category's id, made if missing (as a mailbox's default category is)."""
        key = name.strip()
        if key not in self._categories:
            row = self.conn.execute(
                "WITH made AS (INSERT INTO categories (name) VALUES (%(n)s) ON CONFLICT (name) DO NOTHING"
                " RETURNING id) SELECT id FROM made UNION ALL SELECT id FROM categories WHERE name = %(n)s",
                {"n": key}).fetchone()
            assert row is not None
            self._categories[key] = row["id"]
        return self._categories[key]
