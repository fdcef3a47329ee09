"""Parcel tracking through 快递100 (or the sandbox speaking its protocol): subscribe a waybill
so status changes are pushed to our webhook, query it on demand, and check pushes.

Docs (快递100 API, mirrored at https://apifox.com/apidoc/docs-site/514987/): 快递信息推送服务 ·
订阅接口 (POST /poll, form fields schema + param{company, number, key, parameters{callbackurl,
salt, resultv2}}; answer {result, returnCode, message}: 200 ok, 501 重复订阅, 700/701/702 bad
subscription, 600/601 key), 推送接口 (https://apifox.com/apidoc/project-514987/api-8568518: form
fields sign + param{status polling|shutdown|abort|updateall, billstatus, message, autoCheck,
comOld, comNew, lastResult{state, ischeck, com, nu, data[time, ftime, context, ...]}}; our answer
{"result": true, "returnCode": "200", "message": "成功"}), 实时快递查询 (POST /poll/query.do,
customer + sign MD5(param + key + customer) + param{com, num}).

Push salt: 快递100 signs each push as `MD5(param + salt)` with the salt we gave when
subscribing. `callback_salt` derives it from the logistics key (LOGISTICS_KEY, or the
sandbox's), so nothing extra needs configuring, our webhook can always recompute it, and the
key itself is never used as a salt.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import datetime, timedelta, timezone
from typing import Any

import httpx
from pydantic import BaseModel, computed_field, field_validator

from integrations.errors import PartnerRejected, PartnerUnavailable
from integrations.http import shared_client
from integrations.sandbox_kit import load_kit
from settings import Settings

KUAIDI100_API = "https://poll.kuaidi100.com"
CST = timezone(timedelta(hours=8))
DELIVERED = "3"
STATE_NAMES = {
    "0": "在途", "1": "揽收", "2": "疑难", "3": "签收", "4": "退签",
    "5": "派件", "6": "退回", "7": "转投", "8": "清关", "14": "拒签",
}
# What our webhook answers so 快递100 counts the push as received.
PUSH_ACK = {"result": True, "returnCode": "200", "message": "成功"}


class TrackingStep(BaseModel):
    time: datetime
    context: str
    location: str = ""

    @field_validator("time", mode="before")
    @classmethod
    def _china_local_time(cls, v: Any) -> Any:
        if isinstance(v, str) and "T" not in v:
            return datetime.strptime(v, "%Y-%m-%d %H:%M:%S").replace(tzinfo=CST)
        return v


class TrackingResult(BaseModel):
    carrier: str  # 快递100 company code, e.g. shunfeng
    waybill_no: str
    state: str | None  # 快递100 state code; None while nothing is tracked yet
    is_checked: bool = False  # 快递100's `ischeck`: the waybill's life cycle has ended
    steps: list[TrackingStep] = []  # newest first

    @computed_field
    @property
    def delivered(self) -> bool:
        return self.state == DELIVERED

    @property
    def is_delivered(self) -> bool:
        return self.delivered

    @property
    def state_name(self) -> str:
        return STATE_NAMES.get(self.state or "", "无轨迹")


def _md5_upper(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest().upper()


def _account(settings: Settings) -> tuple[str, str, str]:
    """(base_url, key, customer)."""
    if settings.logistics_key:
        if not settings.logistics_customer:
            raise ValueError("LOGISTICS_KEY is set, so LOGISTICS_CUSTOMER is required too")
        return settings.logistics_base_url or KUAIDI100_API, settings.logistics_key, settings.logistics_customer
    creds = load_kit(settings.sandbox_dir)
    return settings.resolved_logistics_base_url, creds.logistics_key, creds.logistics_customer


def callback_salt(settings: Settings) -> str:
    _, key, _ = _account(settings)
    return hashlib.sha256(f"chuchuang/logistics-push-salt/{key}".encode()).hexdigest()[:32]


def _result(data: dict[str, Any]) -> TrackingResult:
    return TrackingResult(
        carrier=data["com"],
        waybill_no=data["nu"],
        state=data.get("state"),
        is_checked=data.get("ischeck") == "1",
        steps=[TrackingStep(time=s.get("ftime") or s["time"], context=s["context"], location=s.get("location") or "")
               for s in data.get("data") or []],
    )


async def _post_form(base_url: str, path: str, form: dict[str, str]) -> dict[str, Any]:
    try:
        response = await shared_client(base_url).post(path, data=form)
    except httpx.HTTPError as e:
        raise PartnerUnavailable(f"logistics provider unreachable: {e!r}") from e
    if response.status_code >= 500 or response.status_code == 429:
        raise PartnerUnavailable(f"logistics provider HTTP {response.status_code}")
    try:
        data = response.json()
    except ValueError as e:
        raise PartnerUnavailable(f"logistics provider answered non-JSON (HTTP {response.status_code})") from e
    if not response.is_success:
        raise PartnerRejected(str(data.get("returnCode", response.status_code)), str(data.get("message", "")))
    return data


async def subscribe(company: str, number: str, callback_url: str, settings: Settings) -> None:
    """Ask for status pushes to `callback_url`; subscribing twice is fine."""
    base_url, key, _ = _account(settings)
    param = {
        "company": company,
        "number": number,
        "key": key,
        "parameters": {"callbackurl": callback_url, "salt": callback_salt(settings)},
    }
    data = await _post_form(base_url, "/poll", {"schema": "json", "param": json.dumps(param, ensure_ascii=False)})
    code = str(data.get("returnCode"))
    if code in ("200", "501"):  # 501: already subscribed
        return
    if code in ("500", "502"):
        raise PartnerUnavailable(f"logistics subscribe {code}: {data.get('message')}")
    raise PartnerRejected(code, str(data.get("message", "")))


async def query(company: str, number: str, settings: Settings) -> TrackingResult:
    """The current tracking record; `state=None` and no steps while nothing is known yet."""
    base_url, key, customer = _account(settings)
    param = json.dumps({"com": company, "num": number}, ensure_ascii=False)
    data = await _post_form(
        base_url, "/poll/query.do", {"customer": customer, "sign": _md5_upper(param + key + customer), "param": param}
    )
    code = data.get("returnCode")
    if code is None:
        return _result(data)
    if code == "500":  # 查询无结果: the courier has not reported the parcel yet
        return TrackingResult(carrier=company, waybill_no=number, state=None)
    if code == "502":
        raise PartnerUnavailable(f"logistics query {code}: {data.get('message')}")
    raise PartnerRejected(str(code), str(data.get("message", "")))


def verify_push(param: str, sign: str, salt: str) -> bool:
    return hmac.compare_digest(_md5_upper(param + salt), (sign or "").upper())


def parse_push(param: str) -> TrackingResult:
    """The tracking record carried by a push's `param` (verify it first)."""
    return _result(json.loads(param)["lastResult"])
