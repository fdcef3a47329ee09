"""Our WeChat Channels shop (视频号小店, `/channels/ec/...`) client: products, window (橱窗)
products, orders, delivery, after-sale, and the security-mode event pushes the shop sends us.

Docs (WeChat developer docs, 视频号小店 / 视频号助手 API, https://developers.weixin.qq.com/doc/channels/API/):
商品 (product/add, update, get, list/get with next_key, listing, delisting), 橱窗管理
(https://developers.weixin.qq.com/doc/channels/api/channels/windowproduct/: window/product/add,
get, list/get with page_index/last_buffer/need_total_num, off; errors 10022003 橱窗商品未找到,
10022008 appid 不属于绑定店铺), 订单 (order/get, order/list/get with create_time_range, next_key,
has_more; order/delivery/send), 售后 (aftersale/getaftersaleorder, acceptapply, rejectapply),
消息推送 in security mode (msg_signature over token, timestamp, nonce, Encrypt; AES-256-CBC).

Token caching and refresh-on-40001/42001 come from `WeChatApiClient`. With no Channels app
configured (settings `channels_appid` / `channels_secret` / `channels_base_url` /
`channels_push_token` / `channels_encoding_aes_key`, when they exist), it talks to the sandbox
with the sandbox's derived Channels credentials.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Mapping
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from integrations import wxcrypt
from integrations.sandbox_kit import load_kit
from integrations.wechat_api import WECHAT_API, WeChatApiClient
from settings import Settings


class OrderStatus(IntEnum):
    UNPAID = 10             # 待付款
    GIFT_PENDING = 12       # 礼物待收下
    GROUP_PENDING = 13      # 凑单买凑团中
    TO_SHIP = 20            # 待发货
    PARTLY_SHIPPED = 21     # 部分发货
    SHIPPED = 30            # 待收货
    COMPLETED = 100         # 完成
    AFTERSALE_CANCELLED = 200  # 全部商品售后之后，订单取消
    CANCELLED = 250         # 未付款用户主动取消或超时未付款订单自动取消


class ProductStatus(IntEnum):
    INITIAL = 0
    ON_SALE = 5       # 上架
    DELISTED = 11     # 自主下架
    PUNISHED = 13     # 违规下架
    BANNED = 20


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore")


class Sku(_Model):
    sku_id: str | None = None
    out_sku_id: str | None = None
    sale_price: int
    stock_num: int
    thumb_img: str | None = None
    sku_attrs: list[dict[str, Any]] = []


class ProductDraft(_Model):
    """What we send to add/update a product (fields of the Channels product API)."""

    title: str
    head_imgs: list[str]
    skus: list[Sku]
    out_product_id: str | None = None
    sub_title: str | None = None
    desc_info: dict[str, Any] = {}
    cats_v2: list[dict[str, Any]] = []
    deliver_method: int = 0


class Product(_Model):
    product_id: str
    out_product_id: str = ""
    title: str
    sub_title: str = ""
    head_imgs: list[str] = []
    skus: list[Sku] = []
    status: int
    edit_status: int
    min_price: int | None = None


class WindowProduct(_Model):
    appid: str
    product_id: str
    out_product_id: str = ""
    finder_id: str = ""
    title: str = ""
    img_url: str = ""
    is_hide_for_window: bool = False
    min_price: int | None = None
    status: int | None = None
    stock: int | None = None
    sales: int = 0
    banned: bool = False


class OrderProduct(_Model):
    product_id: str
    sku_id: str
    out_sku_id: str = ""
    sku_cnt: int
    sale_price: int
    title: str = ""


class ChannelsOrder(_Model):
    order_id: str
    status: int
    openid: str | None = None
    create_time: int
    update_time: int
    order_detail: dict[str, Any] = {}
    aftersale_detail: dict[str, Any] = {}

    @property
    def products(self) -> list[OrderProduct]:
        return [OrderProduct.model_validate(p) for p in self.order_detail.get("product_infos", [])]

    @property
    def order_price(self) -> int:
        return int(self.order_detail.get("price_info", {}).get("order_price", 0))

    @property
    def transaction_id(self) -> str | None:
        return self.order_detail.get("pay_info", {}).get("transaction_id")

    @property
    def freight(self) -> int:
        return int(self.order_detail.get("price_info", {}).get("freight", 0))

    @property
    def source_infos(self) -> list[dict[str, Any]]:
        """成交来源 per SKU: account_type (1: a 视频号), account_id (its finder id), sale_channel."""
        return list(self.order_detail.get("source_infos") or [])

    @property
    def address(self) -> dict[str, Any] | None:
        return (self.order_detail.get("delivery_info") or {}).get("address_info")


class AfterSaleOrder(_Model):
    after_sale_order_id: str
    status: str  # MERCHANT_PROCESSING, USER_WAIT_RETURN, MERCHANT_REFUND_SUCCESS, MERCHANT_REJECT_REFUND ...
    order_id: str
    openid: str | None = None
    type: str  # REFUND | RETURN
    refund_amount: int = Field(default=0)
    product_info: dict[str, Any] = {}
    details: dict[str, Any] = {}
    create_time: int | None = None
    update_time: int | None = None

    @classmethod
    def from_api(cls, data: dict[str, Any]) -> AfterSaleOrder:
        return cls.model_validate({**data, "refund_amount": data.get("refund_info", {}).get("amount", 0)})


class Page(_Model):
    ids: list[str]
    next_key: str = ""
    has_more: bool = False
    total: int | None = None


class Delivery(_Model):
    delivery_id: str      # 快递公司编码
    waybill_id: str       # 运单号
    products: list[tuple[str, str, int]]  # (product_id, sku_id, count)
    deliver_type: int = 1


def _setting(settings: Settings, name: str) -> Any:
    return getattr(settings, name, None)


class ChannelsClient(WeChatApiClient):
    name = "WeChat Channels"

    def __init__(self, base_url: str, appid: str, secret: str, *, push_token: str = "",
                 encoding_aes_key: str = "", timeout: float = 10.0):
        super().__init__(base_url, appid, secret, timeout=timeout)
        self.push_token = push_token
        self.encoding_aes_key = encoding_aes_key

    @classmethod
    def from_settings(cls, settings: Settings) -> ChannelsClient:
        keys = PushKeys.from_settings(settings)
        if _setting(settings, "channels_appid"):
            base_url, secret = _setting(settings, "channels_base_url") or WECHAT_API, settings.channels_secret
        else:
            base_url, secret = settings.resolved_sandbox_url, load_kit(settings.sandbox_dir).channels_secret
        return cls(base_url, keys.appid, secret, push_token=keys.token, encoding_aes_key=keys.encoding_aes_key)

    # --- products -------------------------------------------------------------------------

    async def add_product(self, draft: ProductDraft) -> str:
        data = await self.call("/channels/ec/product/add", draft.model_dump(exclude_none=True))
        return str(data["data"]["product_id"])

    async def update_product(self, product_id: str, draft: ProductDraft) -> None:
        await self.call("/channels/ec/product/update", {"product_id": product_id, **draft.model_dump(exclude_none=True)})

    async def list_product(self, product_id: str) -> None:
        """上架."""
        await self.call("/channels/ec/product/listing", {"product_id": product_id})

    async def delist_product(self, product_id: str) -> None:
        """下架."""
        await self.call("/channels/ec/product/delisting", {"product_id": product_id})

    async def get_product(self, product_id: str, *, draft: bool = False) -> Product:
        data = await self.call("/channels/ec/product/get", {"product_id": product_id, "data_type": 2 if draft else 1})
        return Product.model_validate(data["edit_product"] if draft else data["product"])

    async def find_product(self, out_product_id: str) -> Product | None:
        """The shop's product carrying our out_product_id, if one was ever added (a call that went
        through before we could record its answer): the shop has no lookup by out_product_id, so
        walk the product list."""
        next_key: str | None = None
        while True:
            page = await self.list_products(page_size=30, next_key=next_key)
            for pid in page.ids:
                found = await self.get_product(pid, draft=True)
                if found.out_product_id == out_product_id:
                    return found
            if not page.has_more or not page.ids:
                return None
            next_key = page.next_key

    async def list_products(self, *, status: int | None = None, page_size: int = 30, next_key: str | None = None) -> Page:
        payload: dict[str, Any] = {"page_size": page_size}
        if status is not None:
            payload["status"] = status
        if next_key:
            payload["next_key"] = next_key
        data = await self.call("/channels/ec/product/list/get", payload)
        ids = [str(i) for i in data.get("product_ids", [])]
        total = data.get("total_num")
        return Page(ids=ids, next_key=data.get("next_key", ""), total=total,
                    has_more=total is not None and int(next_key or 0) + len(ids) < total)

    # --- window (橱窗) ----------------------------------------------------------------------

    # `finder_id` names the promoter's window (视频号 finder_id); None: the token owner's own window.

    @staticmethod
    def _finder(payload: dict[str, Any], finder_id: str | None) -> dict[str, Any]:
        if finder_id:
            payload["finder_id"] = finder_id
        return payload

    async def add_window_product(self, product_id: str, *, appid: str | None = None, hidden: bool = False,
                                 finder_id: str | None = None) -> None:
        """Add (or re-add with a new hide flag: idempotent) a shop product to a window."""
        await self.call("/channels/ec/window/product/add", self._finder(
            {"appid": appid or self.appid, "product_id": product_id, "is_hide_for_window": hidden}, finder_id))

    async def get_window_product(self, product_id: str, *, appid: str | None = None,
                                 finder_id: str | None = None) -> WindowProduct:
        data = await self.call("/channels/ec/window/product/get", self._finder(
            {"appid": appid or self.appid, "product_id": product_id}, finder_id))
        return WindowProduct.model_validate(data["product"])

    async def list_window_products(self, *, appid: str | None = None, page_size: int = 30,
                                   next_key: str | None = None, finder_id: str | None = None) -> Page:
        """获取已添加到橱窗的商品列表 (https://developers.weixin.qq.com/doc/channels/API/windowproduct/
        list_get.html): pages by `last_buffer` (our Page.next_key), the total when need_total_num."""
        payload: dict[str, Any] = self._finder({"page_size": page_size, "appid": appid or self.appid,
                                                "need_total_num": True}, finder_id)
        if next_key:
            payload["last_buffer"] = next_key
        data = await self.call("/channels/ec/window/product/list/get", payload)
        ids = [str(p["product_id"]) for p in data.get("products", [])]
        total = data.get("total_num")
        last_buffer = data.get("last_buffer", "")
        # last_buffer is opaque: a full page may have more after it (the first page knows the total)
        more = bool(last_buffer) and len(ids) == page_size and (total is None or next_key or len(ids) < total)
        return Page(ids=ids, next_key=last_buffer, has_more=bool(more), total=total)

    async def remove_window_product(self, product_id: str, *, appid: str | None = None,
                                    finder_id: str | None = None) -> None:
        await self.call("/channels/ec/window/product/off", self._finder(
            {"appid": appid or self.appid, "product_id": product_id}, finder_id))

    # --- orders ---------------------------------------------------------------------------

    async def get_order(self, order_id: str) -> ChannelsOrder:
        data = await self.call("/channels/ec/order/get", {"order_id": order_id})
        return ChannelsOrder.model_validate(data["order"])

    async def list_orders(self, *, start_time: int, end_time: int, status: int | None = None,
                          page_size: int = 100, next_key: str | None = None, by_update: bool = False) -> Page:
        """Order ids created (or, `by_update`, changed) in [start_time, end_time) (at most 7 days)."""
        time_range = "update_time_range" if by_update else "create_time_range"
        payload: dict[str, Any] = {time_range: {"start_time": start_time, "end_time": end_time},
                                   "page_size": page_size}
        if status is not None:
            payload["status"] = status
        if next_key:
            payload["next_key"] = next_key
        data = await self.call("/channels/ec/order/list/get", payload)
        return Page(ids=[str(i) for i in data.get("order_id_list", [])], next_key=data.get("next_key", ""),
                    has_more=bool(data.get("has_more")))

    async def send_delivery(self, order_id: str, deliveries: list[Delivery]) -> None:
        await self.call("/channels/ec/order/delivery/send", {
            "order_id": order_id,
            "delivery_list": [
                {"delivery_id": d.delivery_id, "waybill_id": d.waybill_id, "deliver_type": d.deliver_type,
                 "product_infos": [{"product_id": p, "sku_id": s, "product_cnt": n} for p, s, n in d.products]}
                for d in deliveries
            ],
        })

    # --- after-sale -----------------------------------------------------------------------

    async def get_aftersale(self, after_sale_order_id: str) -> AfterSaleOrder:
        data = await self.call("/channels/ec/aftersale/getaftersaleorder", {"after_sale_order_id": after_sale_order_id})
        return AfterSaleOrder.from_api(data["after_sale_order"])

    async def list_aftersales(self, *, begin_update_time: int, end_update_time: int,
                              next_key: str | None = None) -> Page:
        """After-sale ids changed in [begin, end) (at most 24 hours: errcode 10020004)."""
        payload: dict[str, Any] = {"begin_update_time": begin_update_time, "end_update_time": end_update_time}
        if next_key:
            payload["next_key"] = next_key
        data = await self.call("/channels/ec/aftersale/getaftersalelist", payload)
        return Page(ids=[str(i) for i in data.get("after_sale_order_id_list", [])],
                    next_key=data.get("next_key", ""), has_more=bool(data.get("has_more")))

    async def accept_aftersale(self, after_sale_order_id: str, *, address_id: str | None = None) -> None:
        """Accept (a return: first to let the buyer send it back to `address_id`, the merchant's
        return address, which the shop requires then; again on receipt, which refunds)."""
        payload = {"after_sale_order_id": after_sale_order_id}
        if address_id:
            payload["address_id"] = address_id
        await self.call("/channels/ec/aftersale/acceptapply", payload)

    async def reject_aftersale(self, after_sale_order_id: str, reason: str) -> None:
        await self.call("/channels/ec/aftersale/rejectapply",
                        {"after_sale_order_id": after_sale_order_id, "reject_reason": reason})

    # --- event pushes ---------------------------------------------------------------------

    def parse_push(self, query: Mapping[str, str], body: bytes) -> dict[str, Any] | None:
        """Verify (msg_signature) and decrypt a security-mode push; None if it is not genuine."""
        return PushKeys(self.appid, self.push_token, self.encoding_aes_key).parse(query, body)


@dataclass(frozen=True)
class PushKeys:
    """What checks and opens the shop's message pushes (消息推送, security mode). No HTTP client:
    the API holds one of these for its webhook."""

    appid: str
    token: str
    encoding_aes_key: str

    @classmethod
    def from_settings(cls, settings: Settings) -> PushKeys:
        if _setting(settings, "channels_appid"):
            return cls(settings.channels_appid, _setting(settings, "channels_push_token") or "",
                       _setting(settings, "channels_encoding_aes_key") or "")
        creds = load_kit(settings.sandbox_dir)
        return cls(creds.channels_appid, creds.channels_push_token, creds.channels_encoding_aes_key)

    def verify_url(self, query: Mapping[str, str]) -> str | None:
        """The URL check WeChat makes when the push URL is saved (GET with signature, timestamp,
        nonce, echostr): the echostr to answer, or None when the signature is not the shop's."""
        if not self.token or not query.get("echostr"):
            return None
        expected = wxcrypt.sha1_signature(self.token, query.get("timestamp", ""), query.get("nonce", ""))
        return query["echostr"] if hmac.compare_digest(expected, query.get("signature", "")) else None

    def parse(self, query: Mapping[str, str], body: bytes) -> dict[str, Any] | None:
        """Verify (msg_signature) and decrypt a push; None if it is not genuine."""
        if not (self.token and self.encoding_aes_key):
            return None
        try:
            envelope = json.loads(body)
            plain = wxcrypt.verify_and_decrypt(
                token=self.token, encoding_aes_key=self.encoding_aes_key, appid=self.appid,
                timestamp=query.get("timestamp", ""), nonce=query.get("nonce", ""),
                msg_signature=query.get("msg_signature", ""), encrypted=envelope["Encrypt"],
            )
            return json.loads(plain)
        except (wxcrypt.WxCryptError, ValueError, KeyError, TypeError):
            return None
