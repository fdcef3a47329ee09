"""The WeChat Channels shop's message pushes (消息推送, security mode): `GET` is the URL check
WeChat makes when the push URL is saved, `POST` one event. A push is believed only when its
msg_signature checks out and it decrypts for our appid. Each event is handed to its shop order's
workflow (signal-with-start `shop-order-{id}`) and kept once by its key, so a repeated or replayed
push is answered without doing anything twice. The answer is `success` within WeChat's time
limit: the work happens in the workflow."""

from __future__ import annotations

import structlog
from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import PlainTextResponse
from sqlalchemy import select

from activities.channels_inbound import store_events, wake_shop_order
from api.access import public
from api.deps import sessions_of, temporal_of
from db.channels_models import ChannelsEvent
from domain.channels_inbound import ShopEvent, event_of
from integrations.channels import PushKeys

router = APIRouter(prefix="/webhooks", tags=["webhooks"], dependencies=[Depends(public(
    "the Channels shop's pushes: each is checked by its msg_signature, not a token"))])
log = structlog.get_logger()
ANSWERS = {401: {"description": "signature does not match (or the push does not decrypt for our appid)",
                 "content": {"text/plain": {"example": "signature verification failed"}}}}


def _keys(request: Request) -> PushKeys:
    keys = getattr(request.app.state, "channels_push_keys", None)
    if keys is None:
        keys = request.app.state.channels_push_keys = PushKeys.from_settings(request.app.state.settings)
    return keys


@router.get("/channels", summary="Channels shop push URL check (signature, timestamp, nonce, echostr)",
            response_class=PlainTextResponse, responses=ANSWERS)
async def channels_push_check(request: Request) -> PlainTextResponse:
    echostr = _keys(request).verify_url(request.query_params)
    if echostr is None:
        return PlainTextResponse("signature verification failed", status_code=401)
    return PlainTextResponse(echostr)


@router.post("/channels", summary="Channels shop event pushes (orders, after-sales), security mode",
             response_class=PlainTextResponse, responses=ANSWERS)
async def channels_push(request: Request) -> PlainTextResponse:
    message = _keys(request).parse(request.query_params, await request.body())
    if message is None:
        log.warning("webhook.channels.rejected", reason="msg_signature or decryption")
        return PlainTextResponse("signature verification failed", status_code=401)
    event = event_of(message)
    if event is None:  # an event we do not act on: answered, so the shop does not send it again
        return PlainTextResponse("success")
    if not await run_in_threadpool(_seen, request, event):
        settings = request.app.state.settings
        # handed over before it is kept: a push we could not hand over is not marked seen, and
        # the shop's retry (or the pull) brings it again
        await wake_shop_order(await temporal_of(request), settings.task_queue, event, settings.order_timings(),
                              settings.shop_order_linger)
        await run_in_threadpool(_keep, request, event)
    return PlainTextResponse("success")


def _seen(request: Request, event: ShopEvent) -> bool:
    with sessions_of(request)() as s:
        return s.scalar(select(ChannelsEvent.id).where(ChannelsEvent.key == event.key)) is not None


def _keep(request: Request, event: ShopEvent) -> None:
    with sessions_of(request).begin() as s:
        store_events(s, [event], "push")
