"""Mail rules: conditions on a new mail, and what to do when they hold.

A rule has conditions (all of them, or any one, must hold) and actions, and
rules run in order: the system-wide ones first, then the mailbox's own,
each list by position. Like HelpSpot's mail rules they act on the first mail
of a request; later mails on the request are not matched (README "Mail
rules"). A condition looks at one field of the mail:

    from, to, cc        addresses with their display names ("Ada <ada@x.org>")
    recipient           every address the mail was sent to: To, Cc and the
                        Delivered-To / X-Original-To / Envelope-To headers that
                        the mail server adds (which of our addresses it reached)
    subject, body       text (the body as plain text)
    header              any header, by name (`header` says which)
    attachments         has attachments: value true or false
    spam_score          rspamd's score: at_least or below a number
    automatic           automatic mail (out-of-office, bulk, lists, bounces): true or false

Each condition and action also has a one-line text form, which the CLI,
the page and the API accept alike: "subject contains invoice", "not from
contains @example.com", "header:X-Priority equals 1", "attachments yes",
"spam_score at_least 5"; "category Billing", "discard newsletter", "stop".

Text fields match with contains or equals (both ignore case) or regex (RE2:
linear time, ignores case; shared/filters/patterns.py); `negate` turns a
condition around. A field with several values (To, headers) holds when any
value does (a negated one: when none does).

Actions: category NAME, spam, no_auto_reply, close, note TEXT, discard REASON
(no request; the mail is held with the reason, and can be released), stop
(no further rules). Every rule that acts is written into the request's
history, e.g. "rule 'Invoices': category Billing".
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from shared.filters.patterns import MAX_PATTERN, MAX_TEXT, BadPattern, compile_regex

TEXT_FIELDS = ("from", "to", "cc", "recipient", "subject", "body", "header")
BOOL_FIELDS = ("attachments", "automatic")
NUMBER_FIELDS = ("spam_score",)
FIELDS = TEXT_FIELDS + BOOL_FIELDS + NUMBER_FIELDS
TEXT_OPS = ("contains", "equals", "regex")
NUMBER_OPS = ("at_least", "below")
ACTIONS = ("category", "spam", "no_auto_reply", "close", "note", "discard", "stop")
VALUE_ACTIONS = ("category", "note", "discard")
# Header fields that name where a mail was delivered (set by the receiving server).
RECIPIENT_HEADERS = ("delivered-to", "x-original-to", "envelope-to")
BUDGET_SECONDS = 0.25  # rule evaluation per mail; the rest of the rules are skipped past it
MAX_CONDITIONS = 20
MAX_ACTIONS = 10
MAX_VALUE = 2000


@dataclass(frozen=True)
class Condition:
    field: str
    op: str
    value: Any
    negate: bool = False
    header: str | None = None

    def describe(self) -> str:
        name = f"header {self.header}" if self.field == "header" else self.field
        if self.field in BOOL_FIELDS:
            return f"{name} is {'yes' if self.value else 'no'}"
        return f"{name} {'not ' if self.negate else ''}{self.op.replace('_', ' ')} {self.value!r}"


@dataclass(frozen=True)
class Action:
    action: str
    value: str | None = None

    def describe(self) -> str:
        words = {"category": "category", "spam": "marked spam", "no_auto_reply": "no auto-reply",
                 "close": "closed", "note": "note", "discard": "discarded", "stop": "no further rules"}
        return f"{words[self.action]} {self.value}" if self.value else words[self.action]


@dataclass(frozen=True)
class Rule:
    id: int
    name: str
    mailbox_id: int | None
    match: str  # all | any
    conditions: tuple[Condition, ...]
    actions: tuple[Action, ...]
    enabled: bool = True
    position: int = 0

    @property
    def headers(self) -> set[str]:
        """The header fields (lower case) this rule's conditions read."""
        names: set[str] = set()
        for c in self.conditions:
            if c.field == "header" and c.header:
                names.add(c.header.lower())
            elif c.field == "recipient":
                names.update(RECIPIENT_HEADERS)
        return names

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Rule:
        return cls(row["id"], row["name"], row["mailbox_id"], row["match"],
                   tuple(Condition(**c) for c in row["conditions"]),
                   tuple(Action(**a) for a in row["actions"]),
                   row.get("enabled", True), row.get("position", 0))


