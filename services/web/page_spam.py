"""The pages for mail rules, sender lists, spam requests and held mail, through services/admin.

Rules are edited as text, a condition or an action per line, in the same
one-line form the CLI and the API take ("subject contains invoice",
"category Billing"), so the three accept and refuse the same values alike.
The rule form's Dry run button shows what the rule would have done to the
chosen mailbox's last mails, without saving it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from services.admin import mailboxes as mailbox_admin
from services.admin import rules as rule_admin
from services.admin import senders as sender_admin
from services.admin import spam as spam_admin
from services.admin.errors import Conflict, InvalidSetting
from services.web.context import Ctx, WebContext
from services.web.page_kit import Form, done_at, render, user_of

router = APIRouter()

RULE_FORM = ("name", "mailbox_id", "position", "match", "conditions", "actions", "enabled")


def _rule_values(form: dict[str, str]) -> dict[str, Any]:
    values: dict[str, Any] = {k: form[k] for k in RULE_FORM if k in form and k != "enabled"}
    values["enabled"] = "true" if form.get("enabled") else "false"  # an unticked box sends nothing
    return values


def _rules_page(request: Request, c: WebContext, *, values: dict[str, Any] | None = None,
                errors: dict[str, str] | None = None, dry: list[dict[str, Any]] | None = None,
                editing: int | None = None, http_status: int = 200) -> Response:
    with c.tx() as conn:
        rows = rule_admin.list_all(conn)
        boxes = mailbox_admin.list_all(conn)
    return render(request, "rules.html", http_status, rows=rows, boxes=boxes, values=values or {},
                  errors=errors or {}, dry=dry, editing=editing)


@router.get("/rules")
def rules_page(request: Request, c: Ctx) -> Response:
    return _rules_page(request, c)


@router.get("/rules/{rule_id}")
def rule_edit(request: Request, rule_id: int, c: Ctx) -> Response:
    with c.tx() as conn:
        rule = rule_admin.get(conn, rule_id)
    values = {**rule, "conditions": "\n".join(rule["condition_lines"]),
              "actions": "\n".join(rule["action_lines"]), "mailbox_id": rule["mailbox_id"] or ""}
    return _rules_page(request, c, values=values, editing=rule_id)


def _rule_post(request: Request, c: WebContext, form: dict[str, str], rule_id: int | None) -> Response:
    values = _rule_values(form)
    try:
        if form.get("action") == "dry_run":
            with c.tx() as conn:
                dry = rule_admin.dry_run(conn, values, form.get("mailbox_id"), form.get("last") or "50")
            return _rules_page(request, c, values={**form}, dry=dry, editing=rule_id)
        with c.tx() as conn:
            saved = rule_admin.save(conn, values, rule_id)
            name = rule_admin.get(conn, saved)["name"]
        return done_at("/rules", f"Rule {name} saved.")
    except InvalidSetting as exc:
        return _rules_page(request, c, values={**form}, errors=exc.errors, editing=rule_id, http_status=422)
    except Conflict as exc:
        return _rules_page(request, c, values={**form}, errors={exc.field or "form": str(exc)}, editing=rule_id,
                           http_status=409)


@router.post("/rules")
def rule_create(request: Request, form: Form, c: Ctx) -> Response:
    return _rule_post(request, c, form, None)


@router.post("/rules/{rule_id}")
def rule_update(request: Request, rule_id: int, form: Form, c: Ctx) -> Response:
    with c.tx() as conn:
        rule_admin.get(conn, rule_id)  # 404 before anything else
    return _rule_post(request, c, form, rule_id)


@router.post("/rules/{rule_id}/delete")
def rule_delete(request: Request, rule_id: int, c: Ctx) -> Response:
    with c.tx() as conn:
        gone = rule_admin.remove(conn, rule_id)
    return done_at("/rules", f"Rule {gone['name']} deleted.")


# ---- sender lists ------------------------------------------------------------------------

def _senders_page(request: Request, c: WebContext, values: dict[str, str] | None = None,
                  errors: dict[str, str] | None = None, http_status: int = 200) -> Response:
    with c.tx() as conn:
        rows = sender_admin.list_all(conn)
        boxes = mailbox_admin.list_all(conn)
    return render(request, "senders.html", http_status, rows=rows, boxes=boxes, values=values or {},
                  errors=errors or {})


@router.get("/senders")
def senders_page(request: Request, c: Ctx) -> Response:
    return _senders_page(request, c)


@router.post("/senders")
def sender_add(request: Request, form: Form, c: Ctx) -> Response:
    values = {k: form[k] for k in sender_admin.FIELDS if k in form}
    try:
        with c.tx() as conn:
            entry = sender_admin.get(conn, sender_admin.add(conn, values, user_of(request)))
        return done_at("/senders", f"{entry['kind'].capitalize()} {entry['value']} is on the {entry['list']} list.")
    except InvalidSetting as exc:
        return _senders_page(request, c, form, exc.errors, 422)
    except Conflict as exc:
        return _senders_page(request, c, form, {exc.field or "form": str(exc)}, 409)


@router.post("/senders/{entry_id}/delete")
def sender_delete(request: Request, entry_id: int, c: Ctx) -> Response:
    with c.tx() as conn:
        gone = sender_admin.remove(conn, entry_id)
    return done_at("/senders", f"{gone['kind'].capitalize()} {gone['value']} removed from the {gone['list']} list.")


# ---- spam and held mail -------------------------------------------------------------------

def _spam_page(request: Request, c: WebContext, errors: dict[str, str] | None = None,
               http_status: int = 200) -> Response:
    with c.tx() as conn:
        spam = spam_admin.requests(conn)
        held = spam_admin.held(conn)
        health = spam_admin.health(conn, c.core)
        boxes = spam_admin.thresholds(conn)
    return render(request, "spam.html", http_status, spam=spam, held=held, health=health, boxes=boxes,
                  errors=errors or {})


@router.get("/spam")
def spam_page(request: Request, c: Ctx) -> Response:
    return _spam_page(request, c)


def _decision(request: Request, c: WebContext, action: Callable[..., dict[str, Any]], ref: int, done: str
              ) -> Response:
    try:
        result = action(c.core, ref, user_of(request))
    except Conflict as exc:
        return _spam_page(request, c, {"form": str(exc)}, 409)
    taught = "; ".join(t["outcome"] for t in result["taught"])
    return done_at("/spam", done + (f" rspamd: {taught}." if taught else ""))


@router.post("/spam/{request_id}/release")
def spam_release(request: Request, request_id: int, c: Ctx) -> Response:
    return _decision(request, c, spam_admin.release, request_id, f"Request {request_id} released.")


@router.post("/spam/{request_id}/delete")
def spam_delete(request: Request, request_id: int, c: Ctx) -> Response:
    return _decision(request, c, spam_admin.delete, request_id, f"Spam request {request_id} deleted.")


@router.post("/requests/{request_id}/spam")
def spam_mark(request: Request, request_id: int, c: Ctx) -> Response:
    return _decision(request, c, spam_admin.mark, request_id, f"Request {request_id} marked as spam.")


@router.post("/held/{raw_id}/release")
def held_release(request: Request, raw_id: int, c: Ctx) -> Response:
    return _decision(request, c, spam_admin.release_held, raw_id, f"Held mail {raw_id} released.")


@router.post("/spam/threshold")
def spam_threshold(request: Request, form: Form, c: Ctx) -> Response:
    try:
        with c.tx() as conn:
            row = spam_admin.set_threshold(conn, int(form.get("mailbox_id") or 0), form.get("spam_threshold"))
    except InvalidSetting as exc:
        return _spam_page(request, c, exc.errors, 422)
    value = row["spam_threshold"]
    return done_at("/spam", f"Mailbox {row['address']}: " + (f"spam at a score of {value:g} or more."
                                                              if value is not None else "rspamd decides."))
