"""/api/v1 status and dead letters: what an operator watches, through services/admin/operations.py."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends

from services.admin import operations
from services.web.context import Ctx
from services.web.schemas import (
    DeadLetterOut,
    DiscardedOut,
    DiscardIn,
    Handled,
    ReplayIn,
    StatusOut,
)
from services.web.security import Principal, principal

router = APIRouter(prefix="/api/v1")


@router.get("/status", response_model=StatusOut, tags=["status"],
            summary="Per stage: queue depth, consumers, work waiting and its age, oldest dead letter;"
                    " per mailbox: its health")
def get_status(c: Ctx) -> dict[str, Any]:
    return operations.status(c.core)


@router.get("/dead-letters", response_model=list[DeadLetterOut], tags=["dead letters"],
            summary="Messages a stage gave up on, oldest first")
def list_dead(c: Ctx, stage: str | None = None) -> list[dict[str, Any]]:
    return operations.dead_letters(c.core, stage)


@router.get("/dead-letters/discarded", response_model=list[DiscardedOut], tags=["dead letters"],
            summary="Dead letters discarded so far, newest first: what, when, by whom and why")
def list_discarded(c: Ctx, limit: int = 50) -> list[dict[str, Any]]:
    with c.tx() as conn:
        return operations.discarded(conn, limit)


@router.get("/dead-letters/{letter_id}", response_model=DeadLetterOut, tags=["dead letters"],
            summary="One dead letter")
def show_dead(letter_id: str, c: Ctx) -> dict[str, Any]:
    return operations.dead_letter(c.core, letter_id)


@router.post("/dead-letters/{letter_id}/replay", response_model=Handled, tags=["dead letters"],
             summary="Send one dead letter back to its stage")
def replay_one(letter_id: str, c: Ctx) -> dict[str, Any]:
    return operations.replay(c.core, [letter_id])


@router.post("/dead-letters/replay", response_model=Handled, tags=["dead letters"],
             summary="Send a filtered set of dead letters back (by stage and/or ids)")
def replay_many(body: ReplayIn, c: Ctx) -> dict[str, Any]:
    return operations.replay(c.core, body.ids, body.stage)


@router.post("/dead-letters/{letter_id}/discard", response_model=Handled, tags=["dead letters"],
             summary="Give a dead letter up for good, saying why (recorded: GET /dead-letters/discarded)")
def discard_one(letter_id: str, body: DiscardIn, c: Ctx,
                who: Annotated[Principal, Depends(principal)]) -> dict[str, Any]:
    # The router's own principal dependency already ran: FastAPI hands back its cached answer.
    return operations.discard(c.core, [letter_id], None, body.reason, f"{who.user.username} (api)")