@dataclass
class MailFacts:
    """What conditions look at, for one mail."""

    from_: list[str] = field(default_factory=list)
    to: list[str] = field(default_factory=list)
    cc: list[str] = field(default_factory=list)
    recipient: list[str] = field(default_factory=list)
    subject: str = ""
    body: str = ""
    headers: dict[str, list[str]] = field(default_factory=dict)  # lower-cased name -> values
    attachments: bool = False
    automatic: bool = False
    spam_score: float | None = None

    def values(self, condition: Condition) -> list[str]:
        f = condition.field
        if f == "from":
            return self.from_
        if f in ("to", "cc", "recipient"):
            return list(getattr(self, f))
        if f == "header":
            return self.headers.get((condition.header or "").lower(), [])
        return [getattr(self, f)]


@dataclass
class Decision:
    """What the rules decided for one mail."""

    category: str | None = None
    spam: str | None = None  # the rule that marked it spam
    no_auto_reply: str | None = None  # the rule that said so
    close: bool = False
    notes: list[str] = field(default_factory=list)
    discard: str | None = None  # "rule 'X': reason"
    history: list[str] = field(default_factory=list)  # one line per rule that acted


def _text_holds(condition: Condition, values: Sequence[str]) -> bool:
    wanted = str(condition.value)
    if condition.op == "regex":
        pattern = compile_regex(wanted)
        hit = any(pattern.search(v[:MAX_TEXT]) is not None for v in values)
    elif condition.op == "equals":
        low = wanted.casefold()
        hit = any(v.strip().casefold() == low for v in values)
    else:
        low = wanted.casefold()
        hit = any(low in v[:MAX_TEXT].casefold() for v in values)
    return hit != condition.negate


def holds(condition: Condition, facts: MailFacts) -> bool:
    if condition.field in BOOL_FIELDS:
        return bool(getattr(facts, condition.field)) == bool(condition.value)
    if condition.field == "spam_score":
        if facts.spam_score is None:  # not checked: no number to compare
            return False
        limit = float(condition.value)
        hit = facts.spam_score >= limit if condition.op == "at_least" else facts.spam_score < limit
        return hit != condition.negate
    return _text_holds(condition, facts.values(condition))


def matches(rule: Rule, facts: MailFacts) -> bool:
    results = (holds(c, facts) for c in rule.conditions)
    return all(results) if rule.match == "all" else any(results)


def evaluate(rules: Sequence[Rule], facts: MailFacts, *, released: bool = False,
             budget: float = BUDGET_SECONDS) -> Decision:
    """Apply `rules` in order to one mail. `released`: an administrator let this mail
    through, so discard and spam no longer apply (they are noted as skipped)."""
    decision = Decision()
    deadline = time.monotonic() + budget
    for index, rule in enumerate(rules):
        if not rule.enabled:
            continue
        if time.monotonic() > deadline:
            skipped = ", ".join(repr(r.name) for r in rules[index:] if r.enabled)
            decision.history.append(f"rules stopped after {budget:g} s; not evaluated: {skipped}")
            break
        if not matches(rule, facts):
            continue
        done: list[str] = []
        stop = False
        for action in rule.actions:
            kind = action.action
            if kind in ("discard", "spam") and released:
                done.append(f"{action.describe()} skipped (released by an administrator)")
                continue
            if kind == "category":
                decision.category = action.value
            elif kind == "spam":
                decision.spam = decision.spam or rule.name
            elif kind == "no_auto_reply":
                decision.no_auto_reply = decision.no_auto_reply or rule.name
            elif kind == "close":
                decision.close = True
            elif kind == "note":
                decision.notes.append(f"rule '{rule.name}': {action.value}")
            elif kind == "discard":
                decision.discard = f"rule '{rule.name}': {action.value}"
                stop = True
            elif kind == "stop":
                stop = True
            done.append(action.describe())
        decision.history.append(f"rule '{rule.name}': {'; '.join(done)}")
        if stop:
            break
    return decision


