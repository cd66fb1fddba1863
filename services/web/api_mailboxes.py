"""/api/v1/mailboxes: the seed page's mailboxes, their SMTP section, tests, test mail and recent polls."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Query, Response

from services.admin import mailboxes as mailbox_admin
from services.admin import probes
from services.web.context import Ctx
from services.web.schemas import (
    Folders,
    FromNamePreview,
    FromNamePreviewIn,
    MailboxIn,
    MailboxOut,
    Poll,
    TestMailIn,
    TestResult,
    body_of,
)

router = APIRouter(prefix="/api/v1", tags=["mailboxes"])
OptionalMailbox = Annotated[MailboxIn | None, Body()]


@router.get("/mailboxes", response_model=list[MailboxOut], summary="List mailboxes with their status")
def list_mailboxes(c: Ctx) -> list[dict[str, Any]]:
    with c.tx() as conn:
        return mailbox_admin.list_all(conn)


@router.post("/mailboxes", response_model=MailboxOut, status_code=201, summary="Add a mailbox")
def create_mailbox(body: MailboxIn, c: Ctx) -> dict[str, Any]:
    with c.tx() as conn:
        return mailbox_admin.view(conn, mailbox_admin.save(conn, c.keys, body_of(body)))


@router.get("/mailboxes/{mailbox_id}", response_model=MailboxOut, summary="One mailbox")
def get_mailbox(mailbox_id: int, c: Ctx) -> dict[str, Any]:
    with c.tx() as conn:
        return mailbox_admin.view(conn, mailbox_id)


@router.patch("/mailboxes/{mailbox_id}", response_model=MailboxOut,
              summary="Change a mailbox (only the fields sent; a blank password keeps the saved one)")
def update_mailbox(mailbox_id: int, body: MailboxIn, c: Ctx) -> dict[str, Any]:
    with c.tx() as conn:
        mailbox_admin.save(conn, c.keys, body_of(body), mailbox_id)
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


@router.post("/mailboxes/test", response_model=TestResult,
             summary="Test unsaved values: DNS, TCP, TLS/STARTTLS, login, folder, archive folder, SMTP login")
def test_unsaved(body: MailboxIn, c: Ctx) -> dict[str, Any]:
    return probes.test_mailbox(c.pool, c.keys, body_of(body))


@router.post("/mailboxes/{mailbox_id}/test", response_model=TestResult,
             summary="Test a saved mailbox, with any changes in the body applied (nothing is saved)")
def test_saved(mailbox_id: int, c: Ctx, body: OptionalMailbox = None) -> dict[str, Any]:
    return probes.test_mailbox(c.pool, c.keys, body_of(body), mailbox_id)


@router.post("/mailboxes/folders", response_model=Folders, summary="List the folders of unsaved values")
def folders_unsaved(body: MailboxIn, c: Ctx) -> dict[str, Any]:
    return probes.list_folders(c.pool, c.keys, body_of(body))


@router.post("/mailboxes/{mailbox_id}/folders", response_model=Folders,
             summary="List the folders of a saved mailbox, with any changes in the body applied")
def folders_saved(mailbox_id: int, c: Ctx, body: OptionalMailbox = None) -> dict[str, Any]:
    return probes.list_folders(c.pool, c.keys, body_of(body), mailbox_id)


@router.post("/mailboxes/test-mail", response_model=TestResult,
             summary="Send a test mail From unsaved values through their SMTP section (to test_to)")
def test_mail_unsaved(body: TestMailIn, c: Ctx) -> dict[str, Any]:
    values = body_of(body)
    return probes.send_test_mail(c.pool, c.keys, values, None, values.pop("test_to", None))


@router.post("/mailboxes/{mailbox_id}/test-mail", response_model=TestResult,
             summary="Send a test mail From a saved mailbox (changes in the body applied) to test_to")
def test_mail_saved(mailbox_id: int, c: Ctx, body: Annotated[TestMailIn | None, Body()] = None) -> dict[str, Any]:
    values = body_of(body)
    return probes.send_test_mail(c.pool, c.keys, values, mailbox_id, values.pop("test_to", None))


@router.get("/mailboxes/{mailbox_id}/polls", response_model=list[Poll],
            summary="Recent polls, newest first: when, outcome, messages imported and removed, the error")
def polls(mailbox_id: int, c: Ctx,
          limit: Annotated[int, Query(ge=1, le=mailbox_admin.KEEP_POLLS, description="how many (newest first)")] = 20,
          ) -> list[dict[str, Any]]:
    with c.tx() as conn:
        return mailbox_admin.recent_polls(conn, mailbox_id, limit)


@router.post("/preview/from-name", response_model=FromNamePreview,
             summary="The account name with its placeholders filled in, for a staff reply and an auto-reply")
def preview_from_name(body: FromNamePreviewIn) -> dict[str, Any]:
    return mailbox_admin.preview_from_name(body.from_name)
