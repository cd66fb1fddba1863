"""Allow and block lists of senders, system-wide and per mailbox.

An entry names a sender by

    address   the whole address, any case:              ceo@partner.example
    domain    a domain and every subdomain of it:       spam.example
    pattern   `*` and `?` over the whole address:       *@*.newsletter.example, sales-?@*

Which entry decides, when several match: the mailbox's own entries before
the system-wide ones (the nearer scope knows better), and within one scope
an allow entry before a block entry (an allow entry is usually the exception
carved out of a wider block). Blocked mail is held (`held_mail`), never
lost; an allowed sender's mail is never treated as spam.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import psycopg

from shared.filters.patterns import MAX_PATTERN, BadPattern, compile_regex, glob_regex

LISTS = ("allow", "block")
KINDS = ("address", "domain", "pattern")


@dataclass(frozen=True)
class Entry:
    id: int
    mailbox_id: int | None
    list: str
    kind: str
    value: str
    note: str = ""

    def matches(self, address: str) -> bool:
        address = address.strip().lower()
        if not address:
            return False
        if self.kind == "address":
            return address == self.value
        if self.kind == "domain":
            domain = address.rpartition("@")[2]
            return domain == self.value or domain.endswith("." + self.value)
        return compile_regex(glob_regex(self.value)).search(address) is not None

    def describe(self) -> str:
        scope = "system-wide" if self.mailbox_id is None else f"mailbox {self.mailbox_id}"
        return f"{self.list} list ({scope}): {self.kind} {self.value}"


@dataclass(frozen=True)
class SenderLists:
    entries: tuple[Entry, ...] = ()

    @classmethod
    def load(cls, conn: psycopg.Connection) -> SenderLists:
        rows = conn.execute(
            "SELECT id, mailbox_id, list, kind, lower(value) AS value, note FROM sender_list"
            " ORDER BY mailbox_id NULLS LAST, list, id").fetchall()
        return cls(tuple(Entry(r["id"], r["mailbox_id"], r["list"], r["kind"], r["value"], r["note"])
                         for r in rows))

    def decide(self, address: str | None, mailbox_id: int | None) -> Entry | None:
        """The entry that decides about mail from `address` to `mailbox_id`, or None."""
        if not address or not self.entries:
            return None
        scopes = (mailbox_id, None) if mailbox_id is not None else (None,)
        for scope in scopes:
            for wanted in LISTS:  # allow first
                for entry in self.entries:
                    if entry.mailbox_id == scope and entry.list == wanted and entry.matches(address):
                        return entry
        return None


def clean(values: Mapping[str, Any]) -> dict[str, Any]:
    """An entry's fields checked and normalised; InvalidSetting naming each bad field."""
    from shared.mailboxes import InvalidSetting

    errors: dict[str, str] = {}
    listed = str(values.get("list") or "").strip().lower()
    kind = str(values.get("kind") or "").strip().lower()
    value = str(values.get("value") or "").strip().lower()
    if listed not in LISTS:
        errors["list"] = "must be allow or block"
    if kind not in KINDS:
        errors["kind"] = "must be address, domain or pattern"
    if not value:
        errors["value"] = "must not be empty"
    elif len(value) > MAX_PATTERN:
        errors["value"] = f"must be at most {MAX_PATTERN} characters"
    elif any(c.isspace() for c in value):
        errors["value"] = "must not contain spaces"
    elif kind == "address" and (value.count("@") != 1 or value.startswith("@") or value.endswith("@")):
        errors["value"] = "an address must look like name@domain"
    elif kind == "domain":
        value = value.lstrip("@").lstrip("*.").rstrip(".")
        if "@" in value or "." not in value:
            errors["value"] = "a domain must look like example.com (no @)"
    elif kind == "pattern":
        if "*" not in value and "?" not in value:
            errors["value"] = "a pattern needs * or ? (use address or domain for a plain value)"
        else:
            try:
                compile_regex(glob_regex(value))
            except BadPattern as exc:
                errors["value"] = str(exc)
    if errors:
        raise InvalidSetting(errors)
    return {"list": listed, "kind": kind, "value": value, "note": str(values.get("note") or "").strip()}