# -- the one-line text form (CLI arguments, the page's text areas, the API alike) --------


def condition_text(c: Mapping[str, Any]) -> str:
    """A condition as one line: `[not] FIELD OP VALUE`, `header:NAME OP VALUE`, `attachments yes`."""
    name = f"header:{c.get('header')}" if c.get("field") == "header" else str(c.get("field"))
    if c.get("field") in BOOL_FIELDS:
        return f"{name} {'yes' if c.get('value') else 'no'}"
    value = c.get("value")
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return f"{'not ' if c.get('negate') else ''}{name} {c.get('op')} {value}"


def action_text(a: Mapping[str, Any]) -> str:
    return f"{a.get('action')} {a.get('value')}" if a.get("value") else str(a.get("action"))


def parse_condition(line: str) -> dict[str, Any]:
    """The text form back into a condition's fields (checked later by clean)."""
    words = line.strip().split(None, 1)
    negate = bool(words) and words[0].lower() == "not"
    rest = words[1] if negate and len(words) > 1 else line.strip() if not negate else ""
    name, _, tail = rest.partition(" ")
    out: dict[str, Any] = {"negate": negate}
    if name.lower().startswith("header:"):
        out.update(field="header", header=name[len("header:"):])
    else:
        out["field"] = name.lower()
    if out["field"] in BOOL_FIELDS:
        return {**out, "value": tail.strip()}
    op, _, value = tail.strip().partition(" ")
    return {**out, "op": op.lower(), "value": value.strip()}


def parse_action(line: str) -> dict[str, Any]:
    name, _, value = line.strip().partition(" ")
    return {"action": name.lower(), "value": value.strip() or None}


def _lines(items: Any, parse: Any) -> Any:
    """Conditions or actions as a list of mappings, a list of text lines, or one text with a line each."""
    if isinstance(items, str):
        items = [line for line in items.splitlines() if line.strip()]
    if isinstance(items, list):
        return [parse(i) if isinstance(i, str) else i for i in items]
    return items


# -- checking what an administrator saves ------------------------------------------


def clean(values: Mapping[str, Any]) -> dict[str, Any]:
    """A rule's fields checked and normalised; InvalidSetting naming each bad field.

    Conditions and actions are checked one by one; an error names its place,
    e.g. "conditions.2.value": "not a valid regular expression: missing )".
    """
    from shared.mailboxes import InvalidSetting

    errors: dict[str, str] = {}
    name = str(values.get("name") or "").strip()
    if not name:
        errors["name"] = "must not be empty"
    elif len(name) > 200:
        errors["name"] = "must be at most 200 characters"
    match = str(values.get("match") or "all").strip().lower()
    if match not in ("all", "any"):
        errors["match"] = "must be all or any"
    conditions = _lines(values.get("conditions") or [], parse_condition)
    actions = _lines(values.get("actions") or [], parse_action)
    if not isinstance(conditions, list) or not conditions:
        errors["conditions"] = "a rule needs at least one condition"
        conditions = []
    elif len(conditions) > MAX_CONDITIONS:
        errors["conditions"] = f"at most {MAX_CONDITIONS} conditions"
    if not isinstance(actions, list) or not actions:
        errors["actions"] = "a rule needs at least one action"
        actions = []
    elif len(actions) > MAX_ACTIONS:
        errors["actions"] = f"at most {MAX_ACTIONS} actions"
    clean_conditions = _clean_each("conditions", conditions, _clean_condition, errors)
    clean_actions = _clean_each("actions", actions, _clean_action, errors)
    kinds = [a["action"] for a in clean_actions]
    if "discard" in kinds and any(k in kinds for k in ("category", "spam", "close", "note")):
        errors["actions"] = "discard makes no request: it cannot go with category, spam, close or note"
    if errors:
        raise InvalidSetting(errors)
    return {"name": name, "match": match, "conditions": clean_conditions, "actions": clean_actions,
            "enabled": bool(values.get("enabled", True))}


