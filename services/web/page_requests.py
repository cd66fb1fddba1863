"""The request pages: the filtered list, and one request with its conversation, outgoing mail and an answer.

The answer form (Cc prefilled with the conversation's other people, a
preview of exactly what will be sent) goes through services/admin/replies.py
like `deskmail requests reply` and POST /api/v1/requests/{id}/replies.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import Response

from services.admin import categories, replies
from services.admin import mailboxes as mailbox_admin
from services.admin import requests as request_admin
from services.admin.errors import InvalidSetting
from services.web.context import Ctx, WebContext
from services.web.page_kit import Form, done_at, render, user_of

router = APIRouter()


@router.get("/requests")
def request_list(request: Request, c: Ctx) -> Response:
    raw = {k: request.query_params.get(k) for k in request_admin.FILTERS}
    errors: dict[str, str] = {}
    try:
        filters = request_admin.parse_filters(raw)
    except InvalidSetting as exc:
        errors = exc.errors
        filters = request_admin.parse_filters({})
    with c.tx() as conn:
        found = request_admin.page(conn, filters)
        boxes = mailbox_admin.list_all(conn)
        cats = categories.list_all(conn)
    keep = {k: v for k, v in raw.items() if v and k != "cursor"}
    older = f"/requests?{urlencode({**keep, 'cursor': found['next_cursor']})}" if found["next_cursor"] else None
    return render(request, "requests.html", 422 if errors else 200, page=found, filters=raw, errors=errors,
                  mailboxes=boxes, categories=cats, older=older)


def _request_page(request: Request, c: WebContext, request_id: int, http_status: int = 200, *,
                  errors: dict[str, str] | None = None, reply: dict[str, str] | None = None,
                  preview: dict[str, Any] | None = None) -> Response:
    with c.tx() as conn:
        found = request_admin.detail(conn, request_id)
        cats = categories.list_all(conn)
    if reply is None:  # the form as it opens: the conversation's other people in Cc, the agent is who is in
        reply = {"agent": user_of(request), "cc": ", ".join(found["reply"]["cc"]), "body": ""}
    return render(request, "request.html", http_status, r=found, categories=cats, errors=errors or {},
                  reply=reply, preview=preview)


@router.get("/requests/{request_id}")
def request_page(request: Request, request_id: int, c: Ctx) -> Response:
    return _request_page(request, c, request_id)


@router.post("/requests/{request_id}/category")
def request_category(request: Request, request_id: int, form: Form, c: Ctx) -> Response:
    try:
        with c.tx() as conn:
            request_admin.detail(conn, request_id)  # 404 first
            categories.move_requests(conn, [request_id], form.get("category_id") or None)
    except InvalidSetting as exc:
        return _request_page(request, c, request_id, 422, errors=exc.errors)
    return done_at(f"/requests/{request_id}", "Category changed.")


@router.post("/requests/{request_id}/reply")
def request_reply(request: Request, request_id: int, form: Form, c: Ctx) -> Response:
    """Preview (the reply exactly as it would go out) or send; the same function as the CLI and the API."""
    values = {k: form.get(k, "") for k in ("agent", "body", "cc")}
    try:
        with c.tx() as conn:
            if form.get("action") == "send":
                queued = replies.send(conn, request_id, values)
            else:
                shown = replies.preview(conn, request_id, values)
                return _request_page(request, c, request_id, reply=values, preview=shown)
    except InvalidSetting as exc:
        return _request_page(request, c, request_id, 422, errors=exc.errors, reply=values)
    note = replies.announce(c.core, request_id, queued["outgoing_id"])
    to = ", ".join([queued["to"], *queued["cc"]])
    return done_at(f"/requests/{request_id}", f"Reply to {to} queued" + (f"; {note}." if note else
                                                                        "; it is sent within seconds."))
