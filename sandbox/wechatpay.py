"""WeChat Pay API v3 (JSAPI orders) plus controls that play the buyer.

Wire contract as documented by WeChat Pay: signed requests (401 SIGN_ERROR otherwise), signed
responses, `{code, message, detail?}` errors, and TRANSACTION.SUCCESS notifications encrypted
with the APIv3 key and retried on WeChat's schedule until the merchant answers 2xx.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import string
import uuid
from datetime import datetime, timedelta
from typing import Any, Literal

from fastapi import APIRouter, FastAPI, Request
from pydantic import BaseModel, Field, StrictInt, ValidationError

from sandbox.context import Sandbox, now_cst
from sandbox.notify import post_with_faults
from sandbox.signing import SignError, aes_gcm_encrypt, verify_authorization

ORDER = "wechatpay.order"
TRANSACTION_ID = "wechatpay.transaction_id"
# WeChat Pay re-sends an unacknowledged notification after these many seconds.
NOTIFY_SCHEDULE = (15, 15, 30, 180, 600, 1200, 1800, 1800, 1800, 3600, 10800, 10800, 10800, 21600, 21600)
# A prepay_id is valid for 2 hours; "若未超过支付结束时间，则可使用原参数重新请求下单接口，以获取当前
# 订单最新的prepay_id" (JSAPI下单, https://pay.weixin.qq.com/doc/v3/merchant/4012525167): the same
# out_trade_no and terms answer the current prepay_id, a new one once it expired.
PREPAY_VALID_SECONDS = 2 * 3600
TRADE_STATE_DESC = {"NOTPAY": "订单未支付", "SUCCESS": "支付成功", "CLOSED": "已关闭", "REFUND": "转入退款"}


class WeChatPayError(Exception):
    def __init__(self, status: int, code: str, message: str, detail: dict | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.detail = status, code, message, detail

    def payload(self) -> dict[str, Any]:
        out: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.detail is not None:
            out["detail"] = self.detail
        return out


class _Amount(BaseModel):
    total: StrictInt = Field(gt=0)
    currency: Literal["CNY"] = "CNY"


class _Payer(BaseModel):
    openid: str = Field(min_length=1, max_length=128)


class _SettleInfo(BaseModel):
    profit_sharing: bool = False


class JsapiRequest(BaseModel):
    appid: str = Field(min_length=1, max_length=32)
    mchid: str = Field(min_length=1, max_length=32)
    description: str = Field(min_length=1, max_length=127)
    out_trade_no: str = Field(pattern=r"^[0-9A-Za-z_\-|*]{6,32}$")
    notify_url: str = Field(pattern=r"^https?://", max_length=256)
    amount: _Amount
    payer: _Payer
    attach: str | None = Field(default=None, max_length=128)
    time_expire: str | None = None
    settle_info: _SettleInfo | None = None


class CloseRequest(BaseModel):
    mchid: str = Field(min_length=1)


def _parse(model: type[BaseModel], body: str) -> Any:
    try:
        return model.model_validate_json(body or "{}")
    except ValidationError as e:
        err = e.errors()[0]
        field = "/" + "/".join(str(p) for p in err["loc"])
        raise WeChatPayError(
            400,
            "PARAM_ERROR",
            f"参数错误: {field} {err['msg']}",
            {"location": "body", "field": field, "issue": err["msg"]},
        ) from None


async def authenticate_request(sb: Sandbox, request: Request) -> str:
    """Check the merchant's request signature; returns the body, or raises 401 SIGN_ERROR."""
    creds = sb.credentials
    body = (await request.body()).decode("utf-8", errors="replace")
    url = request.scope.get("raw_path", request.url.path.encode()).decode("latin-1")
    if request.url.query:
        url += "?" + request.url.query
    candidates = [body]
    if body == "null":
        # wechatpayv3 POSTs `json.dumps(None)` for body-less calls (transfer-bill cancel) but
        # signs an empty body; accept what the library signs.
        candidates.append("")
    error: SignError | None = None
    for signed_body in candidates:
        try:
            verify_authorization(
                request.headers.get("authorization"),
                method=request.method,
                url=url,
                body=signed_body,
                mchid=creds.mchid,
                serial_no=creds.merchant_cert_serial_no,
                merchant_key=sb.merchant_public_key,
            )
            return "" if signed_body == "" else body
        except SignError as e:
            error = error or e
    raise WeChatPayError(401, "SIGN_ERROR", f"签名错误: {error}") from None


