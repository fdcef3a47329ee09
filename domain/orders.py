"""Order types passed between the API, the order workflow and its activities
(pydantic, serialised by temporalio.contrib.pydantic)."""

from __future__ import annotations

import re
import secrets
from datetime import datetime

from typing import Literal

from pydantic import BaseModel, Field, field_validator, model_validator

from domain.order_status import OrderStatus
from domain.presale import PresaleInfo

CARRIER_CODE = re.compile(r"^[a-z0-9]{2,32}$")


class ShippingAddress(BaseModel):
    receiver: str = Field(min_length=1, max_length=32)
    phone: str = Field(pattern=r"^1\d{10}$", description="mainland mobile number")
    province: str = Field(min_length=1, max_length=16)
    city: str = Field(min_length=1, max_length=16)
    district: str = Field(default="", max_length=16)
    detail: str = Field(min_length=1, max_length=120)


class LineRequest(BaseModel):
    sku_id: int = Field(gt=0)
    quantity: int = Field(gt=0, le=999)


SOURCES = ("window", "share_link", "live", "channels")  # channels: a WeChat Channels shop order


class PlaceOrderInput(BaseModel):
    order_no: str
    buyer_user_id: int
    buyer_openid: str
    window_id: int | None
    source: str = "window"
    lines: list[LineRequest] = Field(min_length=1, max_length=50)
    fulfilment: Literal["delivery", "pickup"] = "delivery"
    address: ShippingAddress | None = None
    outlet_id: int | None = None
    coupon_code: str | None = None
    # a flash-sale order: its one line's units were claimed from this sale (activities/flash_sales.py)
    flash_sale_id: int | None = None
    # a group-buy (拼团) order: its one line is at the deal's price, its place taken already
    # (activities/group_buy.py); it is fulfilled only once the group forms
    group_id: int | None = None
    channels_order_id: str | None = None  # source "channels": the shop's order, shipped through it too
    # an order paid in the Channels shop (domain/channels_inbound.py): what each line cost there.
    # The shop sold the goods already: placement never refuses it for stock or status, and the
    # shop holds the buyer's address (none is kept here).
    shop_paid_fen: list[int] | None = Field(default=None, max_length=50)
    # the delivery address's GB/T 2260 code (domain/regions.py): freight is charged by it; none
    # (an address typed without one) charges no freight
    region_code: str | None = Field(default=None, pattern=r"^\d{6}$")
    # keyed fingerprints (domain/risk.py) of the buyer's device, IP and address, for risk flags
    device_fp: str | None = None
    ip_fp: str | None = None
    address_fp: str | None = None
    # the same under fingerprint keys rotated out but still in their grace period, so a
    # rotation does not make every earlier order look like another device's
    earlier_fps: list[str] = Field(default_factory=list, max_length=60)

    @model_validator(mode="after")
    def _where_it_goes(self) -> PlaceOrderInput:
        if self.fulfilment == "delivery" and self.address is None and self.shop_paid_fen is None:
            raise ValueError("a delivery order needs an address")
        if self.shop_paid_fen is not None and (len(self.shop_paid_fen) != len(self.lines)
                                               or not self.channels_order_id):
            raise ValueError("shop_paid_fen is one amount per line of a Channels shop order")
        if self.fulfilment == "pickup" and self.outlet_id is None:
            raise ValueError("a pickup order needs an outlet_id")
        if self.fulfilment == "delivery" and self.outlet_id is not None:
            raise ValueError("outlet_id is for pickup orders")
        return self


class PlacedLine(BaseModel):
    line_id: int
    sku_id: int
    supplier_id: int
    paid_fen: int
    commission_pool_fen: int
    service_fee_fen: int


class PlacedOrder(BaseModel):
    order_no: str
    total_fen: int
    description: str
    buyer_openid: str
    promoter_id: int | None
    supplier_ids: list[int]
    lines: list[PlacedLine]
    presale: PresaleInfo | None = None


class PrepayParams(BaseModel):
    """What the mini program passes to wx.requestPayment."""

    prepay_id: str
    appId: str
    timeStamp: str
    nonceStr: str
    package: str
    signType: str
    paySign: str


class PaymentNotice(BaseModel):
    out_trade_no: str
    transaction_id: str
    trade_state: str
    amount_fen: int
    success_time: datetime | None = None
    # who took the money: our WeChat Pay merchant, or the Channels shop (its settlement pays us)
    paid_in: Literal["wechatpay", "channels"] = "wechatpay"


class ShipmentInput(BaseModel):
    supplier_id: int
    carrier: str = Field(description="carrier code as the logistics service knows it, e.g. shunfeng")
    waybill_no: str = Field(pattern=r"^[A-Za-z0-9]{6,40}$")

    @field_validator("carrier")
    @classmethod
    def _carrier_code(cls, v: str) -> str:
        v = v.strip().lower()
        if not CARRIER_CODE.match(v):
            raise ValueError("carrier must be a carrier code like 'shunfeng' or 'yuantong'")
        return v


class TrackingUpdate(BaseModel):
    carrier: str
    waybill_no: str
    state: str
    delivered: bool


class OrderProgress(BaseModel):
    """What the workflow reports through its `progress` query."""

    order_no: str
    status: OrderStatus
    total_fen: int | None = None
    prepay: PrepayParams | None = None
    failure: str | None = None
    fulfilment: str = "delivery"
    shipped_suppliers: list[int] = []
    delivered: bool = False
    pickup_expires_at: datetime | None = None
    open_refunds: list[str] = []
    updated_at: datetime | None = None
    presale: PresaleInfo | None = None
    balance_open: bool = False
    balance_prepay: PrepayParams | None = None
    balance_due_at: datetime | None = None
    auto_confirm_at: datetime | None = None   # receipt is confirmed automatically then (from shipment)
    receipt_extended: bool = False
    ignored_payment_signals: int = 0          # payment signals WeChat Pay did not confirm
    group_id: int | None = None               # a group-buy order's group (GET /groups/{id})


class PickupScan(BaseModel):
    """An outlet's scan of a pickup code, as the API found it: the staff member, the outlet they
    work at and whether their account is active (the workflow's validator decides)."""

    staff_user_id: int
    outlet_id: int
    staff_active: bool


def new_order_no(now: datetime) -> str:
    """`CC` + local time + 8 random digits: sortable, unguessable, a valid out_trade_no."""
    return f"CC{now:%Y%m%d%H%M%S}{secrets.randbelow(10**8):08d}"
