"""/api/v1 categories and SMTP settings (the system default and custom ones)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Body, Response

from services.admin import categories, form_values
from services.admin import mailboxes as mailbox_admin
from services.admin.errors import Conflict
from services.admin.mailboxes import NOT_SAVED_YET
from services.web.context import Ctx
from services.web.schemas import CategoryIn, CategoryOut, SmtpIn, SmtpOut, TestResult
from shared import smtp_settings
from shared.mailboxes import InvalidSetting
from shared.oauth2 import login as oauth_login
from shared.oauth2 import owners

router = APIRouter(prefix="/api/v1")


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
        categories.rename(conn, category_id, body.name)
        return categories.get(conn, category_id)


@router.delete("/categories/{category_id}", status_code=204, response_class=Response, tags=["categories"],
               summary="Delete a category no mailbox or request uses (409 otherwise)")
def delete_category(category_id: int, c: Ctx) -> Response:
    with c.tx() as conn:
        categories.delete(conn, category_id)
    return Response(status_code=204)


# ---- SMTP settings ---------------------------------------------------------

SMTP_FIELDS = ("name", "host", "port", "security", "username", "allow_self_signed")


def smtp_values(raw: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
    return form_values.coerce(raw, accepted=SMTP_FIELDS, ints=("port",), nullable=("port", "username"),
                              bools=("allow_self_signed",), lowered=("security",))


def smtp_out(row: dict[str, Any], conn: Any = None) -> dict[str, Any]:
    out = {k: v for k, v in row.items() if k != "password"}
    out["has_password"] = row.get("password") not in (None, "(none)")
    if conn is not None:
        out.update(owners.view(conn, "smtp_settings", row["id"]))  # never the client secret or a token
    return out


def save_smtp(conn: Any, keys: Any, raw: dict[str, Any], ref: str | int | None) -> int:
    """Create (ref None), change, or (ref 'system') set SMTP settings with their OAuth2 settings; the id.

    Errors of both come back together, in the words the CLI uses.
    """
    raw, oauth, errors = owners.split(raw)
    try:
        values, password = smtp_values(raw)
    except InvalidSetting as exc:
        raise InvalidSetting({**exc.errors, **errors}) from None
    with conn.transaction():  # a savepoint: nothing of a refused form stays
        try:
            if ref == smtp_settings.SYSTEM:
                smtp_id = smtp_settings.set_system(conn, keys, {k: v for k, v in values.items() if k != "name"},
                                                   password)
            elif ref is None:
                if values.get("name") and smtp_settings.find(conn, str(values["name"])):
                    raise Conflict(f"SMTP settings named {values['name']!r} exist already", field="name")
                smtp_id = smtp_settings.create(conn, keys, values, password)
            else:
                smtp_id = smtp_settings.update(conn, keys, ref, values, password)
        except InvalidSetting as exc:
            raise InvalidSetting({**exc.errors, **errors}) from None
        if errors:
            raise InvalidSetting(errors)
        owners.apply(conn, keys, "smtp_settings", smtp_id, oauth)
        return smtp_id


def _body(body: SmtpIn | None) -> dict[str, Any]:
    return body.model_dump(exclude_unset=True) if body is not None else {}


@router.get("/smtp", response_model=list[SmtpOut], tags=["smtp"],
            summary="All SMTP settings, the system default first")
def list_smtp(c: Ctx) -> list[dict[str, Any]]:
    with c.tx() as conn:
        return [smtp_out(r, conn) for r in smtp_settings.list_all(conn)]


@router.get("/smtp/system", response_model=SmtpOut, tags=["smtp"], summary="The system default SMTP settings")
def get_system_smtp(c: Ctx) -> dict[str, Any]:
    with c.tx() as conn:
        return smtp_out(smtp_settings.show(conn, smtp_settings.SYSTEM), conn)


@router.put("/smtp/system", response_model=SmtpOut, tags=["smtp"],
            summary="Set the system default (fields not sent and a blank password are kept)")
def put_system_smtp(body: SmtpIn, c: Ctx) -> dict[str, Any]:
    with c.tx() as conn:
        save_smtp(conn, c.keys, {k: v for k, v in _body(body).items() if k != "name"}, smtp_settings.SYSTEM)
        return smtp_out(smtp_settings.show(conn, smtp_settings.SYSTEM), conn)


@router.post("/smtp", response_model=SmtpOut, status_code=201, tags=["smtp"],
             summary="Add custom SMTP settings that mailboxes can choose")
def create_smtp(body: SmtpIn, c: Ctx) -> dict[str, Any]:
    with c.tx() as conn:
        return smtp_out(smtp_settings.show(conn, save_smtp(conn, c.keys, _body(body), None)), conn)


def _custom(conn: Any, smtp_id: int) -> dict[str, Any]:
    row = smtp_settings.find(conn, smtp_id)
    if row is None or row["is_system"]:
        raise LookupError(f"no custom SMTP settings {smtp_id}")
    return row


@router.get("/smtp/{smtp_id}", response_model=SmtpOut, tags=["smtp"], summary="Custom SMTP settings")
def get_smtp(smtp_id: int, c: Ctx) -> dict[str, Any]:
    with c.tx() as conn:
        return smtp_out(smtp_settings.show(conn, _custom(conn, smtp_id)["id"]), conn)


@router.patch("/smtp/{smtp_id}", response_model=SmtpOut, tags=["smtp"], summary="Change custom SMTP settings")
def update_smtp(smtp_id: int, body: SmtpIn, c: Ctx) -> dict[str, Any]:
    with c.tx() as conn:
        _custom(conn, smtp_id)
        save_smtp(conn, c.keys, _body(body), smtp_id)
        return smtp_out(smtp_settings.show(conn, smtp_id), conn)


@router.delete("/smtp/{smtp_id}", status_code=204, response_class=Response, tags=["smtp"],
               summary="Delete custom SMTP settings no mailbox uses (409 otherwise)")
def delete_smtp(smtp_id: int, c: Ctx) -> Response:
    with c.tx() as conn:
        _custom(conn, smtp_id)
        try:
            smtp_settings.remove(conn, smtp_id)
        except InvalidSetting as exc:  # still in use: a conflict, not a bad value
            raise Conflict("; ".join(exc.errors.values())) from None
    return Response(status_code=204)


def smtp_test(c: Any, ref: str | int, raw: dict[str, Any]) -> dict[str, Any]:
    """Log in with the saved settings, changed by what `raw` holds; nothing is saved or sent."""
    raw, oauth, _ = owners.split(raw)
    values, password = smtp_values(raw)
    with c.tx() as conn:
        saved = smtp_settings.find(conn, ref)
        method = oauth.method or (saved["auth_method"] if saved else "password")
        if method == "oauth2" and (saved is None or not owners.same_as_saved(conn, "smtp_settings", saved["id"], oauth)):
            raise InvalidSetting({"auth_method": NOT_SAVED_YET})
        base: dict[str, Any] = {**smtp_settings.DEFAULTS, "name": "system"}
        saved_password = None
        if saved is not None:
            base.update({k: saved[k] for k in SMTP_FIELDS})
            saved_password = c.keys.decrypt(saved["password_enc"])
    full = {**base, **values}
    errors = smtp_settings.validate(full, is_system=True)
    if errors:
        raise InvalidSetting(errors)
    settings = smtp_settings.SmtpSettings(
        id=saved["id"] if saved else 0, name=str(full["name"]), is_system=False, host=full["host"],
        port=full["port"], security=full["security"], username=full["username"],
        password=password if password is not None else saved_password,
        allow_self_signed=bool(full["allow_self_signed"]), auth_method=method)
    if method == "oauth2":  # signs in with the saved grant, as the replier does
        with c.tx() as conn:
            settings = oauth_login.attach_smtp(c.pool, c.keys, conn, settings)
    steps = [x.__dict__ for x in mailbox_admin.smtp_steps(settings)]
    return {"ok": all(x["ok"] for x in steps), "steps": steps}


@router.post("/smtp/system/test", response_model=TestResult, tags=["smtp"],
             summary="Log in to the system SMTP server with the saved values, changed by the body")
def test_system_smtp(c: Ctx, body: SmtpIn | None = Body(None)) -> dict[str, Any]:  # noqa: B008
    return smtp_test(c, smtp_settings.SYSTEM, _body(body))


@router.post("/smtp/{smtp_id}/test", response_model=TestResult, tags=["smtp"],
             summary="Log in to a custom SMTP server with the saved values, changed by the body")
def test_smtp(smtp_id: int, c: Ctx, body: SmtpIn | None = Body(None)) -> dict[str, Any]:  # noqa: B008
    with c.tx() as conn:
        _custom(conn, smtp_id)
    return smtp_test(c, smtp_id, _body(body))
