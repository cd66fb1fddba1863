"""/api/v1/requests: what the pipeline made of the mail, page by page, each request in full, and answers."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Response

from services.admin import categories, replies
from services.admin import requests as request_admin
from services.web.context import Ctx
from services.web.schemas import (
    Queued,
    ReplyIn,
    ReplyPreview,
    RequestDetail,
    RequestPage,
    RequestPatch,
    body_of,
)
from services.web.security import Principal, principal

router = APIRouter(prefix="/api/v1", tags=["requests"])


@router.get("/requests", response_model=RequestPage,
            summary="Requests, newest first, one page at a time (pass next_cursor as cursor)")
def list_requests(c: Ctx, mailbox_id: str | None = None, category_id: str | None = None,
                  status: str | None = None, unparsed: str | None = None, customer: str | None = None,
                  spam: str | None = None, cursor: str | None = None, limit: str | None = None) -> dict[str, Any]:
    # Query values come in as text and are checked by the admin layer, so a
    # wrong one gets the same words here as on the page and in the CLI.
    filters = request_admin.parse_filters({"mailbox_id": mailbox_id, "category_id": category_id, "status": status,
                                           "unparsed": unparsed, "customer": customer, "spam": spam, "cursor": cursor,
                                           "limit": limit})
    with c.tx() as conn:
        return request_admin.page(conn, filters)


@router.get("/requests/{request_id}", response_model=RequestDetail,
            summary="A request with its people, conversation, attachments and outgoing mail (with why)")
def get_request(request_id: int, c: Ctx) -> dict[str, Any]:
    with c.tx() as conn:
        return request_admin.detail(conn, request_id)


@router.patch("/requests/{request_id}", response_model=RequestDetail,
              summary="File a request under another category (category_id; null: none)")
def update_request(request_id: int, body: RequestPatch, c: Ctx) -> dict[str, Any]:
    values = body_of(body)
    with c.tx() as conn:
        request_admin.detail(conn, request_id)  # 404 first
        if "category_id" in values:
            categories.move_requests(conn, [request_id], values["category_id"])
        return request_admin.detail(conn, request_id)


def _reply(body: ReplyIn, who: Principal) -> dict[str, Any]:
    return {"agent": who.user.username, **body_of(body)}


@router.post("/requests/{request_id}/replies", response_model=Queued, status_code=201,
             summary="Send a staff reply to the request's customer, the conversation's other people in Cc"
                     " unless cc says otherwise (queued, then sent by the replier)")
def reply(request_id: int, body: ReplyIn, c: Ctx, who: Annotated[Principal, Depends(principal)]) -> dict[str, Any]:
    with c.tx() as conn:
        queued = replies.send(conn, request_id, _reply(body, who))
    return {**queued, "note": replies.announce(c.core, request_id, queued["outgoing_id"])}


@router.post("/requests/{request_id}/replies/preview", response_model=ReplyPreview,
             summary="Exactly what a staff reply would be (From, To, Cc, Subject, bodies); nothing is queued")
def preview_reply(request_id: int, body: ReplyIn, c: Ctx,
                  who: Annotated[Principal, Depends(principal)]) -> dict[str, Any]:
    with c.tx() as conn:
        return replies.preview(conn, request_id, _reply(body, who))


RAW = {200: {"content": {"message/rfc822": {}}, "description": "the original message, as received"}}


@router.get("/requests/{request_id}/raw", response_class=Response, responses=RAW,
            summary="The original message of the request (its first mail, or ?raw_id=)")
def raw_message(request_id: int, c: Ctx, raw_id: int | None = None) -> Response:
    with c.tx() as conn:
        data = request_admin.raw_message(conn, request_id, raw_id)
    # A download, never rendered: the mail is the sender's content, not ours.
    return Response(data, media_type="message/rfc822", headers={
        "Content-Disposition": f'attachment; filename="request-{request_id}.eml"'})


@router.get("/requests/{request_id}/attachments/{attachment_id}", response_class=Response,
            responses={200: {"content": {"application/octet-stream": {}}}}, summary="An attachment's bytes")
def attachment(request_id: int, attachment_id: int, c: Ctx) -> Response:
    with c.tx() as conn:
        found = request_admin.attachment(conn, request_id, attachment_id)
    name = "".join(ch for ch in found["filename"] if ch.isalnum() or ch in "._- ") or "attachment"
    return Response(found["data"], media_type="application/octet-stream",
                    headers={"Content-Disposition": f'attachment; filename="{name}"'})
