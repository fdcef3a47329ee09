"""Partner notifications. Nothing is believed before its signature is checked: a bad one gets
401 and changes nothing. Good ones are handed to the order's workflow, which ignores repeats."""

from __future__ import annotations

import json

import structlog
from fastapi import APIRouter, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from sqlalchemy import select
from temporalio.service import RPCError, RPCStatusCode

from chuchuang.api.deps import sessions_of, temporal_of
from chuchuang.db.models import Shipment
from chuchuang.domain.orders import PaymentNotice
from chuchuang.integrations import logistics
from chuchuang.workflows.order import OrderWorkflow, workflow_id

router = APIRouter(prefix="/webhooks", tags=["webhooks"])
log = structlog.get_logger()


def _wechat_fail(status: int, message: str) -> JSONResponse:
    # WeChat Pay's documented answer shape for a notification we do not accept.
    return JSONResponse({"code": "FAIL", "message": message}, status_code=status)


@router.post("/wechatpay", summary="WeChat Pay v3 notifications (TRANSACTION.SUCCESS)")
async def wechatpay_notification(request: Request) -> Response:
    body = await request.body()
    try:  # verifies the signature, refuses stale timestamps (replays), decrypts
        event = request.app.state.pay.parse_notification(dict(request.headers), body)
    except Exception:  # noqa: BLE001 - a malformed notification is simply not accepted
        event = None
    if not event:
        log.warning("webhook.wechatpay.rejected", reason="signature, timestamp or decryption")
        return _wechat_fail(401, "signature verification failed")
    if event.get("event_type") != "TRANSACTION.SUCCESS":
        return Response(status_code=204)
    resource = event["resource"]
    config = request.app.state.pay.config
    if resource.get("mchid") != config.mchid or resource.get("appid") != config.appid:
        return _wechat_fail(400, "notification for another merchant")
    notice = PaymentNotice(out_trade_no=resource["out_trade_no"], transaction_id=resource["transaction_id"],
                           trade_state=resource["trade_state"], amount_fen=resource["amount"]["total"],
                           success_time=resource.get("success_time"))
    handle = (await temporal_of(request)).get_workflow_handle(workflow_id(notice.out_trade_no))
    try:
        await handle.signal(OrderWorkflow.payment_notified, notice)
    except RPCError as err:
        if err.status != RPCStatusCode.NOT_FOUND:
            raise
        log.error("webhook.wechatpay.order_not_running", out_trade_no=notice.out_trade_no)
    return Response(status_code=204)


@router.post("/logistics", summary="Tracking pushes (快递100-style: form fields param + sign)")
async def logistics_push(request: Request) -> JSONResponse:
    form = await request.form()
    param, sign = str(form.get("param", "")), str(form.get("sign", ""))
    settings = request.app.state.settings
    if not param or not logistics.verify_push(param, sign, logistics.callback_salt(settings)):
        return JSONResponse({"result": False, "returnCode": "401", "message": "签名错误"}, status_code=401)
    try:
        update = logistics.parse_push(param)
    except (ValueError, KeyError, json.JSONDecodeError):
        return JSONResponse({"result": False, "returnCode": "400", "message": "参数错误"}, status_code=400)

    def order_of_waybill() -> str | None:
        with sessions_of(request)() as s:
            return s.scalar(select(Shipment.order_no).where(
                Shipment.carrier == update.carrier, Shipment.waybill_no == update.waybill_no))

    order_no = await run_in_threadpool(order_of_waybill)
    if order_no:
        handle = (await temporal_of(request)).get_workflow_handle(workflow_id(order_no))
        try:
            await handle.signal(OrderWorkflow.tracking_updated, update)
        except RPCError as err:
            if err.status != RPCStatusCode.NOT_FOUND:
                raise
    return JSONResponse({"result": True, "returnCode": "200", "message": "成功"})
