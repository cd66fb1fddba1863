"""Spam verdict headers, sender lists, rule patterns and rule evaluation: the pure parts."""

from __future__ import annotations

import re
import time

import pytest

from shared.filters import rules, senders
from shared.filters.patterns import BadPattern, compile_regex, glob_regex, search
from shared.filters.rules import Action, Condition, MailFacts, Rule, evaluate
from shared.mailboxes import InvalidSetting
from shared.spam.upstream import upstream_verdict
from shared.spam.verdict import Verdict, dmarc_of


def head(*lines: str, body: str = "hello") -> bytes:
    return ("\r\n".join(["From: a@b.example", *lines]) + "\r\n\r\n" + body).encode()


# -- upstream verdict headers --------------------------------------------------------


@pytest.mark.parametrize("line, spam, score", [
    ("X-Spam-Flag: YES", True, None),
    ("X-Spam-Flag: NO", False, None),
    ("X-Spam-Status: Yes, score=7.2 required=5.0 tests=BAYES_99", True, 7.2),
    ("X-Spam-Status: No, score=-2.0 required=5.0", False, None),  # a "no" score is not believed
    ("X-Spam: Yes", True, None),
    ("X-Spamd-Result: default: True [16.10 / 15.00];\r\n\tGTUBE(0.00)[]", True, 16.1),
    ("X-Spamd-Result: default: False [1.00 / 15.00]", False, None),
])
def test_upstream_headers(line, spam, score):
    verdict = upstream_verdict(head(line))
    assert verdict is not None and verdict.state == "upstream"
    assert verdict.spam is spam and verdict.score == score


def test_no_verdict_header_is_no_verdict_and_the_body_is_not_read():
    assert upstream_verdict(head("Subject: x")) is None
    assert upstream_verdict(head("Subject: x", body="X-Spam-Flag: YES")) is None


def test_an_upstream_dmarc_failure_counts_a_pass_does_not():
    failed = upstream_verdict(head("X-Spamd-Result: default: False [3.00 / 15.00];\r\n"
                                   "\tDMARC_POLICY_REJECT(2.00)[bank.example : No valid SPF,reject]"))
    assert failed is not None and failed.dmarc == "fail" and failed.dmarc_policy == "reject"
    assert failed.dmarc_failed and failed.dmarc_domain == "bank.example"
    passed = upstream_verdict(head("X-Spamd-Result: default: False [0.00 / 15.00]; DMARC_POLICY_ALLOW(-0.5)[]"))
    assert passed is not None and passed.dmarc is None


def test_dmarc_only_quarantine_and_reject_failures_are_acted_on():
    assert dmarc_of({"DMARC_POLICY_QUARANTINE": {"options": ["x.example : no"]}}) == \
        ("fail", "quarantine", "x.example")
    soft = Verdict("rspamd", dmarc="softfail", dmarc_policy="none")
    assert not soft.dmarc_failed  # p=none: the owner asked for reports only
    assert Verdict("rspamd", dmarc="fail", dmarc_policy="reject").dmarc_failed


def test_a_mailbox_threshold_replaces_rspamds_verdict_but_not_an_upstream_one():
    checked = Verdict("rspamd", spam=False, score=4.0, action="no action")
    assert not checked.is_spam(None) and checked.is_spam(3.5) and not checked.is_spam(4.5)
    assert Verdict("rspamd", spam=True, score=15.0).is_spam(None)
    upstream = Verdict("upstream", spam=True, score=2.0)  # SpamAssassin's scale: its own yes stands
    assert upstream.is_spam(10.0)


# -- patterns ---------------------------------------------------------------------------


def test_a_pattern_that_backtracks_forever_elsewhere_runs_in_linear_time():
    text = "a" * 200_000 + "!"
    assert re.compile(r"(a+)+$").pattern  # Python's re would take longer than the universe here
    started = time.perf_counter()
    assert not search(r"(a+)+$b", text)
    assert search(r"(a|aa)+!", text)
    assert time.perf_counter() - started < 0.5


@pytest.mark.parametrize("pattern, reason", [
    (r"(a)\1", "invalid escape"),          # backreferences: not in RE2
    (r"(?=x)", "invalid perl operator"),   # lookaround: not in RE2
    ("(", "missing )"),
    ("x" * 1001, "longer than 1000"),
])
def test_bad_patterns_are_refused_with_the_reason(pattern, reason):
    with pytest.raises(BadPattern, match=re.escape(reason)):
        compile_regex(pattern)


def test_sender_globs_cover_the_whole_address():
    assert search(glob_regex("*@*.news.example"), "a@list.news.example")
    assert not search(glob_regex("*@*.news.example"), "a@news.example.evil.org")
    assert search(glob_regex("sales-?@acme.example"), "SALES-1@acme.example")


# -- sender lists ---------------------------------------------------------------------


def test_the_mailboxs_entries_decide_first_and_allow_wins_within_a_scope():
    lists = senders.SenderLists((
        senders.Entry(1, None, "block", "domain", "spam.example"),
        senders.Entry(2, 7, "allow", "address", "ok@spam.example"),
        senders.Entry(3, 7, "block", "pattern", "*@partner.example"),
        senders.Entry(4, None, "allow", "domain", "partner.example"),
        senders.Entry(5, None, "allow", "address", "x@spam.example"),
    ))
    assert lists.decide("a@mx.spam.example", 7).id == 1  # subdomains too
    assert lists.decide("OK@spam.example", 7).id == 2
    assert lists.decide("ok@spam.example", 8).id == 1  # another mailbox: the system-wide block
    assert lists.decide("a@partner.example", 7).id == 3  # the mailbox's block beats a system allow
    assert lists.decide("x@spam.example", 8).id == 5  # system scope: allow before block
    assert lists.decide("a@other.example", 7) is None


