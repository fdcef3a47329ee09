"""WeChat Pay v3 domestic refunds: create, query, REFUND.* notifications, and a settle control.

A refund is accepted as PROCESSING and later ends SUCCESS, ABNORMAL or CLOSED (the fault
config's `refund_outcome`, or the control's body). Refunds are idempotent by out_refund_no;
the sum of live refunds (PROCESSING, SUCCESS, ABNORMAL) may not exceed the order total:
asking for more than is left is 400 INVALID_REQUEST "申请退款金额超过订单可退金额"; 403
NOT_ENOUGH is something else, the merchant account's balance being short ("基本账户余额不足，请充值
后重新发起"; fault `balance_short: ["refund"]`). The paid transaction's trade_state becomes REFUND.

Doc: 申请退款 (https://pay.weixin.qq.com/wiki/doc/apiv3/apis/chapter3_1_9.shtml): error codes 400
PARAM_ERROR / INVALID_REQUEST, 403 NOT_ENOUGH 余额不足, 404 RESOURCE_NOT_EXISTS, 429
FREQUENCY_LIMITED; the over-refund answer as merchants see it: https://developers.weixin.qq.com/
community/pay/doc/000c86698204e078e252aef9561000 (INVALID_REQUEST 申请退款金额超过订单可退金额).
REFUND.* notification resource (退款结果通知): mchid, out_trade_no, transaction_id, out_refund_no,
refund_id, refund_status, success_time, user_received_account, amount{total, refund, payer_total,
payer_refund}.
"""

from __future__ import annotations

import secrets
import string
from typing import Any, Literal

from fastapi import APIRouter, FastAPI, Request
from pydantic import BaseModel, Field, StrictInt

from sandbox import notify
from sandbox.context import Sandbox, now_cst
from sandbox.wechatpay import (
    ORDER,
    TRANSACTION_ID,
    WeChatPayError,
    authenticate_request,
    parse,
)

REFUND = "wechatpay.refund"
LIVE = ("PROCESSING", "SUCCESS", "ABNORMAL")
SUMMARY = {"SUCCESS": "退款成功", "ABNORMAL": "退款异常", "CLOSED": "退款关闭"}


class _RefundAmount(BaseModel):
    refund: StrictInt = Field(gt=0)
    total: StrictInt = Field(gt=0)
    currency: Literal["CNY"] = "CNY"


class RefundRequest(BaseModel):
    transaction_id: str | None = Field(default=None, max_length=32)
    out_trade_no: str | None = Field(default=None, max_length=32)
    out_refund_no: str = Field(pattern=r"^[0-9A-Za-z_\-|*@]{1,64}$")
    reason: str | None = Field(default=None, max_length=80)
    notify_url: str | None = Field(default=None, pattern=r"^https?://", max_length=256)
    funds_account: Literal["AVAILABLE", "UNSETTLED"] | None = None
    amount: _RefundAmount
    goods_detail: list[dict[str, Any]] | None = None


class SettleRequest(BaseModel):
    status: Literal["SUCCESS", "ABNORMAL", "CLOSED"] | None = None


def refund_view(refund: dict[str, Any]) -> dict[str, Any]:
    amount = refund["amount"]
    view: dict[str, Any] = {
        "refund_id": refund["refund_id"],
        "out_refund_no": refund["out_refund_no"],
        "transaction_id": refund["transaction_id"],
        "out_trade_no": refund["out_trade_no"],
        "channel": "ORIGINAL",
        "user_received_account": "支付用户零钱",
        "create_time": refund["create_time"],
        "status": refund["status"],
        "funds_account": refund.get("funds_account") or "AVAILABLE",
        "amount": {
            "total": amount["total"], "refund": amount["refund"], "from": [],
            "payer_total": amount["total"], "payer_refund": amount["refund"],
            "settlement_refund": amount["refund"], "settlement_total": amount["total"],
            "discount_refund": 0, "currency": "CNY", "refund_fee": 0,
        },
        "promotion_detail": [],
    }
    if refund.get("success_time"):
        view["success_time"] = refund["success_time"]
    return view


def notification_resource(sb: Sandbox, refund: dict[str, Any]) -> dict[str, Any]:
    out = {
        "mchid": sb.credentials.mchid,
        "transaction_id": refund["transaction_id"],
        "out_trade_no": refund["out_trade_no"],
        "refund_id": refund["refund_id"],
        "out_refund_no": refund["out_refund_no"],
        "refund_status": refund["status"],
        "user_received_account": "支付用户零钱",
        "amount": {
            "total": refund["amount"]["total"], "refund": refund["amount"]["refund"],
            "payer_total": refund["amount"]["total"], "payer_refund": refund["amount"]["refund"],
        },
    }
    if refund.get("success_time"):
        out["success_time"] = refund["success_time"]
    return out


def _new_refund_id() -> str:
    return "50" + "".join(secrets.choice(string.digits) for _ in range(27))


