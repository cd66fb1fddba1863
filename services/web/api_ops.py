"""/api/v1 status and dead letters: what an operator watches and the messages that need a person."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from fastapi import APIRouter, Depends

from services.admin import dead_letters as dead_letter_admin
from services.admin import status as ops_status
from services.admin.errors import NotFound
from services.web.context import Ctx, WebContext
from services.web.schemas import (
    DeadLetterOut,
    DiscardedOut,
    DiscardIn,
    Handled,
    ReplayIn,
    StatusOut,
)
from services.web.security import Principal, principal
from shared import broker_admin
from shared.mailboxes import InvalidSetting

router = APIRouter(prefix="/api/v1")


def _age(failed_at: str) -> float | None:
    try:
        when = dt.datetime.strptime(failed_at, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.UTC)
    except ValueError:
        return None
    return max(0.0, (dt.datetime.now(dt.UTC) - when).total_seconds())


def letter_out(letter: broker_admin.DeadLetter) -> dict[str, Any]:
    return {"id": letter.id, "stage": letter.stage, "error": letter.error, "failed_at": letter.failed_at,
            "event_type": letter.event.type if letter.event else None,
            "ids": dict(letter.event.ids) if letter.event else {}, "event_error": letter.event_error}


def _stage(stage: Any) -> str | None:
    if stage in (None, ""):
        return None
    if stage not in broker_admin.STAGES:
        raise InvalidSetting({"stage": f"must be one of {', '.join(broker_admin.STAGES)}, not {stage!r}"})
    return str(stage)


def dead_letters(c: WebContext, stage: str | None = None, limit: int = 200) -> list[dict[str, Any]]:
    with c.broker() as conn:
        return [letter_out(x) for x in broker_admin.list_dead_letters(conn, c.topology, _stage(stage), limit)]


def status(c: WebContext) -> dict[str, Any]:
    """Queues (depth, consumers, age of the oldest waiting work or dead letter) and mailbox health.

    A work queue's age is its stage's backlog in the database (status.backlog);
    a dead-letter queue's is its oldest letter's failed-at header.
    """
    with c.broker() as conn:
        found = ops_status.collect(c.pool, conn, c.topology, window=0.0)
        oldest: dict[str, float] = {}
        if any(q.info.kind == "dead" and q.info.messages for q in found.queues):
            for letter in broker_admin.list_dead_letters(conn, c.topology, limit=500):
                age = _age(letter.failed_at)
                if age is not None:
                    oldest[letter.queue] = max(age, oldest.get(letter.queue, 0.0))
    return {
        "needs_attention": found.needs_attention,
        "problems": found.problems,
        "queues": [{"name": q.info.name, "stage": q.info.stage, "kind": q.info.kind,
                    "messages": q.info.messages, "consumers": q.info.consumers,
                    "waiting": q.backlog.waiting if q.backlog else None,
                    "oldest_age_seconds": (q.backlog.oldest_age_seconds if q.backlog
                                           else oldest.get(q.info.name)),
                    "problem": q.problem}
                   for q in found.queues],
        "mailboxes": [m.__dict__ for m in found.mailboxes],
    }


def replay(c: WebContext, ids: list[str] | None, stage: str | None) -> dict[str, Any]:
    with c.broker() as conn, c.broker() as publish_conn:
        done = broker_admin.replay(conn, publish_conn, c.topology, ids, _stage(stage))
    return {"count": len(done), "ids": [x.id for x in done]}


def discard(c: WebContext, letter_id: str, reason: Any, who: str) -> dict[str, Any]:
    """Give one dead letter up; the service records it (what, who, why) before the broker removes it."""
    dead_letter_admin.check_reason(reason)  # before touching the broker: same words as the CLI
    with c.broker() as conn:
        done = dead_letter_admin.discard(c.pool, conn, c.topology, [letter_id], None, reason, who)
    if not done:
        raise NotFound(f"no dead letter {letter_id}")
    return {"count": len(done), "ids": [x.id for x in done]}


def discarded(c: WebContext, limit: int = 50) -> list[dict[str, Any]]:
    with c.pool.connection() as conn:
        return dead_letter_admin.discarded(conn, limit)


@router.get("/status", response_model=StatusOut, tags=["status"],
            summary="Per stage: queue depth, consumers, work waiting and its age, oldest dead letter;"
                    " per mailbox: its health")
def get_status(c: Ctx) -> dict[str, Any]:
    return status(c)


@router.get("/dead-letters", response_model=list[DeadLetterOut], tags=["dead letters"],
            summary="Messages a stage gave up on, oldest first")
def list_dead(c: Ctx, stage: str | None = None) -> list[dict[str, Any]]:
    return dead_letters(c, stage)


@router.get("/dead-letters/discarded", response_model=list[DiscardedOut], tags=["dead letters"],
            summary="Dead letters discarded so far, newest first: what, when, by whom and why")
def list_discarded(c: Ctx, limit: int = 50) -> list[dict[str, Any]]:
    if limit < 1 or limit > 1000:
        raise InvalidSetting({"limit": "must be between 1 and 1000"})
    return discarded(c, limit)


@router.get("/dead-letters/{letter_id}", response_model=DeadLetterOut, tags=["dead letters"],
            summary="One dead letter")
def show_dead(letter_id: str, c: Ctx) -> dict[str, Any]:
    with c.broker() as conn:
        letter = broker_admin.find_dead_letter(conn, c.topology, letter_id)
    if letter is None:
        raise NotFound(f"no dead letter {letter_id}")
    return letter_out(letter)


@router.post("/dead-letters/{letter_id}/replay", response_model=Handled, tags=["dead letters"],
             summary="Send one dead letter back to its stage")
def replay_one(letter_id: str, c: Ctx) -> dict[str, Any]:
    done = replay(c, [letter_id], None)
    if not done["count"]:
        raise NotFound(f"no dead letter {letter_id}")
    return done


@router.post("/dead-letters/replay", response_model=Handled, tags=["dead letters"],
             summary="Send a filtered set of dead letters back (by stage and/or ids)")
def replay_many(body: ReplayIn, c: Ctx) -> dict[str, Any]:
    ids = body.ids
    if ids is not None and (not isinstance(ids, list) or not all(isinstance(i, str) and i for i in ids)):
        raise InvalidSetting({"ids": "must be a list of dead-letter ids"})
    return replay(c, ids, body.stage)


@router.post("/dead-letters/{letter_id}/discard", response_model=Handled, tags=["dead letters"],
             summary="Give a dead letter up for good, saying why (recorded: GET /dead-letters/discarded)")
def discard_one(letter_id: str, body: DiscardIn, c: Ctx,
                who: Annotated[Principal, Depends(principal)]) -> dict[str, Any]:
    # The router's own principal dependency already ran: FastAPI hands back its cached answer.
    return discard(c, letter_id, body.reason, f"{who.user.username} (api)")
