"""API side of the Channels outbox: a request that committed outbox rows wakes the `channels-sync`
workflow once, after its response (signal-with-start)."""

from __future__ import annotations

import structlog
from fastapi import FastAPI
from starlette.types import ASGIApp, Receive, Scope, Send

from activities import channels_outbox
from workflows.channels_sync import wake_channels_sync

log = structlog.get_logger()


class ChannelsWake:
    """Plain ASGI, not `@app.middleware("http")`: Starlette's BaseHTTPMiddleware runs every request
    through an extra task group and memory streams, a tenth of the API's time under a burst
    (py-spy over bench/load_test.py's flash sale)."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        flag: list = []
        token = channels_outbox.collect_wakes(flag)
        try:
            await self.app(scope, receive, send)
        finally:
            channels_outbox.stop_collecting(token)
        if flag:
            state = scope["app"].state
            try:
                await wake_channels_sync(await state.temporal.client(), state.settings)
            except Exception as err:  # noqa: BLE001 - never fail a request that committed
                log.warning("channels_sync.wake_failed", error=repr(err))


def install(app: FastAPI) -> None:
    app.add_middleware(ChannelsWake)
