"""The partner sandbox: WeChat Pay v3, official-account OAuth and 快递100-style logistics on
their real wire protocols, plus `/sandbox/...` controls that play the buyer and the courier.

Run it with `chuchuang sandbox` (uvicorn); tests mount it in-process with `route_to_app`.
"""

from __future__ import annotations

from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI

from chuchuang.sandbox import logistics, oauth, wechatpay
from chuchuang.sandbox.context import Sandbox
from chuchuang.sandbox.credentials import SandboxCredentials
from chuchuang.sandbox.store import Store


def create_app(
    credentials: SandboxCredentials,
    *,
    state_path: Path | None = None,
    notify_retry_scale: float = 1.0,
) -> FastAPI:
    sb = Sandbox(credentials, Store(state_path), notify_retry_scale)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        # Only a real server runs this; in-process tests (httpx.ASGITransport) skip it.
        wechatpay.resume_pending_notifications(sb)
        yield
        await sb.cancel_tasks()
        sb.store.close()

    app = FastAPI(title="Chuchuang partner sandbox", lifespan=lifespan)
    app.state.sandbox = sb
    wechatpay.install(app, sb)
    oauth.install(app, sb)
    logistics.install(app, sb)

    @app.get("/sandbox/health", tags=["sandbox controls"])
    async def health():
        return {"ok": True, "mchid": credentials.mchid, "appid": credentials.appid}

    return app
