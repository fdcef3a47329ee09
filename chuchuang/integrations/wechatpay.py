"""Our WeChat Pay API v3 client: JSAPI orders, query, close and payment notifications.

Built on the unmodified `wechatpayv3.async_.AsyncWeChatPay` in platform-public-key mode (no
platform certificate download). The library has no official transport hooks, so two private
attributes of its core are set, and these are the only ones we touch:
  * `_core._gate_way`  - the API origin (real WeChat Pay or the sandbox);
  * `_core._client`    - an `httpx.AsyncClient` from `make_client`, so tests can route it to
                         an in-process app and every call shares our timeouts.
With no merchant keys configured, it talks to the sandbox using the sandbox's credentials.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Awaitable, Mapping
from datetime import datetime
from typing import Any

import httpx
from pydantic import BaseModel, ConfigDict
from wechatpayv3.async_ import AsyncWeChatPay, WeChatPayType

from chuchuang.integrations.errors import PartnerRejected, PartnerUnavailable
from chuchuang.integrations.http import make_client
from chuchuang.sandbox.credentials import load_or_create
from chuchuang.settings import Settings

WECHATPAY_GATEWAY = "https://api.mch.weixin.qq.com"
NOTIFY_PATH = "/webhooks/wechatpay"
# WeChat Pay asks merchants to refuse notifications whose timestamp is this stale (replay guard).
NOTIFICATION_MAX_AGE_SECONDS = 300


class WeChatPayConfig(BaseModel):
    mchid: str
    appid: str
    apiv3_key: str
    private_key_pem: str
    cert_serial_no: str
    public_key_pem: str
    public_key_id: str
    base_url: str
    notify_url: str

    @classmethod
    def from_settings(cls, settings: Settings) -> WeChatPayConfig:
        notify_url = settings.resolved_public_base_url.rstrip("/") + NOTIFY_PATH
        if not settings.wechatpay_mchid:
            creds = load_or_create(settings.sandbox_dir)
            return cls(
                mchid=creds.mchid,
                appid=creds.appid,
                apiv3_key=creds.apiv3_key,
                private_key_pem=creds.merchant_private_key_pem,
                cert_serial_no=creds.merchant_cert_serial_no,
                public_key_pem=creds.platform_public_key_pem,
                public_key_id=creds.platform_public_key_id,
                base_url=settings.resolved_wechatpay_base_url,
                notify_url=notify_url,
            )
        required = {
            "WECHATPAY_APPID": settings.wechatpay_appid,
            "WECHATPAY_APIV3_KEY": settings.wechatpay_apiv3_key,
            "WECHATPAY_PRIVATE_KEY_PATH": settings.wechatpay_private_key_path,
            "WECHATPAY_CERT_SERIAL_NO": settings.wechatpay_cert_serial_no,
            "WECHATPAY_PUBLIC_KEY_PATH": settings.wechatpay_public_key_path,
            "WECHATPAY_PUBLIC_KEY_ID": settings.wechatpay_public_key_id,
        }
        missing = [name for name, value in required.items() if not value]
        if missing:
            raise ValueError(f"WECHATPAY_MCHID is set, so these are required too: {', '.join(missing)}")
        return cls(
            mchid=settings.wechatpay_mchid,
            appid=settings.wechatpay_appid,
            apiv3_key=settings.wechatpay_apiv3_key,
            private_key_pem=settings.wechatpay_private_key_path.read_text(),
            cert_serial_no=settings.wechatpay_cert_serial_no,
            public_key_pem=settings.wechatpay_public_key_path.read_text(),
            public_key_id=settings.wechatpay_public_key_id,
            base_url=settings.wechatpay_base_url or WECHATPAY_GATEWAY,
            notify_url=notify_url,
        )


class JsapiPrepay(BaseModel):
    """A created JSAPI order and the signed arguments for the page's `wx.requestPayment`
    (field names are the ones `wx.requestPayment` takes)."""

    prepay_id: str
    appId: str
    timeStamp: str
    nonceStr: str
    package: str
    signType: str = "RSA"
    paySign: str

    def request_payment(self) -> dict[str, str]:
        return self.model_dump(exclude={"prepay_id"})


class TransactionAmount(BaseModel):
    model_config = ConfigDict(extra="ignore")
    total: int
    payer_total: int | None = None
    currency: str = "CNY"
    payer_currency: str | None = None


class TransactionPayer(BaseModel):
    model_config = ConfigDict(extra="ignore")
    openid: str | None = None


class Transaction(BaseModel):
    """A WeChat Pay transaction, as the query API and a notification's decrypted resource show it."""

    model_config = ConfigDict(extra="ignore")
    appid: str
    mchid: str
    out_trade_no: str
    trade_state: str  # SUCCESS | REFUND | NOTPAY | CLOSED | REVOKED | USERPAYING | PAYERROR
    trade_state_desc: str = ""
    transaction_id: str | None = None
    trade_type: str | None = None
    bank_type: str | None = None
    success_time: datetime | None = None
    attach: str | None = None
    payer: TransactionPayer | None = None
    amount: TransactionAmount

    @property
    def paid(self) -> bool:
        return self.trade_state in ("SUCCESS", "REFUND")