def _clean_each(name: str, items: Any, check: Any, errors: dict[str, str]) -> list[dict[str, Any]]:
    """Each item checked by `check`; its problem recorded as errors["<name>.<n>.<key>"]."""
    out = []
    for i, raw in enumerate(items if isinstance(items, list) else [], start=1):
        item, problem = check(raw)
        if problem:
            errors[f"{name}.{i}.{problem[0]}"] = problem[1]
        else:
            out.append(item)
    return out


def _clean_condition(raw: Any) -> tuple[dict[str, Any], tuple[str, str] | None]:
    if not isinstance(raw, Mapping):
        return {}, ("field", "each condition needs a field, an op and a value")
    fld = str(raw.get("field") or "").strip().lower()
    if fld not in FIELDS:
        return {}, ("field", f"must be one of {', '.join(FIELDS)}")
    negate = bool(raw.get("negate", False))
    out: dict[str, Any] = {"field": fld, "negate": negate}
    if fld == "header":
        header = str(raw.get("header") or "").strip()
        if not header or any(c.isspace() or c == ":" for c in header):
            return {}, ("header", "name the header, e.g. X-Priority (no spaces or colon)")
        out["header"] = header
    value = raw.get("value")
    if fld in BOOL_FIELDS:
        if isinstance(value, str):
            if value.strip().lower() not in ("true", "false", "yes", "no", "1", "0"):
                return {}, ("value", "must be true or false")
            value = value.strip().lower() in ("true", "yes", "1")
        return {**out, "op": "is", "value": bool(value), "negate": False}, None
    op = str(raw.get("op") or "").strip().lower()
    if fld in NUMBER_FIELDS:
        if op not in NUMBER_OPS:
            return {}, ("op", f"must be one of {', '.join(NUMBER_OPS)}")
        try:
            number = float(value)
        except (TypeError, ValueError):
            return {}, ("value", "must be a number")
        if number != number or abs(number) > 1e6:  # NaN or absurd
            return {}, ("value", "must be a number between -1000000 and 1000000")
        return {**out, "op": op, "value": number}, None
    if op not in TEXT_OPS:
        return {}, ("op", f"must be one of {', '.join(TEXT_OPS)}")
    text = str(value if value is not None else "")
    if not text.strip():
        return {}, ("value", "must not be empty")
    if len(text) > MAX_PATTERN:
        return {}, ("value", f"must be at most {MAX_PATTERN} characters")
    if op == "regex":
        try:
            compile_regex(text)
        except BadPattern as exc:
            return {}, ("value", str(exc))
    return {**out, "op": op, "value": text}, None


def _clean_action(raw: Any) -> tuple[dict[str, Any], tuple[str, str] | None]:
    if not isinstance(raw, Mapping):
        return {}, ("action", "each action needs a name")
    kind = str(raw.get("action") or "").strip().lower()
    if kind not in ACTIONS:
        return {}, ("action", f"must be one of {', '.join(ACTIONS)}")
    if kind in VALUE_ACTIONS:
        value = str(raw.get("value") or "").strip()
        if not value:
            what = {"category": "a category name", "note": "the note's text",
                    "discard": "the reason, for the record"}[kind]
            return {}, ("value", f"{kind} needs {what}")
        if len(value) > MAX_VALUE:
            return {}, ("value", f"must be at most {MAX_VALUE} characters")
        return {"action": kind, "value": value}, None
    return {"action": kind, "value": None}, None
