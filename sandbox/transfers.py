"""WeChat Pay v3 merchant transfer bills (商家转账, user-confirmation mode).

A created bill answers WAIT_USER_CONFIRM with a `package_info` for the mini-program's
`wx.requestMerchantTransfer`; the user confirming moves it TRANSFERING -> SUCCESS (or FAIL),
a merchant cancel moves it CANCELING -> CANCELLED. Final states send MCHTRANSFER.BILL.FINISHED
(resource original_type "mch_payment"). Controls play the user: confirm, fail.
Idempotent by out_bill_no. Fault `transfer_never_confirms`: no auto-confirm, confirm refused.

Docs: 发起转账 (https://wechatpay.im/openapi/v3/fund-app/mch-transfer/transfer-bills, mirror of
pay.weixin.qq.com); 商户单号查询转账单 (https://pay.weixin.qq.com/docs/merchant/apis/mch-trans/
transfer-bill/get-transfer-bill-by-out-no.html) answers `mch_id`, as does the 商家转账回调通知
resource in WeChat's merchant docs, while other sources (e.g. https://wechatpay.js.org/webhook/v3/
MCHTRANSFER.BILL.FINISHED) show `mchid`: the sandbox sends `mch_id`, our client accepts both.
`user_name` arrives RSA-OAEP encrypted with the platform public key (the request names that key
in `Wechatpay-Serial`); undecryptable, or without the header, the request is refused. WeChat Pay
checks it against the real name of the WeChat account: a user's real name is set with
`PUT /sandbox/transfers/real-names/{openid}`, and a bill naming someone else FAILs with
NAME_NOT_CORRECT (a user without a registered name accepts any).
"""

from __future__ import annotations

import base64
import secrets
import string
from typing import Any

from cryptography.hazmat.primitives.asymmetric.padding import MGF1, OAEP
from cryptography.hazmat.primitives.hashes import SHA1
from fastapi import APIRouter, FastAPI, Request
from pydantic import BaseModel, Field, StrictInt

from sandbox import notify
from sandbox.context import Sandbox, now_cst
from sandbox.wechatpay import WeChatPayError, authenticate_request, parse

BILL = "wechatpay.transfer_bill"
REAL_NAME = "wechat.real_name"
FINAL = ("SUCCESS", "FAIL", "CANCELLED")
CANCELLABLE = ("ACCEPTED", "PROCESSING", "WAIT_USER_CONFIRM")
# Scenes and the report infos each one requires (商家转账场景报备信息).
SCENE_REPORT_INFOS = {
    "1000": {"活动名称", "奖励说明"},        # 现金营销
    "1005": {"岗位类型", "报酬说明"},        # 佣金报酬
}


class _ReportInfo(BaseModel):
    info_type: str = Field(min_length=1, max_length=15)
    info_content: str = Field(min_length=1, max_length=32)


class TransferRequest(BaseModel):
    appid: str
    out_bill_no: str = Field(pattern=r"^[0-9A-Za-z]{5,32}$")
    transfer_scene_id: str = Field(min_length=1, max_length=36)
    openid: str = Field(min_length=1, max_length=64)
    user_name: str | None = None
    transfer_amount: StrictInt = Field(ge=10)
    transfer_remark: str = Field(min_length=1, max_length=32)
    notify_url: str | None = Field(default=None, pattern=r"^https?://", max_length=256)
    user_recv_perception: str | None = None
    transfer_scene_report_infos: list[_ReportInfo] = Field(default_factory=list)


class RealName(BaseModel):
    name: str = Field(min_length=1, max_length=64)


class FailRequest(BaseModel):
    fail_reason: str = "PAYEE_ACCOUNT_ABNORMAL"


def bill_view(sb: Sandbox, bill: dict[str, Any]) -> dict[str, Any]:
    view = {
        "mch_id": sb.credentials.mchid,
        "out_bill_no": bill["out_bill_no"],
        "transfer_bill_no": bill["transfer_bill_no"],
        "appid": bill["appid"],
        "state": bill["state"],
        "transfer_amount": bill["transfer_amount"],
        "transfer_remark": bill["transfer_remark"],
        "openid": bill["openid"],
        "create_time": bill["create_time"],
        "update_time": bill["update_time"],
    }
    if bill.get("fail_reason"):
        view["fail_reason"] = bill["fail_reason"]
    return view


