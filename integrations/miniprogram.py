"""The mini program's server APIs: login (`code2Session`) and the buyer's phone number.

* `GET /sns/jscode2session?appid&secret&js_code&grant_type=authorization_code` turns the code
  `wx.login()` gave the mini program into the user's openid (in this app), unionid (when the app
  belongs to an open-platform account) and session_key. Errors come as HTTP 200 with `errcode`:
  40029 invalid code, 40163 code been used, 40226 high-risk user, -1 busy. The session_key is
  dropped here: nothing of ours needs it (phone numbers come by code), so it is never stored,
  returned or logged.
* `POST /wxa/business/getuserphonenumber?access_token=...` with `{"code"}` (the code of the
  `getPhoneNumber` button) answers `phone_info.phoneNumber` (with the country code for numbers
  abroad), `purePhoneNumber`, `countryCode` and a watermark with the appid.

Docs: developers.weixin.qq.com/miniprogram/dev/OpenApiDoc/user-login/code2Session.html and
.../user-info/phone-number/getPhoneNumber.html. With WECHAT_MINI_SECRET empty, the sandbox's
mini program (its merchant kit) is used.
"""

from __future__ import annotations

import httpx
from pydantic import BaseModel

from integrations.errors import PartnerRejected, PartnerUnavailable
from integrations.http import shared_client
from integrations.sandbox_kit import load_kit
from integrations.wechat_api import WECHAT_API, WeChatApiClient
from settings import Settings

RETRYABLE = {-1, 45011}


class MiniSession(BaseModel):
    """Who logged in: the openid in the mini program and the unionid, if WeChat gave one."""

    openid: str
    unionid: str | None = None


class PhoneInfo(BaseModel):
    phone_number: str
    pure_phone_number: str
    country_code: str


def credentials(settings: Settings) -> tuple[str, str, str]:
    """(base_url, appid, secret) of the mini program."""
    if settings.wechat_mini_secret:
        if not settings.wechat_mini_appid:
            raise ValueError("WECHAT_MINI_SECRET is set, so WECHAT_MINI_APPID is required")
        return settings.wechat_oauth_base_url or WECHAT_API, settings.wechat_mini_appid, settings.wechat_mini_secret
    kit = load_kit(settings.sandbox_dir)
    return settings.resolved_sandbox_url, kit.miniprogram_appid, kit.miniprogram_secret


async def code2session(code: str, settings: Settings) -> MiniSession:
    """The user behind a `wx.login()` code; PartnerRejected for a bad, expired or used code."""
    base_url, appid, secret = credentials(settings)
    params = {"appid": appid, "secret": secret, "js_code": code, "grant_type": "authorization_code"}
    try:
        response = await shared_client(base_url).get("/sns/jscode2session", params=params)
    except httpx.HTTPError as e:
        raise PartnerUnavailable(f"WeChat code2Session unreachable: {e!r}") from e
    if response.status_code >= 500 or response.status_code == 429:
        raise PartnerUnavailable(f"WeChat code2Session HTTP {response.status_code}")
    try:
        data = response.json()  # labelled text/plain at times; JSON either way
    except ValueError as e:
        raise PartnerUnavailable(f"WeChat code2Session answered non-JSON (HTTP {response.status_code})") from e
    errcode = int(data.get("errcode") or 0)
    if errcode in RETRYABLE:
        raise PartnerUnavailable(f"WeChat code2Session busy: {data.get('errmsg')}")
    if errcode or not data.get("openid"):
        raise PartnerRejected(str(errcode or "NO_OPENID"), str(data.get("errmsg", "no openid in answer")))
    return MiniSession(openid=data["openid"], unionid=data.get("unionid") or None)


class MiniProgramClient(WeChatApiClient):
    name = "WeChat mini program"

    @classmethod
    def from_settings(cls, settings: Settings) -> MiniProgramClient:
        return cls(*credentials(settings))

    async def phone_number(self, code: str) -> PhoneInfo:
        """The phone number the user agreed to share; PartnerRejected("40029") for a bad code."""
        answer = await self.call("/wxa/business/getuserphonenumber", {"code": code})
        info = answer.get("phone_info") or {}
        if not info.get("purePhoneNumber"):
            raise PartnerRejected("NO_PHONE", "no phone_info in the answer")
        return PhoneInfo(phone_number=str(info.get("phoneNumber") or info["purePhoneNumber"]),
                         pure_phone_number=str(info["purePhoneNumber"]),
                         country_code=str(info.get("countryCode") or "86"))
