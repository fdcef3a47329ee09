"""WeChat Pay v3 profit sharing (分账): receivers, split orders, unfreeze, return orders, and the
unsplit amount of a transaction.

Split orders are accepted PROCESSING with receivers PENDING, then settle (after the sandbox's
settle delay or `POST /sandbox/profitsharing/{out_order_no}/settle`) to FINISHED with receivers
SUCCESS (or CLOSED, when the control says so; their money goes back to the unsplit amount).
What all orders of a transaction may split is capped at 30% of its total (WeChat's default
maximum ratio; `create_app(profit_sharing_max_ratio=...)` or the fault admin change it); a
receiver must be added before it is paid; `name` arrives RSA-OAEP encrypted with the platform
key (as wechatpayv3 sends it) and is decrypted here to check it.
"""

from __future__ import annotations

import base64
import secrets
import string
from typing import Any, Literal

from cryptography.hazmat.primitives.asymmetric.padding import MGF1, OAEP
from cryptography.hazmat.primitives.hashes import SHA1
from fastapi import APIRouter, FastAPI, Request
from pydantic import BaseModel, Field, StrictBool, StrictInt

from sandbox.context import Sandbox, now_cst
from sandbox.wechatpay import (
    ORDER,
    TRANSACTION_ID,
    WeChatPayError,
    authenticate_request,
    parse,
)

RECEIVER = "profitsharing.receiver"
SPLIT = "profitsharing.order"
RETURN = "profitsharing.return"
MAX_RATIO = 0.30
RECEIVER_TYPES = Literal["MERCHANT_ID", "PERSONAL_OPENID"]


class ReceiverRequest(BaseModel):
    appid: str
    type: RECEIVER_TYPES
    account: str = Field(min_length=1, max_length=64)
    name: str | None = None
    relation_type: Literal[
        "STORE", "STAFF", "STORE_OWNER", "PARTNER", "HEADQUARTER", "BRAND", "DISTRIBUTOR",
        "USER", "SUPPLIER", "CUSTOM",
    ]
    custom_relation: str | None = Field(default=None, max_length=10)


class DeleteReceiverRequest(BaseModel):
    appid: str
    type: RECEIVER_TYPES
    account: str = Field(min_length=1, max_length=64)


class _SplitReceiver(BaseModel):
    type: RECEIVER_TYPES
    account: str = Field(min_length=1, max_length=64)
    name: str | None = None
    amount: StrictInt = Field(gt=0)
    description: str = Field(min_length=1, max_length=80)


class SplitRequest(BaseModel):
    appid: str
    transaction_id: str = Field(min_length=1, max_length=32)
    out_order_no: str = Field(pattern=r"^[0-9A-Za-z_\-|*@]{1,64}$")
    receivers: list[_SplitReceiver] = Field(min_length=1, max_length=50)
    unfreeze_unsplit: StrictBool


class UnfreezeRequest(BaseModel):
    transaction_id: str = Field(min_length=1, max_length=32)
    out_order_no: str = Field(pattern=r"^[0-9A-Za-z_\-|*@]{1,64}$")
    description: str = Field(min_length=1, max_length=80)


class ReturnRequest(BaseModel):
    order_id: str | None = None
    out_order_no: str | None = None
    out_return_no: str = Field(pattern=r"^[0-9A-Za-z_\-|*@]{1,64}$")
    return_mchid: str = Field(min_length=1, max_length=32)
    amount: StrictInt = Field(gt=0)
    description: str = Field(min_length=1, max_length=80)


class SettleRequest(BaseModel):
    result: Literal["SUCCESS", "CLOSED"] = "SUCCESS"
    fail_reason: str = "RECEIVER_HIGH_RISK"


def max_ratio(sb: Sandbox) -> float:
    override = sb.faults.config.profit_sharing_max_ratio
    return sb.profit_sharing_max_ratio if override is None else override


def _digits(n: int) -> str:
    return "".join(secrets.choice(string.digits) for _ in range(n))


def order_view(order: dict[str, Any]) -> dict[str, Any]:
    receivers = []
    for r in order["receivers"]:
        item = {k: r[k] for k in ("amount", "description", "type", "account", "result", "detail_id", "create_time")}
        if r.get("finish_time"):
            item["finish_time"] = r["finish_time"]
        if r.get("fail_reason"):
            item["fail_reason"] = r["fail_reason"]
        receivers.append(item)
    return {
        "transaction_id": order["transaction_id"],
        "out_order_no": order["out_order_no"],
        "order_id": order["order_id"],
        "state": order["state"],
        "receivers": receivers,
    }