def parse(model: type[BaseModel], body: str) -> Any:
    return _parse(model, body)


def check_mchid(sb: Sandbox, mchid: str | None) -> None:
    if not mchid:
        raise WeChatPayError(400, "PARAM_ERROR", "参数错误: mchid 为必填")
    if mchid != sb.credentials.mchid:
        raise WeChatPayError(400, "PARAM_ERROR", "mchid 与请求的商户号不一致")


def transaction_view(order: dict[str, Any]) -> dict[str, Any]:
    """The transaction object exactly as the query API and the notification resource show it."""
    state = order["trade_state"]
    amount = {"total": order["amount"]["total"], "currency": "CNY", "payer_currency": "CNY"}
    view: dict[str, Any] = {
        "appid": order["appid"],
        "mchid": order["mchid"],
        "out_trade_no": order["out_trade_no"],
        "trade_state": state,
        "trade_state_desc": TRADE_STATE_DESC[state],
        "amount": amount,
    }
    if order.get("attach"):
        view["attach"] = order["attach"]
    if order.get("transaction_id"):
        amount["payer_total"] = order["amount"]["total"]
        view.update(
            transaction_id=order["transaction_id"],
            trade_type="JSAPI",
            bank_type="OTHERS",
            success_time=order["success_time"],
            payer={"openid": order["payer"]["openid"]},
        )
    return view


def _new_prepay_id() -> str:
    return "wx" + now_cst().strftime("%Y%m%d%H%M%S") + secrets.token_hex(10)


def _prepay_expiry() -> str:
    return (now_cst() + timedelta(seconds=PREPAY_VALID_SECONDS)).isoformat()


def _prepay_expired(order: dict[str, Any]) -> bool:
    expires = order.get("prepay_expires_at")
    return expires is not None and datetime.fromisoformat(expires) <= now_cst()


def _new_transaction_id() -> str:
    return "4200" + now_cst().strftime("%Y%m%d") + "".join(secrets.choice(string.digits) for _ in range(16))


