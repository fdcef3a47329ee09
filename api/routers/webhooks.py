"""Partner notifications. Nothing is believed before its signature is checked: a bad one gets
401 and changes nothing. Good ones are handed to the order's workflow, which ignores repeats."""

from __future__ import annotations

import json

import structlog
from fastapi import APIRouter, Depends, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy import select
from temporalio.common import WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from activities.logistics import keep_trace
from activities.presale import order_of_trade, refund_payments
from api.access import public
from api.deps import sessions_of, temporal_of
from api.routers.withdrawals import transfer_notified
from db.models import Order, Shipment
from db.order_models import Refund
from db.presale_models import RefundPayment
from domain.order_status import OrderStatus
from domain.orders import PaymentNotice, TrackingUpdate
from domain.presale import combined_refund_status
from domain.refunds import RefundInput, RefundKind, RefundNotice, late_payment_refund_no
from integrations import logistics
from workflows.order import OrderWorkflow, workflow_id
from workflows.refund import RefundWorkflow
from workflows.refund import workflow_id as refund_workflow_id

router = APIRouter(prefix="/webhooks", tags=["webhooks"], dependencies=[Depends(public(
    "partners' pushes (WeChat Pay, carriers): each is checked by its signature, not a token"))])
log = structlog.get_logger()


class WeChatPayNotifyAnswer(BaseModel):
    """What the merchant answers a WeChat Pay notification it refuses: 4XX/5XX with
    {"code": "FAIL", "message": ...}; accepted ones get 200/204 with no body (WeChat Pay merchant
    docs, JSAPI支付 · 支付成功回调通知 "商户需要接收处理该消息，并返回应答")."""

    code: str
    message: str


class Kuaidi100PushAnswer(BaseModel):
    """What the subscriber answers a 快递100 push: {"result": true, "returnCode": "200",
    "message": "成功"}; anything else and 快递100 pushes again (快递100 API 推送接口,
    https://apifox.com/apidoc/project-514987/api-8568518)."""

    result: bool
    returnCode: str
    message: str


def _wechat_fail(status: int, message: str) -> JSONResponse:
    # WeChat Pay's documented answer shape for a notification we do not accept.
    return JSONResponse({"code": "FAIL", "message": message}, status_code=status)


WECHATPAY_ANSWERS = {400: {"model": WeChatPayNotifyAnswer, "description": "not for this merchant / malformed"},
                     401: {"model": WeChatPayNotifyAnswer, "description": "signature, timestamp or decryption"}}
KUAIDI100_ANSWERS = {400: {"model": Kuaidi100PushAnswer, "description": "param is not a push"},
                     401: {"model": Kuaidi100PushAnswer, "description": "sign does not match"}}


@router.post("/wechatpay", summary="WeChat Pay v3 notifications (TRANSACTION.SUCCESS, REFUND.*, MCHTRANSFER.BILL.FINISHED)",
             status_code=204, response_class=Response, responses=WECHATPAY_ANSWERS)
async def wechatpay_notification(request: Request) -> Response:
    body = await request.body()
    try:  # verifies the signature, refuses stale timestamps (replays), decrypts
        event = request.app.state.pay.parse_notification(dict(request.headers), body)
    except Exception:  # noqa: BLE001 - a malformed notification is simply not accepted
        event = None
    if not event:
        log.warning("webhook.wechatpay.rejected", reason="signature, timestamp or decryption")
        return _wechat_fail(401, "signature verification failed")
    resource = event["resource"]
    config = request.app.state.pay.config
    if str(event.get("event_type", "")).startswith("REFUND."):
        if resource.get("mchid") != config.mchid:
            return _wechat_fail(400, "notification for another merchant")
        await _refund_notified(request, resource)
        return Response(status_code=204)
    if event.get("event_type") == "MCHTRANSFER.BILL.FINISHED":
        # `mch_id` in WeChat's merchant docs, `mchid` elsewhere: either (TransferBill)
        if (resource.get("mchid") or resource.get("mch_id")) != config.mchid:
            return _wechat_fail(400, "notification for another merchant")
        await transfer_notified(request, resource)
        return Response(status_code=204)
    if event.get("event_type") != "TRANSACTION.SUCCESS":
        return Response(status_code=204)
    if resource.get("mchid") != config.mchid or resource.get("appid") != config.appid:
        return _wechat_fail(400, "notification for another merchant")
    notice = PaymentNotice(out_trade_no=resource["out_trade_no"], transaction_id=resource["transaction_id"],
                           trade_state=resource["trade_state"], amount_fen=resource["amount"]["total"],
                           success_time=resource.get("success_time"))
    order_no = await run_in_threadpool(_order_of_trade, request, notice.out_trade_no)
    handle = (await temporal_of(request)).get_workflow_handle(workflow_id(order_no))
    try:
        await handle.signal(OrderWorkflow.payment_notified, notice)
    except RPCError as err:
        if err.status != RPCStatusCode.NOT_FOUND:
            raise
        await _paid_after_close(request, notice, order_no)
    return Response(status_code=204)


