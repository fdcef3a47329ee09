"""Official-account web OAuth (snsapi_base): turn the `code` WeChat gave the page into an openid.

The official account's appid is the one WeChat Pay JSAPI orders are made for, so it comes from
WECHATPAY_APPID, with WECHAT_APP_SECRET as its secret; with no secret configured, the sandbox's
credentials and endpoint are used.
"""

from __future__ import annotations

import httpx
from pydantic import BaseModel

from integrations.errors import PartnerRejected, PartnerUnavailable
from integrations.http import shared_client
from integrations.sandbox_kit import load_kit
from settings import Settings

WECHAT_API = "https://api.weixin.qq.com"


def _app_credentials(settings: Settings) -> tuple[str, str, str]:
    """(base_url, appid, secret)."""
    if settings.wechat_app_secret:
        if not settings.wechatpay_appid:
            raise ValueError("WECHAT_APP_SECRET is set, so WECHATPAY_APPID (the official account) is required")
        return settings.wechat_oauth_base_url or WECHAT_API, settings.wechatpay_appid, settings.wechat_app_secret
    creds = load_kit(settings.sandbox_dir)
    return settings.resolved_oauth_base_url, creds.appid, creds.app_secret


class OAuthUser(BaseModel):
    """Who authorised: the openid in the official account, and the unionid WeChat adds when the
    account belongs to an open-platform account (snsapi_userinfo)."""

    openid: str
    unionid: str | None = None


async def exchange_code(code: str, settings: Settings) -> str:
    """The openid of the user who authorised; PartnerRejected for a bad, expired or used code."""
    return (await exchange_code_for_user(code, settings)).openid


async def exchange_code_for_user(code: str, settings: Settings) -> OAuthUser:
    """The user who authorised (openid and unionid); PartnerRejected for a bad, expired or used code."""
    base_url, appid, secret = _app_credentials(settings)
    params = {"appid": appid, "secret": secret, "code": code, "grant_type": "authorization_code"}
    try:
        response = await shared_client(base_url).get("/sns/oauth2/access_token", params=params)
    except httpx.HTTPError as e:
        raise PartnerUnavailable(f"WeChat OAuth unreachable: {e!r}") from e
    if response.status_code >= 500 or response.status_code == 429:
        raise PartnerUnavailable(f"WeChat OAuth HTTP {response.status_code}")
    try:
        data = response.json()  # WeChat may label it text/plain; the body is JSON either way
    except ValueError as e:
        raise PartnerUnavailable(f"WeChat OAuth answered non-JSON (HTTP {response.status_code})") from e
    errcode = data.get("errcode") or 0
    if errcode == -1:  # WeChat's "system busy, retry later"
        raise PartnerUnavailable(f"WeChat OAuth busy: {data.get('errmsg')}")
    if errcode or "openid" not in data:
        raise PartnerRejected(str(errcode or "NO_OPENID"), str(data.get("errmsg", "no openid in answer")))
    return OAuthUser(openid=data["openid"], unionid=data.get("unionid") or None)