def install(app: FastAPI, sb: Sandbox) -> None:
    creds = sb.credentials
    api = APIRouter(prefix="/v3/pay/transactions", tags=["wechatpay v3"])
    control = APIRouter(prefix="/sandbox", tags=["sandbox controls"])

    @app.exception_handler(WeChatPayError)
    async def _error(request: Request, exc: WeChatPayError):
        return sb.platform_signed(exc.status, exc.payload())

    async def authenticate(request: Request) -> str:
        return await authenticate_request(sb, request)

    def load(out_trade_no: str) -> dict[str, Any]:
        order = sb.store.get(ORDER, out_trade_no)
        if order is None:
            raise WeChatPayError(404, "ORDER_NOT_EXIST", "订单不存在")
        return order

    def check_mchid(mchid: str | None) -> None:
        if not mchid:
            raise WeChatPayError(400, "PARAM_ERROR", "参数错误: mchid 为必填")
        if mchid != creds.mchid:
            raise WeChatPayError(400, "PARAM_ERROR", "mchid 与请求的商户号不一致")

    @api.post("/jsapi")
    async def create_jsapi(request: Request):
        req: JsapiRequest = _parse(JsapiRequest, await authenticate(request))
        check_mchid(req.mchid)
        if req.appid != creds.appid:
            raise WeChatPayError(400, "APPID_MCHID_NOT_MATCH", "appid和mch_id不匹配")
        terms = req.model_dump(exclude_none=True)
        existing = sb.store.get(ORDER, req.out_trade_no)
        if existing is not None:
            if existing["trade_state"] in ("SUCCESS", "REFUND"):
                raise WeChatPayError(400, "ORDERPAID", "该订单已支付")
            if existing["trade_state"] == "CLOSED":
                raise WeChatPayError(400, "ORDER_CLOSED", "订单已关闭")
            compared = ("appid", "description", "amount", "payer", "attach", "settle_info")
            if any(existing.get(k) != terms.get(k) for k in compared):
                raise WeChatPayError(400, "INVALID_REQUEST", "201 商户订单号重复")
            if _prepay_expired(existing):
                existing.update(prepay_id=_new_prepay_id(), prepay_expires_at=_prepay_expiry())
                sb.store.put(ORDER, req.out_trade_no, existing)
            return sb.platform_signed(200, {"prepay_id": existing["prepay_id"]})
        order = {
            **terms,
            "prepay_id": _new_prepay_id(),
            "prepay_expires_at": _prepay_expiry(),
            "trade_state": "NOTPAY",
            "create_time": now_cst().isoformat(),
            "notify_delivered": False,
            "notify_attempts": [],
        }
        sb.store.put(ORDER, req.out_trade_no, order)
        return sb.platform_signed(200, {"prepay_id": order["prepay_id"]})

    @api.get("/out-trade-no/{out_trade_no}")
    async def query_by_out_trade_no(out_trade_no: str, request: Request, mchid: str | None = None):
        await authenticate(request)
        check_mchid(mchid)
        return sb.platform_signed(200, transaction_view(load(out_trade_no)))

    @api.get("/id/{transaction_id}")
    async def query_by_transaction_id(transaction_id: str, request: Request, mchid: str | None = None):
        await authenticate(request)
        check_mchid(mchid)
        ref = sb.store.get(TRANSACTION_ID, transaction_id)
        if ref is None:
            raise WeChatPayError(404, "ORDER_NOT_EXIST", "订单不存在")
        return sb.platform_signed(200, transaction_view(load(ref["out_trade_no"])))

    @api.post("/out-trade-no/{out_trade_no}/close")
    async def close(out_trade_no: str, request: Request):
        req: CloseRequest = _parse(CloseRequest, await authenticate(request))
        check_mchid(req.mchid)
        order = load(out_trade_no)
        if order["trade_state"] in ("SUCCESS", "REFUND"):
            raise WeChatPayError(400, "ORDERPAID", "订单已支付")
        if order["trade_state"] == "NOTPAY":
            order["trade_state"] = "CLOSED"
            sb.store.put(ORDER, out_trade_no, order)
        return sb.platform_signed(204)

    # --- controls -------------------------------------------------------------------------

    @control.post("/pay/{out_trade_no}")
    async def buyer_pays(out_trade_no: str, after_close: bool = False, prepay_id: str | None = None):
        """The buyer pays. `after_close=true` lets a closed order be paid, as happens when a
        payment already under way at WeChat completes just after the merchant closed it.
        `prepay_id`: the one wx.requestPayment was called with; refused when it is not the
        order's current one or has expired, as the payment page refuses it."""
        order = load(out_trade_no)
        if prepay_id is not None and (prepay_id != order["prepay_id"] or _prepay_expired(order)):
            raise WeChatPayError(400, "PREPAY_EXPIRED", "prepay_id 已失效，请重新下单")
        if order["trade_state"] == "CLOSED" and not after_close:
            raise WeChatPayError(400, "ORDER_CLOSED", "订单已关闭")
        if order["trade_state"] in ("SUCCESS", "REFUND"):
            raise WeChatPayError(400, "ORDERPAID", "订单已支付")
        order.update(
            trade_state="SUCCESS",
            transaction_id=_new_transaction_id(),
            success_time=now_cst().isoformat(),
        )
        order["notification"] = _notification_body(sb, order)
        sb.store.put(ORDER, out_trade_no, order)
        sb.store.put(TRANSACTION_ID, order["transaction_id"], {"out_trade_no": out_trade_no})
        fault = sb.faults.notification("TRANSACTION.SUCCESS")
        if fault is not None and fault.delay_seconds:
            # injected delay: the first delivery happens later, in the background
            sb.spawn(_delayed_delivery(sb, out_trade_no, fault.delay_seconds))
            delivered, status = False, 0
        else:
            delivered, status = await deliver(sb, out_trade_no)
            if not delivered:
                sb.spawn(retry_notification(sb, out_trade_no))
        return {
            "out_trade_no": out_trade_no,
            "transaction_id": order["transaction_id"],
            "delivered": delivered,
            "status": status,
        }

    @control.post("/pay/{out_trade_no}/expire-prepay")
    async def expire_prepay(out_trade_no: str):
        """Two hours pass for the order's prepay_id: it can no longer be paid with."""
        order = load(out_trade_no)
        order["prepay_expires_at"] = now_cst().isoformat()
        sb.store.put(ORDER, out_trade_no, order)
        return {"out_trade_no": out_trade_no, "prepay_id": order["prepay_id"], "expired": True}

    @control.post("/notify/{out_trade_no}/resend")
    async def resend(out_trade_no: str):
        if "notification" not in load(out_trade_no):
            raise WeChatPayError(400, "PARAM_ERROR", "订单未支付，没有可重发的通知")
        delivered, status = await deliver(sb, out_trade_no)
        return {"out_trade_no": out_trade_no, "delivered": delivered, "status": status}

    @control.get("/pay/{out_trade_no}")
    async def inspect(out_trade_no: str):
        """The sandbox's own record of an order, delivery attempts included (debugging aid)."""
        return load(out_trade_no)

    app.include_router(api)
    app.include_router(control)


