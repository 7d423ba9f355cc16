"""One JSON error shape everywhere: {"error": {"code", "message", "field", "details"}}."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from corral.api.responses import FastJSONResponse
from corral.domain.workloads import WorkloadType
from corral.services.errors import ServiceError

_TAGS = {t.value for t in WorkloadType}


def error_body(code: str, message: str, field: str | None = None, details: list[Any] | None = None) -> dict:
    body: dict[str, Any] = {"code": code, "message": message, "field": field}
    if details:
        body["details"] = details
    return {"error": body}


def _field(loc: tuple[Any, ...]) -> str | None:
    # ("body", "fine_tuning", "base_model") -> "base_model"; ("query", "page") -> "page"
    parts = [str(p) for p in loc[1:] if p not in _TAGS and not str(p).startswith("function-")]
    return ".".join(parts) or (str(loc[0]) if loc else None)


def _message(error: dict[str, Any]) -> str:
    message = str(error.get("msg", "invalid")).removeprefix("Value error, ")
    if error.get("type") == "union_tag_not_found":
        message = "field required: the workload type"
    if error.get("type") == "union_tag_invalid":
        message = f"unknown workload type; expected one of: {', '.join(t.value for t in WorkloadType)}"
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
        details = [{"field": "type" if e.get("type", "").startswith("union_tag") else _field(tuple(e.get("loc", ()))),
                    "message": _message(e)} for e in errors]
        first = details[0] if details else {"field": None, "message": "invalid request"}
        message = f"{first['field']}: {first['message']}" if first["field"] else first["message"]
        return FastJSONResponse(error_body("invalid", message, first["field"], details), status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_request: Request, exc: StarletteHTTPException) -> FastJSONResponse:
        codes = {401: "unauthenticated", 404: "not_found", 405: "method_not_allowed"}
        return FastJSONResponse(error_body(codes.get(exc.status_code, "error"), str(exc.detail)),
                                status_code=exc.status_code, headers=getattr(exc, "headers", None))
