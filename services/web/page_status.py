"""The status page (home): queues, mailboxes' health, dead letters to replay or discard."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from services.admin import operations
from services.admin.status import age_text
from services.web.context import Ctx
from services.web.page_kit import Form, done_at, render, user_of

router = APIRouter()


@router.get("/")
def home(request: Request, c: Ctx) -> Response:
    status = operations.status(c.core)
    letters = operations.dead_letters(c.core) if any(
        q["kind"] == "dead" and q["messages"] for q in status["queues"]) else []
    try:
        with c.tx() as conn:
            discarded = operations.discarded(conn, 5)
    except Exception:  # noqa: BLE001 - the database is down: the status above already says so
        discarded = None
    return render(request, "status.html", status=status, letters=letters, discarded=discarded, age_text=age_text)


@router.post("/dead-letters/{letter_id}/replay")
def replay_letter(letter_id: str, c: Ctx) -> Response:
    done = operations.replay(c.core, [letter_id])
    return done_at("/", f"{done['count']} dead letter(s) replayed")


@router.post("/dead-letters/replay")
def replay_letters(form: Form, c: Ctx) -> Response:
    done = operations.replay(c.core, None, form.get("stage") or None)
    return done_at("/", f"{done['count']} dead letter(s) replayed")


@router.post("/dead-letters/{letter_id}/discard")
def discard_letter(request: Request, letter_id: str, form: Form, c: Ctx) -> Response:
    done = operations.discard(c.core, [letter_id], None, form.get("reason"), f"{user_of(request)} (web)")
    return done_at("/", f"{done['count']} dead letter(s) discarded")