def _notification_body(sb: Sandbox, order: dict[str, Any]) -> str:
    """Built once per payment, so re-deliveries are byte-identical (same id), as WeChat's are."""
    resource = aes_gcm_encrypt(
        sb.credentials.apiv3_key,
        json.dumps(transaction_view(order), ensure_ascii=False, separators=(",", ":")),
        "transaction",
    )
    body = {
        "id": str(uuid.uuid4()),
        "create_time": now_cst().isoformat(),
        "resource_type": "encrypt-resource",
        "event_type": "TRANSACTION.SUCCESS",
        "summary": "支付成功",
        "resource": {**resource, "original_type": "transaction"},
    }
    return json.dumps(body, ensure_ascii=False, separators=(",", ":"))


async def deliver(sb: Sandbox, out_trade_no: str) -> tuple[bool, int]:
    """One delivery attempt of the order's notification; records the outcome."""
    order = sb.store.get(ORDER, out_trade_no)
    body = order["notification"]
    status = await post_with_faults(sb, order["notify_url"], body, "TRANSACTION.SUCCESS")
    delivered = 200 <= status < 300
    order = sb.store.get(ORDER, out_trade_no)  # re-read: other requests ran while we awaited
    order["notify_attempts"].append({"at": now_cst().isoformat(), "status": status})
    order["notify_delivered"] = order["notify_delivered"] or delivered
    sb.store.put(ORDER, out_trade_no, order)
    return delivered, status


async def _delayed_delivery(sb: Sandbox, out_trade_no: str, delay: float) -> None:
    await asyncio.sleep(delay)
    delivered, _ = await deliver(sb, out_trade_no)
    if not delivered:
        await retry_notification(sb, out_trade_no)


async def retry_notification(sb: Sandbox, out_trade_no: str) -> None:
    for delay in NOTIFY_SCHEDULE:
        await asyncio.sleep(delay * sb.notify_retry_scale)
        order = sb.store.get(ORDER, out_trade_no)
        if order is None or order["notify_delivered"]:
            return
        delivered, _ = await deliver(sb, out_trade_no)
        if delivered:
            return


def resume_pending_notifications(sb: Sandbox) -> None:
    """After a restart, keep retrying notifications nobody has acknowledged yet."""
    for order in sb.store.all(ORDER):
        if order.get("notification") and not order["notify_delivered"]:
            if len(order["notify_attempts"]) <= len(NOTIFY_SCHEDULE):
                sb.spawn(retry_notification(sb, order["out_trade_no"]))