def settle(sb: Sandbox, out_refund_no: str, status: str | None = None) -> dict[str, Any]:
    """Move a PROCESSING refund to its end state and notify; no-op if already final."""
    refund = sb.store.get(REFUND, out_refund_no)
    if refund is None or refund["status"] != "PROCESSING":
        return refund
    refund["status"] = status or sb.faults.config.refund_outcome
    if refund["status"] == "SUCCESS":
        refund["success_time"] = now_cst().isoformat()
    sb.store.put(REFUND, out_refund_no, refund)
    if refund.get("notify_url"):
        notify.enqueue(
            sb, url=refund["notify_url"], event_type=f"REFUND.{refund['status']}",
            summary=SUMMARY[refund["status"]], original_type="refund",
            resource=notification_resource(sb, refund),
        )
    return refund


def install(app: FastAPI, sb: Sandbox) -> None:
    api = APIRouter(prefix="/v3/refund/domestic/refunds", tags=["wechatpay v3 refunds"])
    control = APIRouter(prefix="/sandbox/refunds", tags=["sandbox controls"])

    def load(out_refund_no: str) -> dict[str, Any]:
        refund = sb.store.get(REFUND, out_refund_no)
        if refund is None:
            raise WeChatPayError(404, "RESOURCE_NOT_EXISTS", "退款单不存在")
        return refund

    @api.post("")
    async def create(request: Request):
        req: RefundRequest = parse(RefundRequest, await authenticate_request(sb, request))
        if req.transaction_id:
            ref = sb.store.get(TRANSACTION_ID, req.transaction_id)
            order = sb.store.get(ORDER, ref["out_trade_no"]) if ref else None
        elif req.out_trade_no:
            order = sb.store.get(ORDER, req.out_trade_no)
        else:
            raise WeChatPayError(400, "PARAM_ERROR", "参数错误: transaction_id 和 out_trade_no 必须二选一")
        if order is None:
            raise WeChatPayError(404, "RESOURCE_NOT_EXISTS", "订单不存在")
        existing = sb.store.get(REFUND, req.out_refund_no)
        if existing is not None:
            if existing["out_trade_no"] != order["out_trade_no"] or existing["amount"] != req.amount.model_dump():
                raise WeChatPayError(400, "INVALID_REQUEST", "商户退款单号重复，请求参数与原请求不一致")
            return sb.platform_signed(200, refund_view(existing))
        if order["trade_state"] not in ("SUCCESS", "REFUND"):
            raise WeChatPayError(400, "INVALID_REQUEST", "订单未支付或已关闭，不能退款")
        total = order["amount"]["total"]
        if req.amount.total != total:
            raise WeChatPayError(400, "PARAM_ERROR", "参数错误: amount.total 与原订单金额不一致")
        refunded = sum(
            r["amount"]["refund"] for r in sb.store.all(REFUND)
            if r["out_trade_no"] == order["out_trade_no"] and r["status"] in LIVE
        )
        if req.amount.refund > total - refunded:
            raise WeChatPayError(400, "INVALID_REQUEST", f"申请退款金额超过订单可退金额: 剩余可退 {total - refunded} 分")
        if "refund" in sb.faults.config.balance_short:
            raise WeChatPayError(403, "NOT_ENOUGH", "基本账户余额不足，请充值后重新发起")
        refund = {
            "refund_id": _new_refund_id(),
            "out_refund_no": req.out_refund_no,
            "transaction_id": order["transaction_id"],
            "out_trade_no": order["out_trade_no"],
            "amount": req.amount.model_dump(),
            "reason": req.reason,
            "notify_url": req.notify_url,
            "funds_account": req.funds_account,
            "status": "PROCESSING",
            "create_time": now_cst().isoformat(),
        }
        sb.store.put(REFUND, req.out_refund_no, refund)
        order["trade_state"] = "REFUND"
        sb.store.put(ORDER, order["out_trade_no"], order)
        sb.later(sb.settle_delay, lambda: _settle_async(sb, req.out_refund_no))
        return sb.platform_signed(200, refund_view(refund))

    @api.get("/{out_refund_no}")
    async def query(out_refund_no: str, request: Request):
        await authenticate_request(sb, request)
        return sb.platform_signed(200, refund_view(load(out_refund_no)))

    @control.post("/{out_refund_no}/settle")
    async def settle_now(out_refund_no: str, req: SettleRequest | None = None):
        refund = load(out_refund_no)
        if refund["status"] != "PROCESSING":
            raise WeChatPayError(400, "INVALID_REQUEST", f"退款单已是终态 {refund['status']}")
        return refund_view(settle(sb, out_refund_no, req.status if req else None))

    app.include_router(api)
    app.include_router(control)


async def _settle_async(sb: Sandbox, out_refund_no: str) -> None:
    settle(sb, out_refund_no)
