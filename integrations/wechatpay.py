"""Our WeChat Pay API v3 client: JSAPI orders, query, close, refunds, profit sharing (分账),
merchant transfer bills (商家转账) and notifications (payment, refund, transfer).

Built on the unmodified `wechatpayv3.async_.AsyncWeChatPay` in platform-public-key mode (no
platform certificate download). The library has no official transport hooks, so two private
attributes of its core are set, and these are the only ones we touch:
  * `_core._gate_way`  - the API origin (real WeChat Pay or the sandbox);
  * `_core._client`    - an `httpx.AsyncClient` from `make_client`, so tests can route it to
                         an in-process app and every call shares our timeouts.
With no merchant keys configured, it talks to the sandbox using the sandbox's credentials.
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import json
import secrets
import time
from collections.abc import Awaitable, Mapping
from datetime import datetime
from typing import Any

import httpx
from pydantic import AliasChoices, BaseModel, ConfigDict, Field
from wechatpayv3.async_ import AsyncWeChatPay, WeChatPayType

from integrations.errors import PartnerRejected, PartnerUnavailable
from integrations.http import make_client
from integrations.sandbox_kit import load_kit
from settings import Settings

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
    # JSAPI orders are created with settle_info.profit_sharing: WeChat Pay freezes the money
    # for supplier settlement to split; without it a payment can never be split
    profit_sharing: bool = True

    @classmethod
    def from_settings(cls, settings: Settings) -> WeChatPayConfig:
        notify_url = settings.resolved_public_base_url.rstrip("/") + NOTIFY_PATH
        if not settings.wechatpay_mchid:
            creds = load_kit(settings.sandbox_dir)
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
                profit_sharing=settings.wechatpay_profit_sharing,
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
            profit_sharing=settings.wechatpay_profit_sharing,
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
    """A WeChat Pay transaction, as the query API and a notification's decrypted resource show it
    (JSAPI支付 · 商户订单号查询订单 / 支付成功回调通知, WeChat Pay merchant docs)."""

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


class RefundAmount(BaseModel):
    model_config = ConfigDict(extra="ignore")
    total: int
    refund: int
    payer_total: int | None = None
    payer_refund: int | None = None
    currency: str = "CNY"


class Refund(BaseModel):
    """A refund, as the create/query APIs and a REFUND.* notification's resource show it
    (申请退款 https://pay.weixin.qq.com/wiki/doc/apiv3/apis/chapter3_1_9.shtml; 查询单笔退款;
    退款结果通知)."""

    model_config = ConfigDict(extra="ignore")
    refund_id: str
    out_refund_no: str
    transaction_id: str
    out_trade_no: str
    # the APIs say `status`, notifications say `refund_status`
    status: str = Field(validation_alias=AliasChoices("status", "refund_status"))  # PROCESSING | SUCCESS | ABNORMAL | CLOSED
    channel: str | None = None
    user_received_account: str | None = None
    create_time: datetime | None = None
    success_time: datetime | None = None
    amount: RefundAmount

    @property
    def final(self) -> bool:
        return self.status in ("SUCCESS", "ABNORMAL", "CLOSED")


class ProfitSharingReceiver(BaseModel):
    model_config = ConfigDict(extra="ignore")
    type: str  # MERCHANT_ID | PERSONAL_OPENID
    account: str
    relation_type: str | None = None
    custom_relation: str | None = None


class SplitReceiver(BaseModel):
    """One line of a split request: who gets how much (fen)."""

    type: str = "PERSONAL_OPENID"
    account: str
    amount: int = Field(gt=0)
    description: str
    name: str | None = None  # plain text; the library encrypts it with the platform key


class SplitReceiverResult(BaseModel):
    model_config = ConfigDict(extra="ignore")
    type: str
    account: str
    amount: int
    description: str
    result: str  # PENDING | SUCCESS | CLOSED
    fail_reason: str | None = None
    detail_id: str | None = None
    create_time: datetime | None = None
    finish_time: datetime | None = None


class ProfitSharingOrder(BaseModel):
    """请求分账 / 查询分账结果 / 解冻剩余资金 (WeChat Pay merchant docs, 分账)."""

    model_config = ConfigDict(extra="ignore")
    transaction_id: str
    out_order_no: str
    order_id: str
    state: str  # PROCESSING | FINISHED
    receivers: list[SplitReceiverResult] = []


class ProfitSharingReturn(BaseModel):
    """请求分账回退 / 查询分账回退结果 (https://pay.weixin.qq.com/doc/v3/partner/4012467097)."""

    model_config = ConfigDict(extra="ignore")
    order_id: str | None = None
    out_order_no: str
    out_return_no: str
    return_id: str
    return_mchid: str
    amount: int
    description: str | None = None
    result: str  # PROCESSING | SUCCESS | FAILED
    fail_reason: str | None = None
    create_time: datetime | None = None
    finish_time: datetime | None = None


class TransferBill(BaseModel):
    """A merchant transfer bill, from create (with package_info), query, cancel, or a
    MCHTRANSFER.BILL.FINISHED notification's resource. The merchant id is `mch_id` in WeChat's
    merchant docs (商户单号查询转账单, https://pay.weixin.qq.com/docs/merchant/apis/mch-trans/
    transfer-bill/get-transfer-bill-by-out-no.html) and `mchid` in other sources
    (https://wechatpay.js.org/webhook/v3/MCHTRANSFER.BILL.FINISHED): both are read."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)
    out_bill_no: str
    transfer_bill_no: str
    # ACCEPTED | PROCESSING | WAIT_USER_CONFIRM | TRANSFERING | SUCCESS | FAIL | CANCELING | CANCELLED
    state: str
    package_info: str | None = None
    mchid: str | None = Field(default=None, validation_alias=AliasChoices("mchid", "mch_id"))
    appid: str | None = None
    openid: str | None = None
    transfer_amount: int | None = None
    transfer_remark: str | None = None
    fail_reason: str | None = None
    create_time: datetime | None = None
    update_time: datetime | None = None

    @property
    def final(self) -> bool:
        return self.state in ("SUCCESS", "FAIL", "CANCELLED")


class BillFile(BaseModel):
    """Where a requested bill can be downloaded (the link is short-lived) and the SHA1 of the
    uncompressed file."""

    model_config = ConfigDict(extra="ignore")
    hash_type: str
    hash_value: str
    download_url: str


class WeChatPayClient:
    def __init__(self, config: WeChatPayConfig, *, timeout: float = 10.0):
        self.config = config
        self.timeout = timeout
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
                settle_info={"profit_sharing": True} if self.config.profit_sharing else None,
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

    # --- refunds ----------------------------------------------------------------------------

    async def refund(
        self,
        out_refund_no: str,
        *,
        refund_fen: int,
        total_fen: int,
        out_trade_no: str | None = None,
        transaction_id: str | None = None,
        reason: str | None = None,
    ) -> Refund:
        """Ask for a (partial) refund; idempotent by out_refund_no. The answer is usually
        PROCESSING: the end state comes by REFUND.* notification or `query_refund`.
        PartnerRejected("INVALID_REQUEST", status 400) when more than the refundable rest is
        asked; ("NOT_ENOUGH", status 403) when the merchant account's balance is short."""
        _check_fen(refund_fen, "refund_fen")
        _check_fen(total_fen, "total_fen")
        if not (out_trade_no or transaction_id):
            raise ValueError("out_trade_no or transaction_id is required")
        _, body = await self._call(
            self._pay.refund(
                out_refund_no=out_refund_no,
                amount={"refund": refund_fen, "total": total_fen, "currency": "CNY"},
                transaction_id=transaction_id,
                out_trade_no=out_trade_no,
                reason=reason,
            )
        )
        return Refund.model_validate_json(body)

    async def query_refund(self, out_refund_no: str) -> Refund:
        _, body = await self._call(self._pay.query_refund(out_refund_no=out_refund_no))
        return Refund.model_validate_json(body)

    # --- profit sharing -----------------------------------------------------------------------

    async def add_receiver(
        self,
        account: str,
        *,
        type: str = "PERSONAL_OPENID",
        relation_type: str = "DISTRIBUTOR",
        name: str | None = None,
        custom_relation: str | None = None,
    ) -> ProfitSharingReceiver:
        _, body = await self._call(
            self._pay.profitsharing_add_receiver(
                account_type=type, account=account, relation_type=relation_type,
                name=name, custom_relation=custom_relation,
            )
        )
        return ProfitSharingReceiver.model_validate_json(body)

    async def delete_receiver(self, account: str, *, type: str = "PERSONAL_OPENID") -> None:
        await self._call(self._pay.profitsharing_delete_receiver(account_type=type, account=account))

    async def split(
        self,
        transaction_id: str,
        out_order_no: str,
        receivers: list[SplitReceiver],
        *,
        unfreeze_unsplit: bool = False,
    ) -> ProfitSharingOrder:
        """Request a split (分账); idempotent by out_order_no. PROCESSING at first."""
        _, body = await self._call(
            self._pay.profitsharing_order(
                transaction_id=transaction_id,
                out_order_no=out_order_no,
                receivers=[r.model_dump(exclude_none=True) for r in receivers],
                unfreeze_unsplit=unfreeze_unsplit,
            )
        )
        return ProfitSharingOrder.model_validate_json(body)

    async def query_split(self, transaction_id: str, out_order_no: str) -> ProfitSharingOrder:
        _, body = await self._call(
            self._pay.profitsharing_order_query(transaction_id=transaction_id, out_order_no=out_order_no)
        )
        return ProfitSharingOrder.model_validate_json(body)

    async def unfreeze(self, transaction_id: str, out_order_no: str, description: str) -> ProfitSharingOrder:
        """Give what is left unsplit back to the merchant and finish the transaction's splitting."""
        _, body = await self._call(
            self._pay.profitsharing_unfreeze(
                transaction_id=transaction_id, out_order_no=out_order_no, description=description
            )
        )
        return ProfitSharingOrder.model_validate_json(body)

    async def unsplit_amount(self, transaction_id: str) -> int:
        _, body = await self._call(self._pay.profitsharing_amount_query(transaction_id=transaction_id))
        return int(json.loads(body)["unsplit_amount"])

    async def return_split(
        self, out_order_no: str, out_return_no: str, return_mchid: str, amount_fen: int, description: str
    ) -> ProfitSharingReturn:
        """Take back (分账回退) money a merchant receiver got from a split; idempotent by out_return_no.
        PartnerRejected("INVALID_REQUEST", 400) for more than is left to take back; ("NOT_ENOUGH",
        403) when the receiver's balance is short."""
        _check_fen(amount_fen, "amount_fen")
        _, body = await self._call(
            self._pay.profitsharing_return(
                out_return_no=out_return_no, return_mchid=return_mchid, amount=amount_fen,
                description=description, out_order_no=out_order_no,
            )
        )
        return ProfitSharingReturn.model_validate_json(body)

    async def query_return(self, out_order_no: str, out_return_no: str) -> ProfitSharingReturn:
        _, body = await self._call(
            self._pay.profitsharing_return_query(out_order_no=out_order_no, out_return_no=out_return_no)
        )
        return ProfitSharingReturn.model_validate_json(body)

    # --- merchant transfer bills ----------------------------------------------------------------

    async def create_transfer(
        self,
        out_bill_no: str,
        openid: str,
        amount_fen: int,
        remark: str,
        *,
        scene_id: str = "1005",
        report_infos: list[dict[str, str]] | None = None,
        user_recv_perception: str | None = None,
        user_name: str | None = None,
    ) -> TransferBill:
        """Start a transfer to a user's wallet; idempotent by out_bill_no. Usually answers
        WAIT_USER_CONFIRM with `package_info` for `wx.requestMerchantTransfer`.
        Scene 1005 (佣金报酬) needs report infos 岗位类型/报酬说明; defaults are filled in."""
        _check_fen(amount_fen, "amount_fen")
        if report_infos is None and scene_id == "1005":
            report_infos = [
                {"info_type": "岗位类型", "info_content": "推广员"},
                {"info_type": "报酬说明", "info_content": "带货佣金"},
            ]
        _, body = await self._call(
            self._pay.mch_transfer_bills(
                out_bill_no=out_bill_no,
                transfer_scene_id=scene_id,
                openid=openid,
                transfer_amount=amount_fen,
                transfer_remark=remark,
                user_name=user_name,
                user_recv_perception=user_recv_perception,
                transfer_scene_report_infos=report_infos or [],
            )
        )
        return TransferBill.model_validate_json(body)

    async def query_transfer(self, out_bill_no: str) -> TransferBill:
        _, body = await self._call(self._pay.mch_transfer_bills_query(out_bill_no=out_bill_no))
        return TransferBill.model_validate_json(body)

    async def cancel_transfer(self, out_bill_no: str) -> TransferBill:
        """Cancel a transfer the user has not confirmed yet (answers CANCELING)."""
        _, body = await self._call(self._pay.mch_transfer_bills_cancel(out_bill_no=out_bill_no))
        return TransferBill.model_validate_json(body)

    # --- bills (对账) -----------------------------------------------------------------------------

    async def trade_bill(self, bill_date: str, bill_type: str = "ALL") -> BillFile:
        """Ask for a day's trade bill (交易账单): where to download it and its SHA1.
        PartnerRejected("STATEMENT_CREATING") before WeChat Pay has made it (after about 10:00
        the next day), ("NO_STATEMENT_EXIST") for a day without payments or refunds."""
        _, body = await self._call(self._pay.trade_bill(bill_date=bill_date, bill_type=bill_type, tar_type="GZIP"))
        return BillFile.model_validate_json(body)

    async def fundflow_bill(self, bill_date: str, account_type: str = "BASIC") -> BillFile:
        """Ask for a day's fund-flow bill (资金账单) of one account (BASIC, OPERATION, FEES)."""
        _, body = await self._call(
            self._pay.fundflow_bill(bill_date=bill_date, account_type=account_type, tar_type="GZIP"))
        return BillFile.model_validate_json(body)

    async def download_bill(self, bill: BillFile) -> str:
        """Download a bill file and check it against its hash (of the uncompressed file); the
        text. A file that does not match raises PartnerUnavailable (download it again)."""
        _, content = await self._call(self._pay.download_bill(bill.download_url), raw=True)
        data = content if isinstance(content, bytes) else content.encode()
        if data[:2] == b"\x1f\x8b":  # gzip, as asked for with tar_type=GZIP
            try:
                data = gzip.decompress(data)
            except (OSError, EOFError) as e:
                raise PartnerUnavailable(f"bill download is not a complete gzip file: {e}") from e
        if bill.hash_type.upper() != "SHA1":
            raise PartnerRejected("UNSUPPORTED_HASH", f"bill hash type {bill.hash_type} is not supported")
        digest = hashlib.sha1(data).hexdigest()
        if digest != bill.hash_value.lower():
            raise PartnerUnavailable(f"bill download does not match its hash: {digest} != {bill.hash_value}")
        return data.decode("utf-8")

    # --- notifications ----------------------------------------------------------------------

    def parse_notification(self, headers: Mapping[str, str], body: bytes) -> dict[str, Any] | None:
        """Verify and decrypt a payment notification; None if it is not genuine or stale.

        The result is the notification with `resource` decrypted; type it with
        `Transaction` (TRANSACTION.SUCCESS), `Refund` (REFUND.*) or `TransferBill`
        (MCHTRANSFER.BILL.FINISHED) `.model_validate(result["resource"])`.
        """
        lowered = {k.lower(): v for k, v in headers.items()}
        timestamp = lowered.get("wechatpay-timestamp", "")
        if not timestamp.isdigit() or abs(time.time() - int(timestamp)) > NOTIFICATION_MAX_AGE_SECONDS:
            return None
        try:
            return self._pay.callback(lowered, body) or None
        except Exception:  # malformed JSON/base64, unknown algorithm: not a genuine notification
            return None

    async def _call(self, request: Awaitable[tuple[int, Any]], *, raw: bool = False) -> tuple[int, Any]:
        try:
            # The deadline is ours, whatever the transport enforces (in-process apps enforce none).
            async with asyncio.timeout(self.timeout):
                status, body = await request
        except TimeoutError as e:
            raise PartnerUnavailable(f"WeChat Pay timed out after {self.timeout}s") from e
        except httpx.HTTPError as e:
            raise PartnerUnavailable(f"WeChat Pay unreachable: {e!r}") from e
        except Exception as e:
            # The library reports a response it cannot verify with a bare Exception.
            text = str(e)
            if text.startswith(("failed to verify the signature", "wechatpayv3 does not support")):
                raise PartnerUnavailable(f"WeChat Pay response not verifiable: {text}") from e
            raise
        content = body
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
        return status, (content if raw else body)


def _check_fen(value: int, name: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{name} must be a positive integer (fen), got {value!r}")
