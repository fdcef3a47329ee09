"""Parcel tracking in 快递100's wire format: subscribe (`/poll`), real-time query
(`/poll/query.do`) and signed pushes to the subscriber's callback, plus a control that moves
a parcel along.

Form-encoded requests, JSON answers with string `returnCode`s, push signed with
`MD5(param + salt)`, query signed with `MD5(param + key + customer)`, all upper-case hex.

Docs: 快递100 API (https://apifox.com/apidoc/docs-site/514987/): 快递信息推送服务 · 订阅接口 and
推送接口 (https://apifox.com/apidoc/project-514987/api-8568518: sign = md5(param + salt), param
{status, billstatus, message, autoCheck, comOld, comNew, lastResult}), 实时快递查询接口.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from typing import Any

from fastapi import APIRouter, FastAPI, HTTPException, Request
from pydantic import BaseModel, Field

from sandbox.context import Sandbox, now_cst

PARCEL = "logistics.parcel"
STATES = {
    "0": "在途", "1": "揽收", "2": "疑难", "3": "签收", "4": "退签",
    "5": "派件", "6": "退回", "7": "转投", "8": "清关", "14": "拒签",
}
SIGNED = "3"
BAD_SUBSCRIPTION = "订阅方的订阅数据存在错误（如不支持的快递公司、单号为空、单号超长等）或错误的回调地址"
_DEFAULT_CONTEXT = {
    "0": "快件已到达【{location}】转运中心，正发往下一站",
    "1": "【{location}】快递员已揽收",
    "3": "【{location}】快件已签收，签收人：本人",
    "5": "【{location}】快递员正在派件",
}


def md5_upper(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest().upper()


def _fail(code: str, message: str) -> dict[str, Any]:
    return {"result": False, "returnCode": code, "message": message}


class AdvanceRequest(BaseModel):
    company: str = Field(min_length=1)
    number: str = Field(min_length=1)
    state: str
    context: str | None = None
    location: str = "深圳市"


def last_result(parcel: dict[str, Any]) -> dict[str, Any]:
    """The tracking record as the query answer and a push's `lastResult` show it."""
    steps = [{k: s[k] for k in ("time", "ftime", "context", "location")} for s in reversed(parcel["steps"])]
    return {
        "message": "ok",
        "nu": parcel["number"],
        "ischeck": "1" if parcel["state"] == SIGNED else "0",
        "condition": "F00",
        "com": parcel["company"],
        "status": "200",
        "state": parcel["state"],
        "data": steps,
    }


def install(app: FastAPI, sb: Sandbox) -> None:
    creds = sb.credentials
    router = APIRouter(tags=["logistics (快递100)"])

    @router.post("/poll")
    async def subscribe(request: Request):
        form = await request.form()
        try:
            param = json.loads(str(form.get("param", "")))
            company, number = param["company"], param["number"]
            parameters = param.get("parameters") or {}
            callbackurl = parameters["callbackurl"]
        except (ValueError, KeyError, TypeError):
            return _fail("700", BAD_SUBSCRIPTION)
        if not secrets.compare_digest(str(param.get("key", "")), creds.logistics_key):
            return _fail("600", "您不是合法的订阅者（即授权Key出错）")
        if not company or not 6 <= len(str(number)) <= 32 or not str(callbackurl).startswith("http"):
            return _fail("700", BAD_SUBSCRIPTION)
        key = f"{company}:{number}"
        parcel = sb.store.get(PARCEL, key) or {"company": company, "number": number, "state": "0", "steps": []}
        if parcel.get("subscription") and parcel["state"] != SIGNED:
            return _fail("501", "重复订阅")
        parcel["subscription"] = {"callbackurl": callbackurl, "salt": parameters.get("salt") or ""}
        sb.store.put(PARCEL, key, parcel)
        if parcel["steps"]:
            # 快递100 pushes what it already knows right after a subscription, so a subscriber
            # who came after the carrier's last event still learns the parcel's current state
            sb.spawn(_push(sb, parcel, parcel["subscription"]))
        return {"result": True, "returnCode": "200", "message": "提交成功"}

    @router.post("/poll/query.do")
    async def query(request: Request):
        form = await request.form()
        customer, sign, param_text = (str(form.get(k, "")) for k in ("customer", "sign", "param"))
        if customer != creds.logistics_customer or not secrets.compare_digest(
            sign.upper(), md5_upper(param_text + creds.logistics_key + creds.logistics_customer)
        ):
            return _fail("400", "找不到对应公司或签名验证失败")
        try:
            param = json.loads(param_text)
            company, number = param["com"], param["num"]
        except (ValueError, KeyError, TypeError):
            return _fail("400", "提交的数据不完整，或者贵公司没授权")
        parcel = sb.store.get(PARCEL, f"{company}:{number}")
        if parcel is None or not parcel["steps"]:
            return _fail("500", "查询无结果，请隔段时间再查")
        return last_result(parcel)

    @router.post("/sandbox/logistics/advance", tags=["sandbox controls"])
    async def advance(req: AdvanceRequest):
        if req.state not in STATES:
            raise HTTPException(400, f"unknown state {req.state!r}; known: {', '.join(STATES)}")
        key = f"{req.company}:{req.number}"
        parcel = sb.store.get(PARCEL, key) or {
            "company": req.company, "number": req.number, "state": "0", "steps": []
        }
        stamp = now_cst().strftime("%Y-%m-%d %H:%M:%S")
        context = req.context or _DEFAULT_CONTEXT.get(req.state, STATES[req.state]).format(location=req.location)
        parcel["steps"].append(
            {"time": stamp, "ftime": stamp, "context": context, "location": req.location, "state": req.state}
        )
        parcel["state"] = req.state
        sb.store.put(PARCEL, key, parcel)
        subscription = parcel.get("subscription")
        if not subscription:
            return {"delivered": False, "status": 0, "subscribed": False}
        delivered, status = await _push(sb, parcel, subscription)
        return {"delivered": delivered, "status": status, "subscribed": True}

    app.include_router(router)


async def _push(sb: Sandbox, parcel: dict[str, Any], subscription: dict[str, str]) -> tuple[bool, int]:
    result = last_result(parcel)
    signed = result["ischeck"] == "1"
    param = json.dumps(
        {
            # monitoring ends once the parcel is signed for
            "status": "shutdown" if signed else "polling",
            "billstatus": "check" if signed else "got",
            "message": "",
            "lastResult": result,
        },
        ensure_ascii=False,
        separators=(",", ":"),
    )
    response = await sb.post(
        subscription["callbackurl"],
        data={"param": param, "sign": md5_upper(param + subscription["salt"])},
    )
    if response is None:
        return False, 0
    # 快递100 counts a push as received when the answer says {"result": true, ...}
    try:
        body = response.json()
    except ValueError:
        body = None
    acknowledged = not (isinstance(body, dict) and body.get("result") is False)
    return response.is_success and acknowledged, response.status_code
