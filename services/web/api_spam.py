"""/api/v1 mail rules, sender lists, spam requests and held mail, through services/admin."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Response

from services.admin import rules as rule_admin
from services.admin import senders as sender_admin
from services.admin import spam as spam_admin
from services.web.context import Ctx
from services.web.schemas import (
    DryRunIn,
    DryRunRow,
    HeldMail,
    RuleIn,
    RuleOut,
    SenderIn,
    SenderOut,
    SpamDecision,
    SpamHealth,
    SpamRequest,
    ThresholdIn,
    ThresholdOut,
    body_of,
)
from services.web.security import Principal, principal

router = APIRouter(prefix="/api/v1")
Who = Annotated[Principal, Depends(principal)]


# ---- rules ------------------------------------------------------------------------

@router.get("/rules", response_model=list[RuleOut], tags=["rules"],
            summary="Mail rules in the order they run (system-wide first); ?mailbox_id= one scope")
def list_rules(c: Ctx, mailbox_id: str | None = None) -> list[dict[str, Any]]:
    with c.tx() as conn:
        return rule_admin.list_all(conn, "all" if mailbox_id is None else mailbox_id)


@router.post("/rules", response_model=RuleOut, status_code=201, tags=["rules"], summary="Add a mail rule")
def create_rule(body: RuleIn, c: Ctx) -> dict[str, Any]:
    with c.tx() as conn:
        return rule_admin.get(conn, rule_admin.save(conn, body_of(body)))


@router.post("/rules/dry-run", response_model=list[DryRunRow], tags=["rules"],
             summary="What a rule would have done to a mailbox's last mails (mailbox_id, last); saves nothing")
def dry_run(body: DryRunIn, c: Ctx) -> list[dict[str, Any]]:
    values = body_of(body)
    mailbox_id, last = values.pop("mailbox_id", None), values.pop("last", 50)
    with c.tx() as conn:
        return rule_admin.dry_run(conn, values, mailbox_id, last)


@router.get("/rules/{rule_id}", response_model=RuleOut, tags=["rules"], summary="One mail rule")
def get_rule(rule_id: int, c: Ctx) -> dict[str, Any]:
    with c.tx() as conn:
        return rule_admin.get(conn, rule_id)


@router.patch("/rules/{rule_id}", response_model=RuleOut, tags=["rules"], summary="Change a mail rule")
def update_rule(rule_id: int, body: RuleIn, c: Ctx) -> dict[str, Any]:
    with c.tx() as conn:
        rule_admin.save(conn, body_of(body), rule_id)
        return rule_admin.get(conn, rule_id)


@router.delete("/rules/{rule_id}", status_code=204, response_class=Response, tags=["rules"],
               summary="Remove a mail rule")
def delete_rule(rule_id: int, c: Ctx) -> Response:
    with c.tx() as conn:
        rule_admin.remove(conn, rule_id)
    return Response(status_code=204)


# ---- sender lists ---------------------------------------------------------------------

@router.get("/senders", response_model=list[SenderOut], tags=["senders"],
            summary="Allow and block entries; ?mailbox_id= one scope ('system': system-wide)")
def list_senders(c: Ctx, mailbox_id: str | None = None) -> list[dict[str, Any]]:
    with c.tx() as conn:
        return sender_admin.list_all(conn, "all" if mailbox_id is None else mailbox_id)


@router.post("/senders", response_model=SenderOut, status_code=201, tags=["senders"],
             summary="Allow or block a sender")
def add_sender(body: SenderIn, c: Ctx, who: Who) -> dict[str, Any]:
    with c.tx() as conn:
        return sender_admin.get(conn, sender_admin.add(conn, body_of(body), who.user.username))


@router.delete("/senders/{entry_id}", status_code=204, response_class=Response, tags=["senders"],
               summary="Remove an allow or block entry")
def remove_sender(entry_id: int, c: Ctx) -> Response:
    with c.tx() as conn:
        sender_admin.remove(conn, entry_id)
    return Response(status_code=204)


# ---- spam and held mail -------------------------------------------------------------------

@router.get("/spam", response_model=list[SpamRequest], tags=["spam"],
            summary="Requests in the spam state, newest first")
def spam_requests(c: Ctx, limit: str = "100") -> list[dict[str, Any]]:
    with c.tx() as conn:
        return spam_admin.requests(conn, limit)


@router.get("/spam/status", response_model=SpamHealth, tags=["spam"],
            summary="Is rspamd checking every mail? (mail it did not check in the last hour)")
def spam_status(c: Ctx) -> dict[str, Any]:
    with c.tx() as conn:
        return spam_admin.health(conn, c.core)


@router.post("/requests/{request_id}/release", response_model=SpamDecision, tags=["spam"],
             summary="Not spam: a normal request, its auto-reply if still due; rspamd learns it")
def release(request_id: int, c: Ctx, who: Who) -> dict[str, Any]:
    return spam_admin.release(c.core, request_id, who.user.username)


@router.post("/requests/{request_id}/spam", response_model=SpamDecision, tags=["spam"],
             summary="Spam: into the spam state; rspamd learns it")
def mark_spam(request_id: int, c: Ctx, who: Who) -> dict[str, Any]:
    return spam_admin.mark(c.core, request_id, who.user.username)


@router.delete("/spam/{request_id}", response_model=SpamDecision, tags=["spam"],
               summary="Delete a spam request (its raw mail stays); 409 for a request not in the spam state")
def delete_spam(request_id: int, c: Ctx, who: Who) -> dict[str, Any]:
    return spam_admin.delete(c.core, request_id, who.user.username)


@router.get("/held", response_model=list[HeldMail], tags=["spam"],
            summary="Mail that made no request (blocked sender, discarded by a rule); ?released=true: all")
def held(c: Ctx, released: bool = False, limit: str = "100") -> list[dict[str, Any]]:
    with c.tx() as conn:
        return spam_admin.held(conn, released=released, limit=limit)


@router.post("/held/{raw_id}/release", response_model=SpamDecision, tags=["spam"],
             summary="Make held mail a request after all")
def release_held(raw_id: int, c: Ctx, who: Who) -> dict[str, Any]:
    return spam_admin.release_held(c.core, raw_id, who.user.username)


@router.put("/mailboxes/{mailbox_id}/spam-threshold", response_model=ThresholdOut, tags=["spam"],
            summary="A mailbox's spam threshold (rspamd's score); null: rspamd's own verdict")
def set_threshold(mailbox_id: int, body: ThresholdIn, c: Ctx) -> dict[str, Any]:
    with c.tx() as conn:
        return spam_admin.set_threshold(conn, mailbox_id, body_of(body).get("spam_threshold"))
