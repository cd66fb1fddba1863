"""The FastAPI application: API routers, pages, login, probes, security headers.

`create_app(App)` builds it around an already wired services.app.App (its
database pool, keys and broker), so the embedded one-process mode and the
`deskmail web` process serve the same thing.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from services.admin import operations
from services.app import App
from services.web import (
    api_mailboxes,
    api_ops,
    api_requests,
    api_settings,
    api_spam,
    api_templates,
    auth_routes,
    errors,
    oauth2_routes,
    page_mailboxes,
    page_requests,
    page_settings,
    page_spam,
    page_status,
)
from services.web.context import HERE, WebContext
from services.web.security import CsrfRefused, LoginRequired, SecurityHeaders, principal

ERROR_SCHEMAS = {
    "FieldErrors": {"type": "object", "required": ["errors"], "properties": {
        "errors": {"type": "object", "additionalProperties": {"type": "string"},
                   "description": "field name -> what is wrong with its value"}}},
    "Error": {"type": "object", "required": ["error"], "properties": {
        "error": {"type": "string"},
        "errors": {"type": "object", "additionalProperties": {"type": "string"}}}},
}


def _error_responses() -> dict[int | str, dict[str, Any]]:
    ref = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    return {
        400: {"description": "the body is not valid JSON", "content": ref},
        401: {"description": "no valid session or bearer token", "content": ref},
        403: {"description": "CSRF token missing or wrong (cookie sessions only)", "content": ref},
        404: {"description": "no such thing", "content": ref},
        409: {"description": "a duplicate, or still in use", "content": ref},
        422: {"description": "invalid values", "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/FieldErrors"}}}},
        503: {"description": "the broker or the database does not answer", "content": ref},
    }


def create_app(core: App) -> FastAPI:
    app = FastAPI(title="Deskmail admin API", version="1",
                  description="Mailboxes, SMTP settings, templates, categories, requests, dead letters "
                              "and pipeline status. Authenticate with `Authorization: Bearer <token>` "
                              "(`deskmail admin create-token`).",
                  openapi_url=None, docs_url=None, redoc_url=None)
    templates = Jinja2Templates(directory=str(HERE / "templates"))
    app.state.ctx = WebContext(core, templates)
    app.add_middleware(SecurityHeaders)
    errors.install(app, templates)

    @app.exception_handler(LoginRequired)
    async def login_required(request: Request, exc: LoginRequired) -> Response:
        if request.url.path.startswith("/api/"):
            return JSONResponse({"error": str(exc)}, status_code=401,
                                headers={"WWW-Authenticate": "Bearer"})
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"/login?next={quote(target)}", status_code=303)

    @app.exception_handler(CsrfRefused)
    async def csrf_refused(request: Request, exc: CsrfRefused) -> Response:
        if request.url.path.startswith("/api/"):
            return JSONResponse({"error": str(exc)}, status_code=403)
        return templates.TemplateResponse(request, "error.html", {"status": 403, "message": str(exc)},
                                          status_code=403)

    protected = [Depends(principal)]
    for router in (api_mailboxes.router, api_requests.router, api_settings.router, api_templates.router,
                   api_ops.router, api_spam.router):
        app.include_router(router, dependencies=protected, responses=_error_responses())
    for router in (page_status.router, page_mailboxes.router, page_settings.router, page_requests.router,
                   page_spam.router):
        app.include_router(router, dependencies=protected, include_in_schema=False)
    app.include_router(oauth2_routes.router, dependencies=protected, include_in_schema=False)
    app.include_router(auth_routes.router, include_in_schema=False)
    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")

    @app.get("/api/v1/openapi.json", include_in_schema=False, dependencies=protected)
    def openapi() -> dict[str, Any]:
        return app.openapi()

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> PlainTextResponse:
        return PlainTextResponse("ok")

    @app.get("/readyz", include_in_schema=False)
    def readyz() -> PlainTextResponse:
        try:
            operations.check_database(core.pool)
        except Exception as exc:  # noqa: BLE001 - any failure means not ready
            return PlainTextResponse(f"database: {exc}", status_code=503)
        return PlainTextResponse("ok")

    original = app.openapi

    def with_security() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = original()
        components = schema.setdefault("components", {})
        components.setdefault("schemas", {}).update(ERROR_SCHEMAS)
        components["securitySchemes"] = {"bearerAuth": {"type": "http", "scheme": "bearer"}}
        schema["security"] = [{"bearerAuth": []}]
        app.openapi_schema = schema
        return schema

    app.openapi = with_security  # type: ignore[method-assign]
    return app