def unsplit_amount(sb: Sandbox, transaction: dict[str, Any]) -> int:
    orders = [o for o in sb.store.all(SPLIT) if o["transaction_id"] == transaction["transaction_id"]]
    if any(o.get("finishes") for o in orders if o["state"] == "FINISHED"):
        return 0
    taken = sum(r["amount"] for o in orders for r in o["receivers"] if r["result"] != "CLOSED")
    return transaction["amount"]["total"] - taken


def settle(sb: Sandbox, out_order_no: str, result: str = "SUCCESS", fail_reason: str = "RECEIVER_HIGH_RISK") -> dict[str, Any] | None:
    order = sb.store.get(SPLIT, out_order_no)
    if order is None or order["state"] != "PROCESSING":
        return order
    now = now_cst().isoformat()
    for r in order["receivers"]:
        if r["result"] == "PENDING":
            r["result"], r["finish_time"] = result, now
            if result == "CLOSED":
                r["fail_reason"] = fail_reason
    order["state"] = "FINISHED"
    sb.store.put(SPLIT, out_order_no, order)
    if order.get("unfreeze_unsplit"):
        txn = _transaction(sb, order["transaction_id"])
        remaining = unsplit_amount(sb, txn)
        if remaining > 0:
            order["receivers"].append(_merchant_receiver(sb, remaining, "解冻给分账方", now))
        order["finishes"] = True
        sb.store.put(SPLIT, out_order_no, order)
    return order


def _merchant_receiver(sb: Sandbox, amount: int, description: str, now: str) -> dict[str, Any]:
    return {
        "type": "MERCHANT_ID", "account": sb.credentials.mchid, "amount": amount,
        "description": description, "result": "SUCCESS", "detail_id": "3600" + _digits(28),
        "create_time": now, "finish_time": now, "unfreeze": True,
    }


def _transaction(sb: Sandbox, transaction_id: str) -> dict[str, Any]:
    ref = sb.store.get(TRANSACTION_ID, transaction_id)
    order = sb.store.get(ORDER, ref["out_trade_no"]) if ref else None
    if order is None:
        raise WeChatPayError(404, "RESOURCE_NOT_EXISTS", "订单不存在")
    return order


def _splittable(sb: Sandbox, transaction_id: str) -> dict[str, Any]:
    """Only a payment ordered with settle_info.profit_sharing=true is frozen for splitting."""
    order = _transaction(sb, transaction_id)
    if not (order.get("settle_info") or {}).get("profit_sharing"):
        raise WeChatPayError(400, "INVALID_REQUEST", "该笔订单不支持分账：下单时未设置 settle_info.profit_sharing")
    return order