def finish(sb: Sandbox, out_bill_no: str, state: str, fail_reason: str | None = None) -> dict[str, Any]:
    bill = sb.store.get(BILL, out_bill_no)
    bill["state"] = state
    bill["update_time"] = now_cst().isoformat(timespec="milliseconds")
    if fail_reason:
        bill["fail_reason"] = fail_reason
    sb.store.put(BILL, out_bill_no, bill)
    if bill.get("notify_url"):
        resource = {k: v for k, v in bill_view(sb, bill).items() if k not in ("appid", "transfer_remark")}
        notify.enqueue(
            sb, url=bill["notify_url"], event_type="MCHTRANSFER.BILL.FINISHED",
            summary="商家转账单据终态通知", original_type="mch_payment", resource=resource,
        )
    return bill


def confirm(sb: Sandbox, out_bill_no: str) -> dict[str, Any]:
    bill = sb.store.get(BILL, out_bill_no)
    if bill["state"] != "WAIT_USER_CONFIRM":
        raise WeChatPayError(400, "INVALID_REQUEST", f"转账单状态 {bill['state']} 不能确认收款")
    if sb.faults.config.transfer_never_confirms:
        raise WeChatPayError(400, "INVALID_REQUEST", "sandbox fault transfer_never_confirms: 用户未确认收款")
    bill["state"] = "TRANSFERING"
    sb.store.put(BILL, out_bill_no, bill)
    return finish(sb, out_bill_no, "SUCCESS")


