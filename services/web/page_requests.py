"""The request pages: the filtered list, and one request with its conversation and outgoing mail."""

from __future__ import annotations

from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import Response

from services.admin import categories
from services.admin import mailboxes as mailbox_admin
from services.admin import requests as request_admin
from services.admin.errors import InvalidSetting
from services.web.context import Ctx
from services.web.page_kit import Form, done_at, render

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


@router.get("/requests/{request_id}")
def request_page(request: Request, request_id: int, c: Ctx) -> Response:
    with c.tx() as conn:
        found = request_admin.detail(conn, request_id)
        cats = categories.list_all(conn)
    return render(request, "request.html", r=found, categories=cats, errors={})


@router.post("/requests/{request_id}/category")
def request_category(request: Request, request_id: int, form: Form, c: Ctx) -> Response:
    try:
        with c.tx() as conn:
            request_admin.detail(conn, request_id)  # 404 first
            categories.move_requests(conn, [request_id], form.get("category_id") or None)
    except InvalidSetting as exc:
        with c.tx() as conn:
            found = request_admin.detail(conn, request_id)
            cats = categories.list_all(conn)
        return render(request, "request.html", 422, r=found, categories=cats, errors=exc.errors)
    return done_at(f"/requests/{request_id}", "Category changed.")