class WeChatPayClient:
    def __init__(self, config: WeChatPayConfig, *, timeout: float = 10.0):
        self.config = config
        self._pay = AsyncWeChatPay(
            wechatpay_type=WeChatPayType.JSAPI,
            mchid=config.mchid,
            private_key=config.private_key_pem,
            cert_serial_no=config.cert_serial_no,
            appid=config.appid,
            apiv3_key=config.apiv3_key,
            notify_url=config.notify_url,
            public_key=config.public_key_pem,
            public_key_id=config.public_key_id,
        )
        self._pay._core._gate_way = config.base_url.rstrip("/")
        self._pay._core._client = make_client(config.base_url, timeout)

    @classmethod
    def from_settings(cls, settings: Settings) -> WeChatPayClient:
        return cls(WeChatPayConfig.from_settings(settings))

    async def aclose(self) -> None:
        await self._pay._core._client.aclose()

    async def __aenter__(self) -> WeChatPayClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def create_jsapi(
        self, out_trade_no: str, description: str, total_fen: int, openid: str
    ) -> JsapiPrepay:
        """Create (or, with identical terms, re-fetch) the JSAPI order for `out_trade_no`."""
        if isinstance(total_fen, bool) or not isinstance(total_fen, int) or total_fen <= 0:
            raise ValueError(f"total_fen must be a positive integer, got {total_fen!r}")
        _, body = await self._call(
            self._pay.pay(
                description=description,
                out_trade_no=out_trade_no,
                amount={"total": total_fen, "currency": "CNY"},
                payer={"openid": openid},
            )
        )
        return self.jsapi_params(json.loads(body)["prepay_id"])

    def jsapi_params(self, prepay_id: str) -> JsapiPrepay:
        """Sign `wx.requestPayment` arguments for an existing prepay_id with the merchant key."""
        time_stamp = str(int(time.time()))
        nonce_str = secrets.token_hex(16)
        package = f"prepay_id={prepay_id}"
        pay_sign = self._pay.sign([self.config.appid, time_stamp, nonce_str, package])
        return JsapiPrepay(
            prepay_id=prepay_id,
            appId=self.config.appid,
            timeStamp=time_stamp,
            nonceStr=nonce_str,
            package=package,
            paySign=pay_sign,
        )

    async def query(self, out_trade_no: str) -> Transaction:
        _, body = await self._call(self._pay.query(out_trade_no=out_trade_no))
        return Transaction.model_validate_json(body)

    async def close(self, out_trade_no: str) -> None:
        """Close an unpaid order; closing an already-closed one is fine.

        Raises PartnerRejected("ORDERPAID") if the buyer paid first, ("ORDER_NOT_EXIST") if
        no such order was ever created.
        """
        try:
            await self._call(self._pay.close(out_trade_no=out_trade_no))
        except PartnerRejected as e:
            if e.code != "ORDER_CLOSED":
                raise

    def parse_notification(self, headers: Mapping[str, str], body: bytes) -> dict[str, Any] | None:
        """Verify and decrypt a payment notification; None if it is not genuine or stale.

        The result is the notification with `resource` decrypted; for TRANSACTION.SUCCESS,
        `Transaction.model_validate(result["resource"])` types it.
        """
        lowered = {k.lower(): v for k, v in headers.items()}
        timestamp = lowered.get("wechatpay-timestamp", "")
        if not timestamp.isdigit() or abs(time.time() - int(timestamp)) > NOTIFICATION_MAX_AGE_SECONDS:
            return None
        try:
            return self._pay.callback(lowered, body) or None
        except Exception:  # malformed JSON/base64, unknown algorithm: not a genuine notification
            return None

    async def _call(self, request: Awaitable[tuple[int, Any]]) -> tuple[int, str]:
        try:
            status, body = await request
        except httpx.HTTPError as e:
            raise PartnerUnavailable(f"WeChat Pay unreachable: {e!r}") from e
        except Exception as e:
            # The library reports a response it cannot verify with a bare Exception.
            text = str(e)
            if text.startswith(("failed to verify the signature", "wechatpayv3 does not support")):
                raise PartnerUnavailable(f"WeChat Pay response not verifiable: {text}") from e
            raise
        if isinstance(body, bytes):
            body = body.decode("utf-8", errors="replace")
        if status == 429 or status >= 500:
            raise PartnerUnavailable(f"WeChat Pay HTTP {status}: {body[:200]}")
        if status >= 400:
            try:
                error = json.loads(body)
            except ValueError:
                error = {}
            raise PartnerRejected(
                str(error.get("code") or f"HTTP_{status}"), str(error.get("message") or body[:200]), status=status
            )
        return status, body
