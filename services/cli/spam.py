"""`deskmail rules | senders | spam`: mail rules, sender lists, spam and held mail, through services/admin.

    deskmail rules add Invoices --if 'subject regex invoice \\d+' --then 'category Billing' [--mailbox ID]
    deskmail rules dry-run --mailbox 1 --last 50 --if 'recipient equals sales@acme.example' --then 'category Sales'
    deskmail senders block domain spam.example [--mailbox ID] [--note why]
    deskmail spam list | release ID | mark ID | delete ID | held | release-held RAW_ID | threshold MAILBOX N|none
"""

from __future__ import annotations

import argparse
import getpass
import json
from typing import Any

from services.admin import rules as rule_admin
from services.admin import senders as sender_admin
from services.admin import spam as spam_admin
from services.app import App
from shared.db import transaction


def register(sub: argparse._SubParsersAction) -> None:
    _register_rules(sub)
    _register_senders(sub)
    _register_spam(sub)


def _dump(value: Any) -> None:
    print(json.dumps(value, default=str, indent=2, ensure_ascii=False))


def _by(args: argparse.Namespace) -> str:
    return args.by or f"{getpass.getuser()} (CLI)"


# ---- rules ----------------------------------------------------------------------------


def _rule_options(a: argparse.ArgumentParser, *, editing: bool) -> None:
    a.add_argument("--if", dest="conditions", action="append", metavar="CONDITION",
                   help="e.g. 'subject contains invoice', 'not from contains @x.org', 'header:X-Priority equals 1',"
                        " 'attachments yes', 'spam_score at_least 5' (repeat; --any: one is enough)")
    a.add_argument("--then", dest="actions", action="append", metavar="ACTION",
                   help="category NAME, spam, no_auto_reply, close, note TEXT, discard REASON, stop (repeat)")
    a.add_argument("--any", dest="match", action="store_const", const="any", help="any condition (default: all)")
    if editing:
        a.add_argument("--all", dest="match", action="store_const", const="all", help="all conditions")
    a.add_argument("--mailbox", dest="mailbox_id", metavar="ID", help="this mailbox's rule (default: system-wide)")
    a.add_argument("--position", help="its place in its list (lower runs first; default: last)")


