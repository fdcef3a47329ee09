"""Injected faults: what makes the sandbox behave like a partner on a bad day.

Configured through `create_app(faults=...)` or the admin API (`GET/PUT/DELETE /sandbox/faults`):

* per endpoint (`path` is an fnmatch glob such as `/v3/refund/*`): added latency, an error rate
  (500 SYSTEM_ERROR or 429 FREQUENCY_LIMITED, in each partner's own error format), and
  timeouts (the request *is processed*, but the answer only leaves after `timeout_seconds`,
  longer than any sane client timeout: the nastiest real case);
* notifications: dropped, duplicated, delayed, held and released out of order, or sent with an
  invalid signature;
* business outcomes: a transfer the user never confirms, refunds that end ABNORMAL or CLOSED.

Every random decision comes from one `random.Random(seed)`, so with a seed (or rates of 0/1)
a test sees the same faults on every run.
"""

from __future__ import annotations

import asyncio
import fnmatch
import json
import random
from typing import Any, Literal

from fastapi import APIRouter, FastAPI, Request, Response
from pydantic import BaseModel, Field


class EndpointFault(BaseModel):
    path: str = Field(description="fnmatch glob on the request path, e.g. /v3/refund/*")
    method: str | None = Field(default=None, description="only this HTTP method; None: all")
    latency_ms: int = Field(default=0, ge=0)
    error_rate: float = Field(default=0.0, ge=0.0, le=1.0)
    error_status: Literal[500, 429] = 500
    timeout_seconds: float = Field(default=0.0, ge=0.0, description="answer only after this long")
    times: int | None = Field(default=None, ge=0, description="affect only the next N matching requests")

    def matches(self, method: str, path: str) -> bool:
        if self.method and self.method.upper() != method.upper():
            return False
        return fnmatch.fnmatchcase(path, self.path)


class NotificationFaults(BaseModel):
    event_types: list[str] | None = Field(default=None, description="globs, e.g. REFUND.*; None: all")
    drop_rate: float = Field(default=0.0, ge=0.0, le=1.0, description="a delivery attempt is lost")
    duplicate_rate: float = Field(default=0.0, ge=0.0, le=1.0, description="an attempt is sent twice")
    invalid_signature_rate: float = Field(default=0.0, ge=0.0, le=1.0)
    delay_seconds: float = Field(default=0.0, ge=0.0, description="before each first delivery")
    out_of_order: bool = Field(
        default=False,
        description="hold first deliveries until POST /sandbox/notifications/release, which sends them newest first",
    )

    def applies_to(self, event_type: str) -> bool:
        return self.event_types is None or any(fnmatch.fnmatchcase(event_type, p) for p in self.event_types)


class FaultConfig(BaseModel):
    seed: int | None = None
    endpoints: list[EndpointFault] = Field(default_factory=list)
    notifications: NotificationFaults = Field(default_factory=NotificationFaults)
    transfer_never_confirms: bool = Field(
        default=False, description="transfer bills stay WAIT_USER_CONFIRM: no auto-confirm, confirm refused"
    )
    refund_outcome: Literal["SUCCESS", "ABNORMAL", "CLOSED"] = Field(
        default="SUCCESS", description="the end state refunds settle into"
    )
    balance_short: list[Literal["refund", "profitsharing_return"]] = Field(
        default_factory=list,
        description="the merchant account's balance is short for these: 403 NOT_ENOUGH (余额不足), a different "
                    "condition from asking for more than is left (400 INVALID_REQUEST)")
    profit_sharing_max_ratio: float | None = Field(
        default=None, ge=0.0, le=1.0,
        description="the merchant's maximum split ratio while this config holds; None: the sandbox's (30%)",
    )


_WECHATPAY_ERRORS = {
    500: {"code": "SYSTEM_ERROR", "message": "系统错误"},
    429: {"code": "FREQUENCY_LIMITED", "message": "频率超限"},
}
# Official-account / Channels APIs answer HTTP 200 with an errcode.
_WECHAT_ERRORS = {
    500: {"errcode": -1, "errmsg": "system error"},
    429: {"errcode": 45011, "errmsg": "api minute-quota reach limit  mustslower  retry next minute"},
}


class Faults:
    """The live fault configuration plus its random source."""

    def __init__(self, config: FaultConfig | None = None):
        self.set(config or FaultConfig())

    def set(self, config: FaultConfig) -> None:
        self.config = config
        self.random = random.Random(config.seed)
        self._remaining = [e.times for e in config.endpoints]
        self.stats: dict[str, int] = {}

    def _count(self, what: str) -> None:
        self.stats[what] = self.stats.get(what, 0) + 1

    def chance(self, rate: float) -> bool:
        if rate <= 0.0:
            return False
        if rate >= 1.0:
            return True
        return self.random.random() < rate

    def endpoint_plan(self, method: str, path: str) -> tuple[float, int | None, float]:
        """(latency seconds, error status or None, answer delay seconds) for one request."""
        latency, error, timeout = 0.0, None, 0.0
        for i, rule in enumerate(self.config.endpoints):
            if not rule.matches(method, path):
                continue
            if self._remaining[i] is not None:
                if self._remaining[i] <= 0:
                    continue
                self._remaining[i] -= 1
            latency += rule.latency_ms / 1000
            if error is None and self.chance(rule.error_rate):
                error = rule.error_status
                self._count(f"error_{error}")
            if rule.timeout_seconds:
                timeout = max(timeout, rule.timeout_seconds)
                self._count("timeout")
        return latency, error, timeout

    def notification(self, event_type: str) -> NotificationFaults | None:
        n = self.config.notifications
        return n if n.applies_to(event_type) else None


def _error_response(sb, path: str, status: int) -> Response:
    if path.startswith("/v3/"):
        return sb.platform_signed(status, _WECHATPAY_ERRORS[status])
    if path.startswith(("/cgi-bin/", "/channels/", "/sns/", "/wxa/")):
        return Response(json.dumps(_WECHAT_ERRORS[status]), 200, media_type="application/json")
    return Response(json.dumps({"result": False, "returnCode": str(status), "message": "服务器错误"}),
                    status, media_type="application/json")


def install(app: FastAPI, sb) -> None:
    faults: Faults = sb.faults

    @app.middleware("http")
    async def inject(request: Request, call_next):
        path = request.url.path
        if path.startswith("/sandbox/") or path in ("/docs", "/openapi.json"):
            return await call_next(request)
        latency, error, timeout = faults.endpoint_plan(request.method, path)
        if latency:
            await asyncio.sleep(latency)
        if error is not None:
            response = _error_response(sb, path, error)
        else:
            response = await call_next(request)
        if timeout:
            await asyncio.sleep(timeout)
        return response

    router = APIRouter(prefix="/sandbox", tags=["sandbox controls"])

    @router.get("/faults")
    async def get_faults() -> dict[str, Any]:
        return {"config": faults.config.model_dump(), "stats": faults.stats}

    @router.put("/faults")
    async def put_faults(config: FaultConfig) -> dict[str, Any]:
        faults.set(config)
        return {"config": faults.config.model_dump(), "stats": faults.stats}

    @router.delete("/faults")
    async def clear_faults() -> dict[str, Any]:
        faults.set(FaultConfig())
        return {"config": faults.config.model_dump(), "stats": faults.stats}

    app.include_router(router)
