"""API side of the Channels outbox: a request that committed outbox rows wakes the `channels-sync`
workflow once, after its response (signal-with-start)."""

from __future__ import annotations

import structlog
from fastapi import FastAPI, Request

from activities import channels_outbox
from workflows.channels_sync import wake_channels_sync

log = structlog.get_logger()


def install(app: FastAPI) -> None:
    @app.middleware("http")
    async def _wake_channels_sync(request: Request, call_next):
        flag: list = []
        token = channels_outbox.collect_wakes(flag)
        try:
            response = await call_next(request)
        finally:
            channels_outbox.stop_collecting(token)
        if flag:
            try:
                await wake_channels_sync(await request.app.state.temporal.client(), request.app.state.settings)
            except Exception as err:  # noqa: BLE001 - never fail a request that committed
                log.warning("channels_sync.wake_failed", error=repr(err))
        return response
