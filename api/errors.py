"""Every error leaves the API as `{"code": "...", "message": "..."}` with a 4xx status."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers


def update_refused(err) -> ApiError:
    """A workflow update refused by its validator or handler (WorkflowUpdateFailedError):
    the ApplicationError's type is the code; a malformed decision is 422, anything else 409."""
    from temporalio.exceptions import ApplicationError

    cause = err.cause
    if isinstance(cause, ApplicationError):
        status = 422 if cause.type == "INVALID_DECISION" else 409
        return ApiError(status, cause.type or "REJECTED", cause.message or str(err))
    return ApiError(409, "REJECTED", str(cause or err))


def not_found(what: str) -> ApiError:
    return ApiError(404, "NOT_FOUND", f"{what} not found")


def install(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(_: Request, err: ApiError) -> JSONResponse:
        return JSONResponse({"code": err.code, "message": err.message}, status_code=err.status,
                            headers=err.headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, err: RequestValidationError) -> JSONResponse:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'] if p != 'body')}: {e['msg']}" for e in err.errors()
        )
        return JSONResponse({"code": "VALIDATION_ERROR", "message": problems,
                             "detail": [{"loc": e["loc"], "msg": e["msg"]} for e in err.errors()]},
                            status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, err: StarletteHTTPException) -> JSONResponse:
        code = {401: "UNAUTHORIZED", 403: "FORBIDDEN", 404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED"}
        return JSONResponse({"code": code.get(err.status_code, "HTTP_ERROR"), "message": str(err.detail)},
                            status_code=err.status_code, headers=getattr(err, "headers", None))
