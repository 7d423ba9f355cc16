"""One JSON error shape everywhere: {"error": {"code", "message", "field", "details"}}.

Every error leaves the API in this shape, a 500 included, and the OpenAPI documents
it for every operation (``document_errors``).
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from corral.api.responses import FastJSONResponse
from corral.domain.workloads import WorkloadType
from corral.services.errors import ServiceError

log = logging.getLogger("corral.api")

_TAGS = {t.value for t in WorkloadType}
_HTTP_CODES = {400: "bad_request", 401: "unauthenticated", 404: "not_found", 405: "method_not_allowed",
               413: "too_large", 429: "too_many_requests"}


class ErrorDetail(BaseModel):
    field: str | None = Field(description="the field at fault, when one is")
    message: str


class ErrorBody(BaseModel):
    code: str = Field(description="machine-readable, e.g. not_found, invalid, conflict, internal")
    message: str = Field(description="what went wrong and what to do, for a person")
    field: str | None = Field(None, description="the request field at fault, when one is")
    details: list[ErrorDetail] | None = Field(None, description="every problem, when there are several")


class ErrorResponse(BaseModel):
    """The body of every error response."""

    error: ErrorBody


def error_body(code: str, message: str, field: str | None = None, details: list[Any] | None = None) -> dict:
    body: dict[str, Any] = {"code": code, "message": message, "field": field}
    if details:
        body["details"] = details
    return {"error": body}


def _field(loc: tuple[Any, ...]) -> str | None:
    # ("body", "fine_tuning", "base_model") -> "base_model"; ("query", "page") -> "page"
    parts = [str(p) for p in loc[1:] if p not in _TAGS and not str(p).startswith("function-")]
    return ".".join(parts) or (str(loc[0]) if loc else None)


def _field_of(error: dict[str, Any]) -> str | None:
    if error.get("type", "").startswith("union_tag"):
        return "type"
    if error.get("type") == "json_invalid":
        return None  # its location is a character offset, not a field
    loc = tuple(error.get("loc", ()))
    named = (error.get("ctx") or {}).get("field")  # a check across fields names its field
    return _field((*loc, named) if isinstance(named, str) else loc)


def _message(error: dict[str, Any]) -> str:
    message = str(error.get("msg", "invalid")).removeprefix("Value error, ")
    if error.get("type") == "union_tag_not_found":
        message = "field required: the workload type"
    if error.get("type") == "union_tag_invalid":
        message = f"unknown workload type; expected one of: {', '.join(t.value for t in WorkloadType)}"
    if error.get("type") == "json_invalid":
        message = f"the body is not valid JSON: {(error.get('ctx') or {}).get('error', 'decode error')}"
    return message


def install(app: FastAPI) -> None:
    @app.exception_handler(ServiceError)
    async def _service_error(_request: Request, exc: ServiceError) -> FastJSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if exc.status_code == 401 else None
        return FastJSONResponse(error_body(exc.code, exc.message, exc.field, getattr(exc, "details", None)),
                                status_code=exc.status_code, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_request: Request, exc: RequestValidationError) -> FastJSONResponse:
        errors = exc.errors()
        details = [{"field": _field_of(e), "message": _message(e)} for e in errors]
        first = details[0] if details else {"field": None, "message": "invalid request"}
        message = f"{first['field']}: {first['message']}" if first["field"] else first["message"]
        return FastJSONResponse(error_body("invalid", message, first["field"], details), status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_request: Request, exc: StarletteHTTPException) -> FastJSONResponse:
        return FastJSONResponse(error_body(_HTTP_CODES.get(exc.status_code, "error"), str(exc.detail)),
                                status_code=exc.status_code, headers=getattr(exc, "headers", None))

    # Inside Starlette's ServerErrorMiddleware, which would answer in plain text and then
    # re-raise, making the server close the keep-alive connection.
    app.add_middleware(CatchAll)


INTERNAL = error_body("internal", "the server failed to handle this request; the server's log says why")


class CatchAll:
    """Any unexpected exception: a logged traceback and the JSON 500, and the connection
    stays usable (the exception is not re-raised to the server)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception:
            log.exception("unexpected error on %s %s", scope.get("method"), scope.get("path"))
            if started:
                raise  # half a response went out: only closing the connection can end it
            await FastJSONResponse(INTERNAL, status_code=500)(scope, receive, send)


# ----------------------------------------------------------------------------- OpenAPI

_DESCRIPTIONS = {
    400: "a page cursor this server did not make, or made for another sort, filter or page size",
    401: "no valid credentials",
    403: "not allowed to the caller (administrators only)",
    404: "not found, or not visible to the caller",
    409: "conflicts with the current state",
    413: "the body is larger than the server accepts",
    422: "invalid input",
    429: "too many requests; retry after the Retry-After header's seconds",
    500: "the server failed (logged); the connection stays usable",
    503: "the cluster (or its agent) is unavailable",
}
_REF = {"$ref": "#/components/schemas/ErrorResponse"}


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """``responses=`` of a route: the error shape under these status codes."""
    return {code: {"model": ErrorResponse, "description": _DESCRIPTIONS[code]} for code in codes}


def _codes(path: str, method: str, operation: dict[str, Any]) -> set[int]:
    """The errors an operation can answer, from what it is: authenticated routes 401 (users'
    routes 403 and 404 too), writes 409, operations with a body 413, every one 422 and 500."""
    if path == "/metrics":
        return {401, 403, 500}  # an admin's token or the scrape token
    codes = {422, 500}
    codes |= {401} if path.startswith("/api/v1/agent/") else {401, 403, 404}
    if method in ("post", "put", "patch", "delete"):
        codes.add(409)
    if "requestBody" in operation:
        codes.add(413)
    if (path, method) == ("/api/v1/workloads", "post"):
        codes.add(503)  # its cluster is unhealthy
    if (path, method) == ("/api/v1/workloads", "get"):
        codes.add(400)  # a garbled or misused cursor (services.listing.InvalidCursor)
    if path.endswith("/logs"):
        codes |= {429, 503}  # too many followers; the cluster's agent does not answer
    return codes


def document_errors(app: FastAPI) -> None:
    """Make the app's OpenAPI document the error responses of every API operation, all
    in the one shape (FastAPI's own 422 schema describes a body Corral never sends)."""
    from fastapi.openapi.utils import get_openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        error_schema = ErrorResponse.model_json_schema(ref_template="#/components/schemas/{model}")
        components.update(error_schema.pop("$defs", {}))
        components["ErrorResponse"] = error_schema
        for path, item in schema.get("paths", {}).items():
            if not path.startswith("/api/") and path != "/metrics":
                continue
            for method, operation in item.items():
                responses = operation.setdefault("responses", {})
                for code in sorted(_codes(path, method, operation)):
                    if code == 422 or str(code) not in responses:
                        responses[str(code)] = {"description": _DESCRIPTIONS[code],
                                                "content": {"application/json": {"schema": _REF}}}
                operation["responses"] = dict(sorted(responses.items()))
        for unused in ("HTTPValidationError", "ValidationError"):
            components.pop(unused, None)
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
