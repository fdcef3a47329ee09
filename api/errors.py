"""Every error leaves the API in one shape, `Error`: `{"code": "...", "message": "...",
"details": [...]}` (details only where there is something to point at, e.g. the fields a 422
refuses). The OpenAPI document lists it for every route (api/contract.py)."""

from __future__ import annotations

from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

log = structlog.get_logger()


class ErrorDetail(BaseModel):
    """One thing wrong with the request: where (`loc`, e.g. ["body", "lines", 0, "quantity"]),
    what (`msg`) and a machine-readable kind (`type`, e.g. "missing", "too_large")."""

    loc: list[str | int] = Field(default_factory=list)
    msg: str
    type: str


class ErrorOut(BaseModel):
    """The one error answer of this API."""

    code: str = Field(description="machine-readable, e.g. VALIDATION_ERROR, NOT_FOUND, OUT_OF_STOCK")
    message: str = Field(description="for people; never personal data")
    details: list[ErrorDetail] | None = Field(default=None, description="what in the request is wrong, if known")


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, *, details: list[dict[str, Any]] | None = None,
                 headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.details, self.headers = details, headers


def update_refused(err) -> ApiError:
    """A workflow update refused by its validator or handler (WorkflowUpdateFailedError):
    the ApplicationError's type is the code; a malformed decision is 422, a partner that did not
    answer 503, anything else 409."""
    from temporalio.exceptions import ApplicationError

    cause = err.cause
    if isinstance(cause, ApplicationError):
        status = {"INVALID_DECISION": 422, "PAYMENT_UNAVAILABLE": 503}.get(cause.type or "", 409)
        return ApiError(status, cause.type or "REJECTED", cause.message or str(err))
    return ApiError(409, "REJECTED", str(cause or err))


def not_found(what: str) -> ApiError:
    return ApiError(404, "NOT_FOUND", f"{what} not found")


def error_response(status: int, code: str, message: str, details: list[dict[str, Any]] | None = None,
                   headers: dict[str, str] | None = None) -> JSONResponse:
    body = ErrorOut(code=code, message=message, details=details).model_dump(exclude_none=True)
    return JSONResponse(body, status_code=status, headers=headers)


HTTP_CODES = {400: "BAD_REQUEST", 401: "UNAUTHORIZED", 403: "FORBIDDEN", 404: "NOT_FOUND",
              405: "METHOD_NOT_ALLOWED", 406: "NOT_ACCEPTABLE", 413: "PAYLOAD_TOO_LARGE",
              415: "UNSUPPORTED_MEDIA_TYPE", 429: "TOO_MANY_REQUESTS", 503: "SERVICE_UNAVAILABLE"}


def validation_details(errors) -> list[dict[str, Any]]:
    """Pydantic's errors without the input they refused (it may be personal data)."""
    return [{"loc": [p if isinstance(p, int) else str(p) for p in e.get("loc", ())],
             "msg": str(e.get("msg", "invalid")), "type": str(e.get("type", "value_error"))} for e in errors]


def install(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(_: Request, err: ApiError) -> JSONResponse:
        return error_response(err.status, err.code, err.message, err.details, err.headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, err: RequestValidationError) -> JSONResponse:
        details = validation_details(err.errors())
        problems = "; ".join(f"{'.'.join(str(p) for p in d['loc'] if p != 'body')}: {d['msg']}" for d in details)
        return error_response(422, "VALIDATION_ERROR", problems or "the request is not valid", details)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, err: StarletteHTTPException) -> JSONResponse:
        return error_response(err.status_code, HTTP_CODES.get(err.status_code, "HTTP_ERROR"), str(err.detail),
                              headers=getattr(err, "headers", None))

    # A dependency that is down is a 503 the client may retry, never a 500.
    from sqlalchemy.exc import DataError, InterfaceError, OperationalError
    from temporalio.service import RPCError, RPCStatusCode

    @app.exception_handler(OperationalError)
    @app.exception_handler(InterfaceError)
    async def _database_down(_: Request, err: Exception) -> JSONResponse:
        log.warning("api.database_unavailable", error=type(err).__name__)
        return error_response(503, "DATABASE_UNAVAILABLE", "the database is not answering; try again",
                              headers={"Retry-After": "5"})

    @app.exception_handler(DataError)
    async def _out_of_range(_: Request, err: DataError) -> JSONResponse:
        # the input guard (api/contract.py) keeps values in range; this is the net under it
        log.warning("api.data_error", error=type(err.orig).__name__ if err.orig else "DataError")
        return error_response(422, "VALUE_OUT_OF_RANGE", "a value in the request is out of range")

    @app.exception_handler(RPCError)
    async def _temporal(_: Request, err: RPCError) -> JSONResponse:
        if err.status in (RPCStatusCode.UNAVAILABLE, RPCStatusCode.DEADLINE_EXCEEDED,
                          RPCStatusCode.RESOURCE_EXHAUSTED, RPCStatusCode.CANCELLED):
            return error_response(503, "TEMPORAL_UNAVAILABLE", "the process engine is not answering; try again",
                                  headers={"Retry-After": "5"})
        raise err