def install(app: FastAPI, sb: Sandbox) -> None:
    creds = sb.credentials
    api = APIRouter(prefix="/v3/profitsharing", tags=["wechatpay v3 profit sharing"])
    control = APIRouter(prefix="/sandbox/profitsharing", tags=["sandbox controls"])

    def decrypt_name(request: Request, name: str) -> str:
        if request.headers.get("wechatpay-serial") != creds.platform_public_key_id:
            raise WeChatPayError(400, "PARAM_ERROR", "参数错误: 敏感信息加密须带 Wechatpay-Serial 平台公钥ID")
        try:
            return sb.platform_private_key.decrypt(
                base64.b64decode(name), OAEP(mgf=MGF1(algorithm=SHA1()), algorithm=SHA1(), label=None)
            ).decode()
        except Exception:
            raise WeChatPayError(400, "PARAM_ERROR", "参数错误: name 解密失败") from None

    def check_appid(appid: str) -> None:
        if appid != creds.appid:
            raise WeChatPayError(400, "INVALID_REQUEST", "appid 与商户号不匹配")

    @api.post("/receivers/add")
    async def add_receiver(request: Request):
        req: ReceiverRequest = parse(ReceiverRequest, await authenticate_request(sb, request))
        check_appid(req.appid)
        if req.name:
            decrypt_name(request, req.name)
        elif req.type == "MERCHANT_ID":
            raise WeChatPayError(400, "PARAM_ERROR", "参数错误: 接收方类型为MERCHANT_ID时 name 必填")
        if req.relation_type == "CUSTOM" and not req.custom_relation:
            raise WeChatPayError(400, "PARAM_ERROR", "参数错误: relation_type 为 CUSTOM 时 custom_relation 必填")
        sb.store.put(RECEIVER, f"{req.type}:{req.account}", req.model_dump(exclude_none=True))
        out = {"type": req.type, "account": req.account, "relation_type": req.relation_type}
        if req.name:
            out["name"] = req.name
        if req.custom_relation:
            out["custom_relation"] = req.custom_relation
        return sb.platform_signed(200, out)

    @api.post("/receivers/delete")
    async def delete_receiver(request: Request):
        req: DeleteReceiverRequest = parse(DeleteReceiverRequest, await authenticate_request(sb, request))
        check_appid(req.appid)
        sb.store.delete(RECEIVER, f"{req.type}:{req.account}")
        return sb.platform_signed(200, {"type": req.type, "account": req.account})

    @api.post("/orders")
    async def create_order(request: Request):
        req: SplitRequest = parse(SplitRequest, await authenticate_request(sb, request))
        check_appid(req.appid)
        for r in req.receivers:
            if r.name:
                decrypt_name(request, r.name)
        existing = sb.store.get(SPLIT, req.out_order_no)
        terms = [(r.type, r.account, r.amount) for r in req.receivers]
        if existing is not None:
            if existing["transaction_id"] != req.transaction_id or existing["terms"] != [list(t) for t in terms]:
                raise WeChatPayError(400, "INVALID_REQUEST", "商户分账单号重复，请求参数与原请求不一致")
            return sb.platform_signed(200, order_view(existing))
        txn = _splittable(sb, req.transaction_id)
        if txn["trade_state"] not in ("SUCCESS", "REFUND"):
            raise WeChatPayError(400, "INVALID_REQUEST", "订单未支付，不能分账")
        for r in req.receivers:
            if sb.store.get(RECEIVER, f"{r.type}:{r.account}") is None:
                raise WeChatPayError(400, "INVALID_REQUEST", f"分账接收方 {r.account} 未添加或已删除")
        remaining = unsplit_amount(sb, txn)
        if remaining == 0 and any(o.get("finishes") for o in sb.store.all(SPLIT) if o["transaction_id"] == req.transaction_id):
            raise WeChatPayError(400, "INVALID_REQUEST", "该笔订单分账已完结")
        total = txn["amount"]["total"]
        already = total - remaining
        asked = sum(r.amount for r in req.receivers)
        ratio = max_ratio(sb)
        cap = total * round(ratio * 10_000) // 10_000  # integer arithmetic: no float rounding at the edge
        if already + asked > cap:
            raise WeChatPayError(
                400, "INVALID_REQUEST",
                f"分账金额超出最大分账比例 {ratio * 100:g}%: 最多可分 {max(cap - already, 0)} 分",
            )
        now = now_cst().isoformat()
        order = {
            "transaction_id": req.transaction_id,
            "out_order_no": req.out_order_no,
            "order_id": "3008" + _digits(24),
            "state": "PROCESSING",
            "unfreeze_unsplit": req.unfreeze_unsplit,
            "terms": [list(t) for t in terms],
            "receivers": [
                {"type": r.type, "account": r.account, "amount": r.amount, "description": r.description,
                 "result": "PENDING", "detail_id": "3600" + _digits(28), "create_time": now}
                for r in req.receivers
            ],
        }
        sb.store.put(SPLIT, req.out_order_no, order)

        async def auto_settle() -> None:
            settle(sb, req.out_order_no)

        sb.later(sb.settle_delay, auto_settle)
        return sb.platform_signed(200, order_view(order))

    @api.get("/orders/{out_order_no}")
    async def query_order(out_order_no: str, request: Request, transaction_id: str | None = None):
        await authenticate_request(sb, request)
        if not transaction_id:
            raise WeChatPayError(400, "PARAM_ERROR", "参数错误: transaction_id 为必填")
        order = sb.store.get(SPLIT, out_order_no)
        if order is None or order["transaction_id"] != transaction_id:
            raise WeChatPayError(404, "RESOURCE_NOT_EXISTS", "分账单不存在")
        return sb.platform_signed(200, order_view(order))

    @api.post("/orders/unfreeze")
    async def unfreeze(request: Request):
        req: UnfreezeRequest = parse(UnfreezeRequest, await authenticate_request(sb, request))
        existing = sb.store.get(SPLIT, req.out_order_no)
        if existing is not None:
            if existing["transaction_id"] != req.transaction_id:
                raise WeChatPayError(400, "INVALID_REQUEST", "商户分账单号重复")
            return sb.platform_signed(200, order_view(existing))
        txn = _splittable(sb, req.transaction_id)
        orders = [o for o in sb.store.all(SPLIT) if o["transaction_id"] == req.transaction_id]
        if any(o.get("finishes") for o in orders):
            raise WeChatPayError(400, "INVALID_REQUEST", "该笔订单分账已完结")
        if any(o["state"] == "PROCESSING" for o in orders):
            raise WeChatPayError(400, "INVALID_REQUEST", "该笔订单有分账处理中，请稍后再试")
        now = now_cst().isoformat()
        remaining = unsplit_amount(sb, txn)
        order = {
            "transaction_id": req.transaction_id,
            "out_order_no": req.out_order_no,
            "order_id": "3008" + _digits(24),
            "state": "FINISHED",
            "finishes": True,
            "terms": [],
            "receivers": [_merchant_receiver(sb, remaining, req.description, now)] if remaining else [],
        }
        sb.store.put(SPLIT, req.out_order_no, order)
        return sb.platform_signed(200, order_view(order))

    @api.get("/transactions/{transaction_id}/amounts")
    async def amounts(transaction_id: str, request: Request):
        await authenticate_request(sb, request)
        txn = _transaction(sb, transaction_id)
        return sb.platform_signed(200, {"transaction_id": transaction_id, "unsplit_amount": unsplit_amount(sb, txn)})

    def return_view(ret: dict[str, Any]) -> dict[str, Any]:
        keys = ("order_id", "out_order_no", "out_return_no", "return_id", "return_mchid", "amount",
                "description", "result", "create_time", "finish_time")
        view = {k: ret[k] for k in keys}
        if ret.get("fail_reason"):
            view["fail_reason"] = ret["fail_reason"]
        return view

    @api.post("/return-orders")
    async def create_return(request: Request):
        req: ReturnRequest = parse(ReturnRequest, await authenticate_request(sb, request))
        if req.out_order_no:
            order = sb.store.get(SPLIT, req.out_order_no)
        elif req.order_id:
            order = next((o for o in sb.store.all(SPLIT) if o["order_id"] == req.order_id), None)
        else:
            raise WeChatPayError(400, "PARAM_ERROR", "参数错误: order_id 和 out_order_no 必须二选一")
        if order is None:
            raise WeChatPayError(404, "RESOURCE_NOT_EXISTS", "分账单不存在")
        existing = sb.store.get(RETURN, req.out_return_no)
        if existing is not None:
            if (existing["out_order_no"], existing["return_mchid"], existing["amount"]) != (
                order["out_order_no"], req.return_mchid, req.amount,
            ):
                raise WeChatPayError(400, "INVALID_REQUEST", "商户回退单号重复，请求参数与原请求不一致")
            return sb.platform_signed(200, return_view(existing))
        paid = sum(
            r["amount"] for r in order["receivers"]
            if r["type"] == "MERCHANT_ID" and r["account"] == req.return_mchid
            and r["result"] == "SUCCESS" and not r.get("unfreeze")
        )
        returned = sum(
            x["amount"] for x in sb.store.all(RETURN)
            if x["out_order_no"] == order["out_order_no"] and x["return_mchid"] == req.return_mchid
            and x["result"] != "FAILED"
        )
        # 请求分账回退 (https://pay.weixin.qq.com/doc/v3/partner/4012467097): more than the receiver got
        # and has not returned is 400 INVALID_REQUEST "剩余可回退的金额不足"; the receiver's balance
        # being short is 403 NOT_ENOUGH "可用余额不足，请充值后重新发起" (as merchants see both:
        # https://developers.weixin.qq.com/community/pay/doc/000e04ec2343e03247bd419a356000).
        if req.amount > paid - returned:
            raise WeChatPayError(400, "INVALID_REQUEST", f"剩余可回退的金额不足: 剩余可回退 {max(paid - returned, 0)} 分")
        if "profitsharing_return" in sb.faults.config.balance_short:
            raise WeChatPayError(403, "NOT_ENOUGH", "可用余额不足，请充值后重新发起")
        now = now_cst().isoformat()
        ret = {
            "order_id": order["order_id"], "out_order_no": order["out_order_no"],
            "out_return_no": req.out_return_no, "return_id": "3008" + _digits(24),
            "return_mchid": req.return_mchid, "amount": req.amount, "description": req.description,
            "result": "SUCCESS", "create_time": now, "finish_time": now,
        }
        sb.store.put(RETURN, req.out_return_no, ret)
        return sb.platform_signed(200, return_view(ret))

    @api.get("/return-orders/{out_return_no}")
    async def query_return(out_return_no: str, request: Request, out_order_no: str | None = None):
        await authenticate_request(sb, request)
        ret = sb.store.get(RETURN, out_return_no)
        if ret is None or (out_order_no and ret["out_order_no"] != out_order_no):
            raise WeChatPayError(404, "RESOURCE_NOT_EXISTS", "回退单不存在")
        return sb.platform_signed(200, return_view(ret))

    @control.post("/{out_order_no}/settle")
    async def settle_now(out_order_no: str, req: SettleRequest | None = None):
        order = sb.store.get(SPLIT, out_order_no)
        if order is None:
            raise WeChatPayError(404, "RESOURCE_NOT_EXISTS", "分账单不存在")
        if order["state"] != "PROCESSING":
            raise WeChatPayError(400, "INVALID_REQUEST", "分账单已是终态")
        req = req or SettleRequest()
        return order_view(settle(sb, out_order_no, req.result, req.fail_reason))

    app.include_router(api)
    app.include_router(control)
