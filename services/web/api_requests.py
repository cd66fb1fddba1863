"""/api/v1/requests: what the pipeline made of the mail, page by page, and each request in full."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response

from services.admin import requests as request_views
from services.web.context import Ctx
from services.web.schemas import RequestDetail, RequestPage

router = APIRouter(prefix="/api/v1", tags=["requests"])


@router.get("/requests", response_model=RequestPage,
            summary="Requests, newest first, one page at a time (pass next_cursor as cursor)")
def list_requests(c: Ctx, mailbox_id: str | None = None, category_id: str | None = None,
                  status: str | None = None, unparsed: str | None = None, cursor: str | None = None,
                  limit: str | None = None) -> dict[str, Any]:
    # Query values come in as text and are checked by the service layer, so a
    # wrong one gets the same words here as on the page.
    filters = request_views.parse_filters({"mailbox_id": mailbox_id, "category_id": category_id,
                                           "status": status, "unparsed": unparsed, "cursor": cursor,
                                           "limit": limit})
    with c.tx() as conn:
        return request_views.page(conn, **filters)


@router.get("/requests/{request_id}", response_model=RequestDetail,
            summary="A request with its conversation, attachments and outgoing mail (with why)")
def get_request(request_id: int, c: Ctx) -> dict[str, Any]:
    with c.tx() as conn:
        return request_views.detail(conn, request_id)


RAW = {200: {"content": {"message/rfc822": {}}, "description": "the original message, as received"}}


@router.get("/requests/{request_id}/raw", response_class=Response, responses=RAW,
            summary="The original message of the request (its first mail, or ?raw_id=)")
def raw_message(request_id: int, c: Ctx, raw_id: int | None = None) -> Response:
    with c.tx() as conn:
        data = request_views.raw_message(conn, request_id, raw_id)
    # A download, never rendered: the mail is the sender's content, not ours.
    return Response(data, media_type="message/rfc822", headers={
        "Content-Disposition": f'attachment; filename="request-{request_id}.eml"'})


@router.get("/requests/{request_id}/attachments/{attachment_id}", response_class=Response,
            responses={200: {"content": {"application/octet-stream": {}}}}, summary="An attachment's bytes")
def attachment(request_id: int, attachment_id: int, c: Ctx) -> Response:
    with c.tx() as conn:
        found = request_views.attachment(conn, request_id, attachment_id)
    name = "".join(ch for ch in found["filename"] if ch.isalnum() or ch in "._- ") or "attachment"
    return Response(found["data"], media_type="application/octet-stream",
                    headers={"Content-Disposition": f'attachment; filename="{name}"'})