def install(app: FastAPI, sb: Sandbox) -> None:
    creds = sb.credentials
    api = APIRouter(prefix="/v3/fund-app/mch-transfer/transfer-bills", tags=["wechatpay v3 transfer bills"])
    control = APIRouter(prefix="/sandbox/transfers", tags=["sandbox controls"])

    def load(out_bill_no: str) -> dict[str, Any]:
        bill = sb.store.get(BILL, out_bill_no)
        if bill is None:
            raise WeChatPayError(404, "NOT_FOUND", "记录不存在")
        return bill

    def decrypt_user_name(request: Request, ciphertext: str) -> str:
        if request.headers.get("wechatpay-serial") != creds.platform_public_key_id:
            raise WeChatPayError(400, "PARAM_ERROR", "参数错误: 敏感信息加密须带 Wechatpay-Serial 平台公钥ID")
        try:
            return sb.platform_private_key.decrypt(
                base64.b64decode(ciphertext), OAEP(mgf=MGF1(algorithm=SHA1()), algorithm=SHA1(), label=None)
            ).decode()
        except Exception:
            raise WeChatPayError(400, "PARAM_ERROR", "参数错误: user_name 解密失败") from None

    @api.post("")
    async def create(request: Request):
        req: TransferRequest = parse(TransferRequest, await authenticate_request(sb, request))
        if req.appid != creds.appid:
            raise WeChatPayError(400, "INVALID_REQUEST", "appid 与商户号不匹配")
        needed = SCENE_REPORT_INFOS.get(req.transfer_scene_id)
        if needed is None:
            raise WeChatPayError(400, "INVALID_REQUEST", f"转账场景 {req.transfer_scene_id} 未开通")
        given = {i.info_type for i in req.transfer_scene_report_infos}
        if not needed <= given:
            raise WeChatPayError(400, "PARAM_ERROR", f"参数错误: 转账场景报备信息缺少 {'、'.join(sorted(needed - given))}")
        if req.transfer_amount >= 200000 and not req.user_name:
            raise WeChatPayError(400, "PARAM_ERROR", "参数错误: 转账金额 >= 2000元 时 user_name 必填")
        name = decrypt_user_name(request, req.user_name) if req.user_name else None
        registered = sb.store.get(REAL_NAME, req.openid)
        name_wrong = name is not None and registered is not None and registered["name"] != name
        terms = req.model_dump(exclude={"user_name"})
        existing = sb.store.get(BILL, req.out_bill_no)
        if existing is not None:
            if existing["terms"] != terms:
                raise WeChatPayError(400, "INVALID_REQUEST", "商户单号重复，请求参数与原请求不一致")
            bill = existing
        else:
            now = now_cst().isoformat(timespec="milliseconds")
            bill = {
                **terms,
                "terms": terms,
                "transfer_bill_no": "1330" + "".join(secrets.choice(string.digits) for _ in range(36)),
                "state": "WAIT_USER_CONFIRM",
                "create_time": now,
                "update_time": now,
                "package_info": base64.b64encode(secrets.token_bytes(48)).decode(),
            }
            sb.store.put(BILL, req.out_bill_no, bill)
            if name_wrong:  # 姓名校验不通过: the bill fails, the money never leaves
                bill = finish(sb, req.out_bill_no, "FAIL", "NAME_NOT_CORRECT")
            elif not sb.faults.config.transfer_never_confirms:
                sb.later(sb.settle_delay, lambda: _auto_confirm(sb, req.out_bill_no))
        out = {k: bill[k] for k in ("out_bill_no", "transfer_bill_no", "create_time", "state")}
        if bill["state"] == "WAIT_USER_CONFIRM":
            out["package_info"] = bill["package_info"]
        if bill.get("fail_reason"):
            out["fail_reason"] = bill["fail_reason"]
        return sb.platform_signed(200, out)

    @api.get("/out-bill-no/{out_bill_no}")
    async def query(out_bill_no: str, request: Request):
        await authenticate_request(sb, request)
        return sb.platform_signed(200, bill_view(sb, load(out_bill_no)))

    @api.get("/transfer-bill-no/{transfer_bill_no}")
    async def query_by_bill_no(transfer_bill_no: str, request: Request):
        await authenticate_request(sb, request)
        bill = next((b for b in sb.store.all(BILL) if b["transfer_bill_no"] == transfer_bill_no), None)
        if bill is None:
            raise WeChatPayError(404, "NOT_FOUND", "记录不存在")
        return sb.platform_signed(200, bill_view(sb, bill))

    @api.post("/out-bill-no/{out_bill_no}/cancel")
    async def cancel(out_bill_no: str, request: Request):
        await authenticate_request(sb, request)
        bill = load(out_bill_no)
        if bill["state"] not in CANCELLABLE and bill["state"] not in ("CANCELING", "CANCELLED"):
            raise WeChatPayError(400, "INVALID_REQUEST", f"转账单状态 {bill['state']} 不允许撤销")
        if bill["state"] in CANCELLABLE:
            bill = finish(sb, out_bill_no, "CANCELLED")
        # WeChat answers CANCELING; the bill is CANCELLED by the time anyone queries it.
        return sb.platform_signed(200, {
            "out_bill_no": out_bill_no, "transfer_bill_no": bill["transfer_bill_no"],
            "state": "CANCELING", "update_time": bill["update_time"],
        })

    @control.put("/real-names/{openid}")
    async def set_real_name(openid: str, req: RealName):
        """The WeChat account's real name (实名), what a bill's user_name is checked against."""
        sb.store.put(REAL_NAME, openid, {"name": req.name})
        return {"openid": openid}

    @control.post("/{out_bill_no}/confirm")
    async def user_confirms(out_bill_no: str):
        load(out_bill_no)
        return bill_view(sb, confirm(sb, out_bill_no))

    @control.post("/{out_bill_no}/fail")
    async def transfer_fails(out_bill_no: str, req: FailRequest | None = None):
        bill = load(out_bill_no)
        if bill["state"] in FINAL:
            raise WeChatPayError(400, "INVALID_REQUEST", f"转账单已是终态 {bill['state']}")
        return bill_view(sb, finish(sb, out_bill_no, "FAIL", (req or FailRequest()).fail_reason))

    app.include_router(api)
    app.include_router(control)


async def _auto_confirm(sb: Sandbox, out_bill_no: str) -> None:
    bill = sb.store.get(BILL, out_bill_no)
    if bill and bill["state"] == "WAIT_USER_CONFIRM" and not sb.faults.config.transfer_never_confirms:
        confirm(sb, out_bill_no)
