"""Subscribe messages (订阅消息, `POST /cgi-bin/message/subscribe/send`) to buyers and promoters.

Sent as the official account / mini-program whose appid WeChat Pay orders use (WECHATPAY_APPID
with WECHAT_APP_SECRET); with no secret configured, the sandbox's app. A user who has not
(or no longer) consented gets PartnerRejected("43101"): one consent allows one message.
"""

from __future__ import annotations

from pydantic import BaseModel

from integrations.sandbox_kit import load_kit
from integrations.wechat_api import WECHAT_API, WeChatApiClient
from settings import Settings

USER_REFUSED = "43101"


class SentMessage(BaseModel):
    msgid: int


class MessagesClient(WeChatApiClient):
    name = "WeChat messages"

    @classmethod
    def from_settings(cls, settings: Settings) -> MessagesClient:
        if settings.wechat_app_secret:
            if not settings.wechatpay_appid:
                raise ValueError("WECHAT_APP_SECRET is set, so WECHATPAY_APPID is required")
            return cls(settings.wechat_oauth_base_url or WECHAT_API, settings.wechatpay_appid, settings.wechat_app_secret)
        creds = load_kit(settings.sandbox_dir)
        return cls(settings.resolved_sandbox_url, creds.appid, creds.app_secret)

    async def send_subscribe(
        self,
        openid: str,
        template_id: str,
        data: dict[str, str],
        *,
        page: str | None = None,
        state: str | None = None,
        lang: str = "zh_CN",
    ) -> SentMessage:
        """`data` maps template keys (thing1, amount2, ...) to their values."""
        payload = {
            "touser": openid,
            "template_id": template_id,
            "data": {k: {"value": v} for k, v in data.items()},
            "lang": lang,
        }
        if page:
            payload["page"] = page
        if state:
            payload["miniprogram_state"] = state
        answer = await self.call("/cgi-bin/message/subscribe/send", payload)
        return SentMessage(msgid=int(answer["msgid"]))
