"""/api/v1 categories and SMTP settings (the system default and named ones), through services/admin."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Response

from services.admin import categories, probes
from services.admin import smtp as smtp_admin
from services.web.context import Ctx
from services.web.schemas import CategoryIn, CategoryOut, SmtpIn, SmtpOut, TestResult, body_of

router = APIRouter(prefix="/api/v1")
OptionalSmtp = Annotated[SmtpIn | None, Body()]


# ---- categories ------------------------------------------------------------

@router.get("/categories", response_model=list[CategoryOut], tags=["categories"],
            summary="Categories, with how many mailboxes and requests use each")
def list_categories(c: Ctx) -> list[dict[str, Any]]:
    with c.tx() as conn:
        return categories.list_all(conn)


@router.post("/categories", response_model=CategoryOut, status_code=201, tags=["categories"],
             summary="Add a category")
def create_category(body: CategoryIn, c: Ctx) -> dict[str, Any]:
    with c.tx() as conn:
        return categories.get(conn, categories.create(conn, body.name))


@router.get("/categories/{category_id}", response_model=CategoryOut, tags=["categories"], summary="One category")
def get_category(category_id: int, c: Ctx) -> dict[str, Any]:
    with c.tx() as conn:
        return categories.get(conn, category_id)


@router.patch("/categories/{category_id}", response_model=CategoryOut, tags=["categories"],
              summary="Rename a category")
def rename_category(category_id: int, body: CategoryIn, c: Ctx) -> dict[str, Any]:
    with c.tx() as conn:
        categories.get(conn, category_id)
        return categories.rename(conn, category_id, body.name)


@router.delete("/categories/{category_id}", status_code=204, response_class=Response, tags=["categories"],
               summary="Delete a category; one that mailboxes or requests use needs ?move_to= (409 otherwise)")
def delete_category(category_id: int, c: Ctx, move_to: str | None = None) -> Response:
    with c.tx() as conn:
        categories.get(conn, category_id)
        categories.delete(conn, category_id, move_to)
    return Response(status_code=204)


# ---- SMTP settings ---------------------------------------------------------

@router.get("/smtp", response_model=list[SmtpOut], tags=["smtp"],
            summary="All SMTP settings, the system default first")
def list_smtp(c: Ctx) -> list[dict[str, Any]]:
    with c.tx() as conn:
        return smtp_admin.list_all(conn)


@router.get("/smtp/system", response_model=SmtpOut, tags=["smtp"], summary="The system default SMTP settings")
def get_system_smtp(c: Ctx) -> dict[str, Any]:
    with c.tx() as conn:
        return smtp_admin.view(conn, smtp_admin.SYSTEM)


@router.put("/smtp/system", response_model=SmtpOut, tags=["smtp"],
            summary="Set the system default (fields not sent and a blank password are kept)")
def put_system_smtp(body: SmtpIn, c: Ctx) -> dict[str, Any]:
    values = {k: v for k, v in body_of(body).items() if k != "name"}
    with c.tx() as conn:
        return smtp_admin.view(conn, smtp_admin.save(conn, c.keys, values, smtp_admin.SYSTEM))


@router.post("/smtp", response_model=SmtpOut, status_code=201, tags=["smtp"],
             summary="Add named SMTP settings that mailboxes can share")
def create_smtp(body: SmtpIn, c: Ctx) -> dict[str, Any]:
    with c.tx() as conn:
        return smtp_admin.view(conn, smtp_admin.save(conn, c.keys, body_of(body), None))


@router.get("/smtp/{smtp_id}", response_model=SmtpOut, tags=["smtp"], summary="Named SMTP settings")
def get_smtp(smtp_id: int, c: Ctx) -> dict[str, Any]:
    with c.tx() as conn:
        return smtp_admin.view_custom(conn, smtp_id)


@router.patch("/smtp/{smtp_id}", response_model=SmtpOut, tags=["smtp"],
              summary="Change named SMTP settings, for every mailbox that uses them")
def update_smtp(smtp_id: int, body: SmtpIn, c: Ctx) -> dict[str, Any]:
    with c.tx() as conn:
        smtp_admin.view_custom(conn, smtp_id)
        smtp_admin.save(conn, c.keys, body_of(body), smtp_id)
        return smtp_admin.view(conn, smtp_id)


@router.delete("/smtp/{smtp_id}", status_code=204, response_class=Response, tags=["smtp"],
               summary="Delete SMTP settings no mailbox uses (409 otherwise)")
def delete_smtp(smtp_id: int, c: Ctx) -> Response:
    with c.tx() as conn:
        smtp_admin.remove_custom(conn, smtp_id)
    return Response(status_code=204)


@router.post("/smtp/system/test", response_model=TestResult, tags=["smtp"],
             summary="Log in to the system SMTP server with the saved values, changed by the body")
def test_system_smtp(c: Ctx, body: OptionalSmtp = None) -> dict[str, Any]:
    return probes.test_smtp(c.pool, c.keys, smtp_admin.SYSTEM, body_of(body))


@router.post("/smtp/{smtp_id}/test", response_model=TestResult, tags=["smtp"],
             summary="Log in to the server of named SMTP settings with the saved values, changed by the body")
def test_smtp(smtp_id: int, c: Ctx, body: OptionalSmtp = None) -> dict[str, Any]:
    with c.tx() as conn:
        smtp_admin.view_custom(conn, smtp_id)
    return probes.test_smtp(c.pool, c.keys, smtp_id, body_of(body))
