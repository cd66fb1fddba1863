"""/api/v1/mailboxes: the seed page's mailboxes, their connection tests and recent polls."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Query, Response

from services.admin import mailboxes as mailbox_admin
from services.web.context import Ctx, WebContext
from services.web.schemas import (
    Folders,
    FromNamePreview,
    FromNamePreviewIn,
    MailboxIn,
    MailboxOut,
    Poll,
    TestResult,
)
from shared import smtp_settings
from shared.mailboxes import KEEP_POLLS
from shared.oauth2 import login as oauth_login

router = APIRouter(prefix="/api/v1", tags=["mailboxes"])
OptionalMailbox = Annotated[MailboxIn | None, Body()]


def _values(body: MailboxIn | None) -> dict[str, Any]:
    return body.model_dump(exclude_unset=True) if body is not None else {}


@router.get("/mailboxes", response_model=list[MailboxOut], summary="List mailboxes with their status")
def list_mailboxes(c: Ctx) -> list[dict[str, Any]]:
    with c.tx() as conn:
        return mailbox_admin.list_all(conn)


@router.post("/mailboxes", response_model=MailboxOut, status_code=201, summary="Add a mailbox")
def create_mailbox(body: MailboxIn, c: Ctx) -> dict[str, Any]:
    with c.tx() as conn:
        mailbox_id = mailbox_admin.save(conn, c.keys, _values(body))
        return mailbox_admin.view(conn, mailbox_id)


@router.get("/mailboxes/{mailbox_id}", response_model=MailboxOut, summary="One mailbox")
def get_mailbox(mailbox_id: int, c: Ctx) -> dict[str, Any]:
    with c.tx() as conn:
        return mailbox_admin.view(conn, mailbox_id)


@router.patch("/mailboxes/{mailbox_id}", response_model=MailboxOut,
              summary="Change a mailbox (only the fields sent; a blank password keeps the saved one)")
def update_mailbox(mailbox_id: int, body: MailboxIn, c: Ctx) -> dict[str, Any]:
    with c.tx() as conn:
        mailbox_admin.save(conn, c.keys, _values(body), mailbox_id)
        return mailbox_admin.view(conn, mailbox_id)


@router.delete("/mailboxes/{mailbox_id}", status_code=204, response_class=Response,
               summary="Remove a mailbox (its requests stay)")
def delete_mailbox(mailbox_id: int, c: Ctx) -> Response:
    with c.tx() as conn:
        mailbox_admin.remove(conn, mailbox_id)
    return Response(status_code=204)


@router.post("/mailboxes/{mailbox_id}/enable", response_model=MailboxOut, summary="Start polling")
def enable_mailbox(mailbox_id: int, c: Ctx) -> dict[str, Any]:
    with c.tx() as conn:
        mailbox_admin.set_enabled(conn, mailbox_id, True)
        return mailbox_admin.view(conn, mailbox_id)


@router.post("/mailboxes/{mailbox_id}/disable", response_model=MailboxOut, summary="Stop polling")
def disable_mailbox(mailbox_id: int, c: Ctx) -> dict[str, Any]:
    with c.tx() as conn:
        mailbox_admin.set_enabled(conn, mailbox_id, False)
        return mailbox_admin.view(conn, mailbox_id)


def run_test(c: WebContext, values: dict[str, Any], mailbox_id: int | None) -> dict[str, Any]:
    """Test values (over the saved ones when mailbox_id is given); nothing is saved."""
    with c.tx() as conn:
        mailbox = mailbox_admin.unsaved(conn, c.keys, values, mailbox_id)
        smtp = oauth_login.attach_smtp(c.pool, c.keys, conn,
                                       smtp_settings.for_mailbox(conn, c.keys, mailbox.smtp_id))
    mailbox_admin.attach_oauth(c.pool, c.keys, mailbox, values, mailbox_id)  # OAuth2: token steps too
    steps = [s.__dict__ for s in mailbox_admin.probe(mailbox, smtp)]
    return {"ok": all(s["ok"] for s in steps), "steps": steps}


@router.post("/mailboxes/test", response_model=TestResult,
             summary="Test unsaved values: DNS, TCP, TLS/STARTTLS, login, folder, archive folder, SMTP login")
def test_unsaved(body: MailboxIn, c: Ctx) -> dict[str, Any]:
    return run_test(c, _values(body), None)


@router.post("/mailboxes/{mailbox_id}/test", response_model=TestResult,
             summary="Test a saved mailbox, with any changes in the body applied (nothing is saved)")
def test_saved(mailbox_id: int, c: Ctx, body: OptionalMailbox = None) -> dict[str, Any]:
    return run_test(c, _values(body), mailbox_id)


def run_folders(c: WebContext, values: dict[str, Any], mailbox_id: int | None) -> dict[str, Any]:
    with c.tx() as conn:
        mailbox = mailbox_admin.unsaved(conn, c.keys, values, mailbox_id)
    mailbox_admin.attach_oauth(c.pool, c.keys, mailbox, values, mailbox_id)
    return mailbox_admin.folders(mailbox)


@router.post("/mailboxes/folders", response_model=Folders, summary="List the folders of unsaved values")
def folders_unsaved(body: MailboxIn, c: Ctx) -> dict[str, Any]:
    return run_folders(c, _values(body), None)


@router.post("/mailboxes/{mailbox_id}/folders", response_model=Folders,
             summary="List the folders of a saved mailbox, with any changes in the body applied")
def folders_saved(mailbox_id: int, c: Ctx, body: OptionalMailbox = None) -> dict[str, Any]:
    return run_folders(c, _values(body), mailbox_id)


@router.get("/mailboxes/{mailbox_id}/polls", response_model=list[Poll],
            summary="Recent polls, newest first: when, outcome, messages imported and removed, the error")
def polls(mailbox_id: int, c: Ctx,
          limit: Annotated[int, Query(ge=1, le=KEEP_POLLS, description="how many (newest first)")] = 20,
          ) -> list[dict[str, Any]]:
    with c.tx() as conn:
        return mailbox_admin.recent_polls(conn, mailbox_id, limit)


@router.post("/preview/from-name", response_model=FromNamePreview,
             summary="The account name with its placeholders filled in, for a staff reply and an auto-reply")
def preview_from_name(body: FromNamePreviewIn) -> dict[str, Any]:
    return mailbox_admin.preview_from_name(body.from_name)