def test_sender_entries_are_checked_and_normalised():
    assert senders.clean({"list": "block", "kind": "domain", "value": " @*.Spam.Example. "})["value"] == \
        "spam.example"
    with pytest.raises(InvalidSetting) as bad:
        senders.clean({"list": "deny", "kind": "address", "value": "no-at-sign"})
    assert set(bad.value.errors) == {"list", "value"}
    with pytest.raises(InvalidSetting, match="needs \\* or \\?"):
        senders.clean({"list": "allow", "kind": "pattern", "value": "a@b.example"})


# -- rules --------------------------------------------------------------------------------


def rule(name: str, conditions: list[dict], actions: list[dict], match: str = "all") -> Rule:
    values = rules.clean({"name": name, "match": match, "conditions": conditions, "actions": actions})
    return Rule.from_row({"id": 0, "mailbox_id": None, **values})


def facts(**kw: object) -> MailFacts:
    base = dict(from_=["ada@customer.example", "Ada <ada@customer.example>"], to=["sales@acme.example"],
                subject="Invoice 42", body="Please pay.", recipient=["sales@acme.example"])
    return MailFacts(**{**base, **kw})  # type: ignore[arg-type]


def test_all_any_negate_and_the_field_kinds():
    invoice = rule("Invoices", [{"field": "subject", "op": "regex", "value": r"invoice \d+"},
                                {"field": "from", "op": "equals", "value": "ADA@customer.example"}],
                   [{"action": "category", "value": "Billing"}])
    assert evaluate([invoice], facts()).category == "Billing"
    assert evaluate([invoice], facts(subject="Hello")).category is None
    either = rule("Either", [{"field": "subject", "op": "contains", "value": "nope"},
                             {"field": "attachments", "value": "true"}],
                  [{"action": "close"}], match="any")
    assert evaluate([either], facts(attachments=True)).close
    assert not evaluate([either], facts()).close
    not_vip = rule("Not VIP", [{"field": "from", "op": "contains", "value": "vip.example", "negate": True},
                               {"field": "spam_score", "op": "at_least", "value": "5"}],
                   [{"action": "spam"}])
    assert evaluate([not_vip], facts(spam_score=6.0)).spam == "Not VIP"
    assert evaluate([not_vip], facts(spam_score=None)).spam is None  # not checked: no number
    header = rule("Priority", [{"field": "header", "header": "X-Priority", "op": "equals", "value": "1"}],
                  [{"action": "note", "value": "urgent"}])
    assert evaluate([header], facts(headers={"x-priority": ["1"]})).notes == ["rule 'Priority': urgent"]


def test_stop_and_discard_end_the_list_and_every_acting_rule_is_in_the_history():
    first = rule("Route", [{"field": "recipient", "op": "equals", "value": "sales@acme.example"}],
                 [{"action": "category", "value": "Sales"}, {"action": "stop"}])
    second = rule("Never", [{"field": "subject", "op": "contains", "value": "invoice"}],
                  [{"action": "category", "value": "Billing"}])
    decision = evaluate([first, second], facts())
    assert decision.category == "Sales"
    assert decision.history == ["rule 'Route': category Sales; no further rules"]
    drop = rule("Newsletters", [{"field": "automatic", "value": True}],
                [{"action": "discard", "value": "newsletter"}])
    dropped = evaluate([drop, second], facts(automatic=True))
    assert dropped.discard == "rule 'Newsletters': newsletter" and dropped.category is None
    released = evaluate([drop, second], facts(automatic=True), released=True)
    assert released.discard is None and released.category == "Billing"
    assert "skipped (released" in released.history[0]


def test_evaluation_stops_at_its_time_budget_and_says_which_rules_it_skipped():
    slow = rule("A", [{"field": "body", "op": "contains", "value": "x"}], [{"action": "close"}])
    decision = evaluate([slow, slow], facts(), budget=-1.0)
    assert not decision.close and decision.history == ["rules stopped after -1 s; not evaluated: 'A', 'A'"]


def test_a_bad_rule_is_refused_naming_each_place():
    with pytest.raises(InvalidSetting) as bad:
        rules.clean({"name": " ", "match": "most", "conditions": [
            {"field": "subject", "op": "regex", "value": "(unclosed"},
            {"field": "colour", "op": "equals", "value": "red"},
            {"field": "spam_score", "op": "at_least", "value": "high"},
        ], "actions": [{"action": "category"}, {"action": "explode"}]})
    errors = bad.value.errors
    assert errors["name"] == "must not be empty" and errors["match"] == "must be all or any"
    assert "missing )" in errors["conditions.1.value"]
    assert errors["conditions.2.field"].startswith("must be one of from")
    assert errors["conditions.3.value"] == "must be a number"
    assert errors["actions.1.value"] == "category needs a category name"
    assert errors["actions.2.action"].startswith("must be one of")
    with pytest.raises(InvalidSetting, match="discard makes no request"):
        rules.clean({"name": "x", "conditions": [{"field": "subject", "op": "contains", "value": "a"}],
                     "actions": [{"action": "discard", "value": "r"}, {"action": "category", "value": "c"}]})


def test_descriptions_read_as_the_history_says():
    assert Condition("header", "equals", "1", header="X-Priority").describe() == "header X-Priority equals '1'"
    assert Action("no_auto_reply").describe() == "no auto-reply"
