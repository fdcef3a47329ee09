"""The partner sandbox: WeChat Pay v3 (payments, refunds, profit sharing, transfer bills),
official-account OAuth, WeChat Channels shop + subscribe messages and 快递100-style logistics on
their real wire protocols, plus `/sandbox/...` controls that play the buyer, the courier and the
partner's bad days (`/sandbox/faults`).

Run it with `chuchuang sandbox` (uvicorn); tests mount it in-process with `route_to_app` and
hand it a `callback_client` routed back to the in-process API.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
from fastapi import FastAPI

from sandbox import (
    bills,
    channels,
    logistics,
    miniprogram,
    notify,
    oauth,
    profitsharing,
    refunds,
    transfers,
    wechatpay,
)
from sandbox import faults as faults_mod
from sandbox.context import Sandbox
from sandbox.credentials import SandboxCredentials
from sandbox.faults import FaultConfig, Faults
from sandbox.store import Store


def create_app(
    credentials: SandboxCredentials,
    *,
    state_path: Path | None = None,
    notify_retry_scale: float = 1.0,
    faults: FaultConfig | None = None,
    settle_delay: float | None = 3.0,
    profit_sharing_max_ratio: float = 0.30,
    callback_client: Callable[[], httpx.AsyncClient] | None = None,
) -> FastAPI:
    """`faults`: injected failures (see `sandbox.faults`), changeable later via /sandbox/faults.
    `settle_delay`: seconds until refunds and split orders settle and transfer bills get
    confirmed on their own; None leaves that to the /sandbox controls (deterministic tests).
    `profit_sharing_max_ratio`: the merchant's maximum split ratio (WeChat's default 30%); the
    fault admin can override it for a while (`profit_sharing_max_ratio` in /sandbox/faults).
    `callback_client`: makes the HTTP client that notifications and pushes are sent with."""
    sb = Sandbox(credentials, Store(state_path), notify_retry_scale,
                 faults=Faults(faults), settle_delay=settle_delay,
                 profit_sharing_max_ratio=profit_sharing_max_ratio, callback_client=callback_client)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        # Only a real server runs this; in-process tests (httpx.ASGITransport) skip it.
        wechatpay.resume_pending_notifications(sb)
        notify.resume(sb)
        yield
        await sb.cancel_tasks()
        sb.store.close()

    app = FastAPI(title="Chuchuang partner sandbox", lifespan=lifespan)
    app.state.sandbox = sb
    faults_mod.install(app, sb)
    wechatpay.install(app, sb)
    refunds.install(app, sb)
    bills.install(app, sb)
    profitsharing.install(app, sb)
    transfers.install(app, sb)
    notify.install(app, sb)
    channels.install(app, sb)
    oauth.install(app, sb)
    miniprogram.install(app, sb)
    logistics.install(app, sb)

    @app.get("/sandbox/health", tags=["sandbox controls"])
    async def health():
        return {"ok": True, "mchid": credentials.mchid, "appid": credentials.appid}

    return app