def _register_rules(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("rules", help="mail rules: route, mark spam, close or discard new mail")
    rsub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    a = rsub.add_parser("list", help="rules in the order they run")
    a.add_argument("--mailbox", dest="mailbox_id", default="all", metavar="ID|system")
    a.add_argument("--json", action="store_true")
    a.set_defaults(func=cmd_rules_list)
    a = rsub.add_parser("add", help="add a rule")
    a.add_argument("name")
    _rule_options(a, editing=False)
    a.add_argument("--disabled", dest="enabled", action="store_const", const="false")
    a.set_defaults(func=cmd_rules_add)
    a = rsub.add_parser("edit", help="change a rule (--if / --then replace its conditions / actions)")
    a.add_argument("id", type=int)
    a.add_argument("--name")
    _rule_options(a, editing=True)
    a.add_argument("--enable", dest="enabled", action="store_const", const="true")
    a.add_argument("--disable", dest="enabled", action="store_const", const="false")
    a.set_defaults(func=cmd_rules_edit)
    a = rsub.add_parser("remove", help="remove a rule")
    a.add_argument("id", type=int)
    a.set_defaults(func=cmd_rules_remove)
    a = rsub.add_parser("dry-run", help="what a rule would have done to a mailbox's last mails (saves nothing)")
    a.add_argument("--name", default="dry run")
    _rule_options(a, editing=False)
    a.add_argument("--last", default="50", help="how many of the mailbox's newest mails (default 50)")
    a.add_argument("--json", action="store_true")
    a.set_defaults(func=cmd_rules_dry_run)


def _rule_values(args: argparse.Namespace, *fields: str) -> dict[str, Any]:
    return {f: getattr(args, f) for f in fields if getattr(args, f, None) is not None}


def _print_rule(r: dict[str, Any]) -> None:
    scope = r["mailbox"] or "system-wide"
    print(f"#{r['id']:<4} {r['position']:>3}. {r['name']!r} ({scope}{'' if r['enabled'] else ', disabled'})"
          f" if {r['match']} of:")
    for line in r["condition_lines"]:
        print(f"        {line}")
    print("      then: " + "; ".join(r["action_lines"]))


def cmd_rules_list(args: argparse.Namespace) -> int:
    app = App.from_env()
    with app.pool.connection() as conn:
        rows = rule_admin.list_all(conn, args.mailbox_id)
    if args.json:
        _dump(rows)
    elif not rows:
        print("no rules (deskmail rules add NAME --if ... --then ...)")
    for r in rows if not args.json else []:
        _print_rule(r)
    return 0


def cmd_rules_add(args: argparse.Namespace) -> int:
    app = App.from_env()
    values = {"name": args.name, **_rule_values(args, "conditions", "actions", "match", "mailbox_id", "position",
                                                  "enabled")}
    with transaction(app.pool) as conn:
        rule_id = rule_admin.save(conn, values)
        _print_rule(rule_admin.get(conn, rule_id))
    return 0


def cmd_rules_edit(args: argparse.Namespace) -> int:
    app = App.from_env()
    values = _rule_values(args, "name", "conditions", "actions", "match", "mailbox_id", "position", "enabled")
    with transaction(app.pool) as conn:
        rule_admin.save(conn, values, args.id)
        _print_rule(rule_admin.get(conn, args.id))
    return 0


def cmd_rules_remove(args: argparse.Namespace) -> int:
    app = App.from_env()
    with transaction(app.pool) as conn:
        gone = rule_admin.remove(conn, args.id)
    print(f"rule {gone['name']!r} removed")
    return 0


def cmd_rules_dry_run(args: argparse.Namespace) -> int:
    app = App.from_env()
    values = {"name": args.name, **_rule_values(args, "conditions", "actions", "match")}
    with app.pool.connection() as conn:
        rows = rule_admin.dry_run(conn, values, args.mailbox_id, args.last)
    if args.json:
        _dump(rows)
        return 0
    for r in rows:
        what = r["would"] if r["matched"] else "-"
        request = f"#{r['request_id']}" if r["request_id"] else "(no request)"
        print(f"{request:>8}  {r['from'] or '-':30} {r['subject'][:40]:40}  {what}")
    print(f"{sum(r['matched'] for r in rows)} of {len(rows)} mails matched")
    return 0


# ---- sender lists ------------------------------------------------------------------------


def _register_senders(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("senders", help="allow and block lists of senders")
    ssub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    a = ssub.add_parser("list", help="every entry, system-wide first")
    a.add_argument("--mailbox", dest="mailbox_id", default="all", metavar="ID|system")
    a.add_argument("--json", action="store_true")
    a.set_defaults(func=cmd_senders_list)
    for listed in ("allow", "block"):
        a = ssub.add_parser(listed, help=f"{listed} a sender: address, domain (and subdomains) or pattern (* ?)")
        a.add_argument("kind", help="address, domain or pattern")
        a.add_argument("value")
        a.add_argument("--mailbox", dest="mailbox_id", metavar="ID", help="for this mailbox only")
        a.add_argument("--note", default="")
        a.add_argument("--by", help="who (recorded; default: your user name)")
        a.set_defaults(func=cmd_senders_add, list=listed)
    a = ssub.add_parser("remove", help="remove an entry")
    a.add_argument("id", type=int)
    a.set_defaults(func=cmd_senders_remove)


def cmd_senders_list(args: argparse.Namespace) -> int:
    app = App.from_env()
    with app.pool.connection() as conn:
        rows = sender_admin.list_all(conn, args.mailbox_id)
    if args.json:
        _dump(rows)
        return 0
    if not rows:
        print("no entries (deskmail senders block domain spam.example)")
    for r in rows:
        print(f"#{r['id']:<4} {r['list']:5} {r['kind']:7} {r['value']:40} {r['mailbox'] or 'system-wide'}"
              + (f"  ({r['note']})" if r["note"] else ""))
    return 0


def cmd_senders_add(args: argparse.Namespace) -> int:
    app = App.from_env()
    values = {"list": args.list, "kind": args.kind, "value": args.value, "note": args.note}
    if args.mailbox_id is not None:
        values["mailbox_id"] = args.mailbox_id
    with transaction(app.pool) as conn:
        entry = sender_admin.get(conn, sender_admin.add(conn, values, _by(args)))
    print(f"#{entry['id']} {entry['kind']} {entry['value']} is on the {entry['list']} list"
          f" ({entry['mailbox'] or 'system-wide'})")
    return 0


def cmd_senders_remove(args: argparse.Namespace) -> int:
    app = App.from_env()
    with transaction(app.pool) as conn:
        gone = sender_admin.remove(conn, args.id)
    print(f"{gone['kind']} {gone['value']} removed from the {gone['list']} list")
    return 0


# ---- spam and held mail --------------------------------------------------------------------


def _register_spam(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("spam", help="spam requests, held mail, thresholds, rspamd's health")
    ssub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    a = ssub.add_parser("list", help="requests in the spam state, newest first")
    a.add_argument("--limit", default="100")
    a.add_argument("--json", action="store_true")
    a.set_defaults(func=cmd_spam_list)
    for name, helptext in (("release", "not spam: a normal request; its auto-reply if still due; rspamd learns"),
                           ("mark", "spam: into the spam state; rspamd learns"),
                           ("delete", "delete a spam request (its raw mail stays)")):
        a = ssub.add_parser(name, help=helptext)
        a.add_argument("id", type=int, metavar="REQUEST_ID")
        a.add_argument("--by", help="who decided (recorded; default: your user name)")
        a.set_defaults(func=cmd_spam_decide, decide=name)
    a = ssub.add_parser("held", help="mail that made no request: blocked senders, discarded by rules")
    a.add_argument("--all", action="store_true", help="include mail released already")
    a.add_argument("--limit", default="100")
    a.add_argument("--json", action="store_true")
    a.set_defaults(func=cmd_spam_held)
    a = ssub.add_parser("release-held", help="make held mail a request after all")
    a.add_argument("raw_id", type=int, metavar="RAW_ID")
    a.add_argument("--by", help="who decided (recorded; default: your user name)")
    a.set_defaults(func=cmd_spam_decide, decide="release_held")
    a = ssub.add_parser("threshold", help="a mailbox's spam threshold (rspamd's score), or none: rspamd decides")
    a.add_argument("mailbox_id", type=int, metavar="MAILBOX_ID")
    a.add_argument("value", metavar="SCORE|none")
    a.set_defaults(func=cmd_spam_threshold)
    a = ssub.add_parser("status", help="is rspamd checking every mail? (exit 1 when it is not)")
    a.add_argument("--json", action="store_true")
    a.set_defaults(func=cmd_spam_status)


def cmd_spam_list(args: argparse.Namespace) -> int:
    app = App.from_env()
    with app.pool.connection() as conn:
        rows = spam_admin.requests(conn, args.limit)
    if args.json:
        _dump(rows)
        return 0
    if not rows:
        print("no spam requests")
    for r in rows:
        print(f"#{r['id']:<6} {r['customer'] or '-':30} {r['subject'][:40]:40} {r['spam_reason'] or ''}")
    return 0


def cmd_spam_decide(args: argparse.Namespace) -> int:
    app = App.from_env()
    ref = args.raw_id if args.decide == "release_held" else args.id
    result = getattr(spam_admin, args.decide)(app, ref, _by(args))
    done = {"release": f"request {ref} released", "mark": f"request {ref} marked as spam",
            "delete": f"spam request {ref} deleted", "release_held": f"held mail {ref} released"}[args.decide]
    print(done + ("" if result["announced"] else "; the stages are told within a minute (the broker did not"
                                                 " answer now)"))
    for t in result["taught"]:
        state = {True: "rspamd learned it", False: "rspamd did not learn it", None: "rspamd is off"}[t["learned"]]
        print(f"  {state}: {t['outcome']}")
    return 0


def cmd_spam_held(args: argparse.Namespace) -> int:
    app = App.from_env()
    with app.pool.connection() as conn:
        rows = spam_admin.held(conn, released=args.all, limit=args.limit)
    if args.json:
        _dump(rows)
        return 0
    if not rows:
        print("no held mail")
    for r in rows:
        state = f"released by {r['released_by']} -> #{r['request_id']}" if r["released_at"] else r["kind"]
        print(f"{r['raw_id']:>7}  {r['from_address'] or '-':30} {(r['subject'] or '')[:35]:35} {state}: {r['reason']}")
    return 0


def cmd_spam_threshold(args: argparse.Namespace) -> int:
    app = App.from_env()
    with transaction(app.pool) as conn:
        row = spam_admin.set_threshold(conn, args.mailbox_id, args.value)
    value = row["spam_threshold"]
    print(f"mailbox {row['address']}: " + (f"spam at a score of {value:g} or more" if value is not None
                                           else "rspamd's own verdict decides"))
    return 0


def cmd_spam_status(args: argparse.Namespace) -> int:
    app = App.from_env()
    with app.pool.connection() as conn:
        health = spam_admin.health(conn, app)
    if args.json:
        _dump(health)
    else:
        print(health["summary"])
    return 1 if health["needs_attention"] else 0