def _order_of_trade(request: Request, out_trade_no: str) -> str:
    """A pre-sale order's deposit and balance have their own out_trade_no ({order_no}D / B)."""
    with sessions_of(request)() as s:
        return order_of_trade(s, out_trade_no)


async def _paid_after_close(request: Request, notice: PaymentNotice, order_no: str) -> None:
    """The order's workflow has ended. If it ended cancelled, the buyer paid after we closed
    the order: the money goes back, automatically (once: the refund's id is the payment's)."""
    def cancelled() -> bool:
        with sessions_of(request)() as s:
            return s.scalar(select(Order.status).where(Order.order_no == order_no)) == OrderStatus.CANCELLED

    if not await run_in_threadpool(cancelled):
        log.info("webhook.wechatpay.repeat_after_end", out_trade_no=notice.out_trade_no)
        return
    settings = request.app.state.settings
    refund_no = late_payment_refund_no(notice.out_trade_no)
    log.warning("webhook.wechatpay.paid_after_close", out_trade_no=notice.out_trade_no, refund_no=refund_no)
    try:
        await (await temporal_of(request)).start_workflow(
            RefundWorkflow.run, RefundInput(
                refund_no=refund_no, order_no=order_no, kind=RefundKind.LATE_PAYMENT,
                amount_fen=notice.amount_fen, needs_return=False, timings=settings.refund_timings(),
                late_payment=notice),
            id=refund_workflow_id(refund_no), task_queue=settings.task_queue,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE)
    except WorkflowAlreadyStartedError:
        pass


async def _refund_notified(request: Request, resource: dict) -> None:
    notice = RefundNotice(refund_no=resource["out_refund_no"], status=resource["refund_status"],
                          refund_id=resource.get("refund_id"))
    notice = await _whole_refund(request, notice)
    handle = (await temporal_of(request)).get_workflow_handle(refund_workflow_id(notice.refund_no))
    try:
        await handle.signal(RefundWorkflow.refund_notified, notice)
    except RPCError as err:
        if err.status != RPCStatusCode.NOT_FOUND:
            raise
        log.info("webhook.wechatpay.refund_not_running", out_refund_no=notice.refund_no)


async def _whole_refund(request: Request, notice: RefundNotice) -> RefundNotice:
    """A part of a refund spanning two payments (pre-sale balance + deposit): the refund's own
    state is that of all its parts, as WeChat Pay has them."""
    def parts() -> tuple[str, list[str]] | None:
        with sessions_of(request)() as s:
            part = s.get(RefundPayment, notice.refund_no)
            if part is None or part.out_refund_no == part.refund_no:
                return None
            return part.refund_no, [p.out_refund_no for p in refund_payments(s, part.refund_no)]

    found = await run_in_threadpool(parts)
    if found is None:
        return notice
    refund_no, out_refund_nos = found
    pay = request.app.state.pay
    answers = [await pay.query_refund(n) for n in out_refund_nos]
    return RefundNotice(refund_no=refund_no, status=combined_refund_status([a.status for a in answers]),
                        refund_id=",".join(a.refund_id for a in answers if a.refund_id) or None)


@router.post("/logistics", summary="Tracking pushes (快递100-style: form fields param + sign)",
             response_model=Kuaidi100PushAnswer, responses=KUAIDI100_ANSWERS)
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

    def workflow_of_waybill() -> tuple[str, str] | None:
        with sessions_of(request)() as s:
            order_no = s.scalar(select(Shipment.order_no).where(
                Shipment.carrier == update.carrier, Shipment.waybill_no == update.waybill_no))
            if order_no:
                return workflow_id(order_no), "tracking_updated"
            refund_no = s.scalar(select(Refund.refund_no).where(
                Refund.return_carrier == update.carrier, Refund.return_waybill_no == update.waybill_no))
            return (refund_workflow_id(refund_no), "return_tracking") if refund_no else None

    def keep() -> None:
        with sessions_of(request).begin() as s:
            keep_trace(s, update)

    await run_in_threadpool(keep)
    target = await run_in_threadpool(workflow_of_waybill)
    if target:
        handle = (await temporal_of(request)).get_workflow_handle(target[0])
        try:
            await handle.signal(target[1], TrackingUpdate(carrier=update.carrier, waybill_no=update.waybill_no,
                                                          state=update.state or "", delivered=update.delivered))
        except RPCError as err:
            if err.status != RPCStatusCode.NOT_FOUND:
                raise
    return JSONResponse({"result": True, "returnCode": "200", "message": "成功"})
