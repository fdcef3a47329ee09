"""What the WeChat Channels shop (视频号小店) tells us, and the rules for turning it into our
processes: an order paid in the shop becomes one of our orders (`CH{shop order id}`), an
after-sale opened there becomes one of our refunds (`CA{after-sale id}`).

A push only says "something changed on order X / after-sale Y"; what changed is always read
back from the shop's API, so lost, duplicated and reordered pushes converge on the same state.
Pushes are kept once by their key (event, object, CreateTime); the periodic pull finds what a
lost push did not bring.
"""

from __future__ import annotations

from datetime import timedelta
from enum import StrEnum

from pydantic import BaseModel, Field, ValidationError

from domain.order_process import OrderTimings
from domain.orders import PaymentNotice, ShippingAddress
from domain.refunds import RefundInput, RefundKind, shop_refund_no  # noqa: F401 - one place for the refund no

ORDER_EVENTS = frozenset({
    "channels_ec_order_new", "channels_ec_order_pay", "channels_ec_order_deliver", "channels_ec_order_confirm",
    "channels_ec_order_cancel", "channels_ec_order_settle", "channels_ec_order_ext_info_update",
})
AFTERSALE_EVENT = "channels_ec_aftersale_update"

# shop order status (订单状态): paid from TO_SHIP on; 250 closed unpaid; 200 cancelled by after-sales
SHOP_UNPAID, SHOP_CANCELLED_UNPAID = 10, 250
SHOP_PAID = frozenset({20, 21, 30, 100, 200})
SHOP_COMPLETED = 100
# account_type of an order's source_infos (成交来源): 1 = a 视频号 (its finder id is account_id)
FINDER_ACCOUNT = 1


class AfterSaleStatus(StrEnum):
    """售后单状态 of the shop's after-sale API (the ones we act on)."""

    USER_CANCELD = "USER_CANCELD"                      # the buyer withdrew it (spelled so by the API)
    MERCHANT_PROCESSING = "MERCHANT_PROCESSING"        # waiting for the merchant's decision
    MERCHANT_REJECT_REFUND = "MERCHANT_REJECT_REFUND"
    MERCHANT_REJECT_RETURN = "MERCHANT_REJECT_RETURN"
    USER_WAIT_RETURN = "USER_WAIT_RETURN"              # accepted: the buyer sends the goods back
    MERCHANT_WAIT_RECEIPT = "MERCHANT_WAIT_RECEIPT"
    MERCHANT_REFUND_SUCCESS = "MERCHANT_REFUND_SUCCESS"  # the shop paid the buyer back
    PLATFORM_REFUNDING = "PLATFORM_REFUNDING"
    PLATFORM_REFUND_FAIL = "PLATFORM_REFUND_FAIL"
    USER_WAIT_CONFIRM_UPDATE = "USER_WAIT_CONFIRM_UPDATE"


AFTERSALE_REFUNDED = frozenset({AfterSaleStatus.MERCHANT_REFUND_SUCCESS})
AFTERSALE_ENDED_UNPAID = frozenset({AfterSaleStatus.USER_CANCELD, AfterSaleStatus.MERCHANT_REJECT_REFUND,
                                    AfterSaleStatus.MERCHANT_REJECT_RETURN})


def shop_order_no(shop_order_id: str) -> str:
    return f"CH{shop_order_id}"


def shop_workflow_id(shop_order_id: str) -> str:
    return f"shop-order-{shop_order_id}"


class ShopEvent(BaseModel):
    """One push (or one change the pull found), stored once by `key`."""

    key: str = Field(max_length=120)
    event: str = Field(max_length=64)
    order_id: str = Field(max_length=32)
    after_sale_order_id: str | None = Field(default=None, max_length=32)
    create_time: int = 0


def event_of(message: dict) -> ShopEvent | None:
    """The decrypted push as a ShopEvent; None for events we do not process (they are still
    answered "success", so the shop does not push them again)."""
    name = str(message.get("Event", ""))
    created = int(message.get("CreateTime") or 0)
    if name in ORDER_EVENTS:
        order_id = str((message.get("order_info") or {}).get("order_id") or "")
        if not order_id:
            return None
        return ShopEvent(key=f"{name}:{order_id}:{created}", event=name, order_id=order_id, create_time=created)
    if name == AFTERSALE_EVENT:
        update = message.get("finder_shop_aftersale_status_update") or {}
        aid, order_id = str(update.get("after_sale_order_id") or ""), str(update.get("order_id") or "")
        if not (aid and order_id):
            return None
        status = str(update.get("status", ""))
        return ShopEvent(key=f"{name}:{aid}:{status}:{created}", event=name, order_id=order_id,
                         after_sale_order_id=aid, create_time=created)
    return None


def pulled_order_event(order_id: str, update_time: int) -> ShopEvent:
    return ShopEvent(key=f"pull:order:{order_id}:{update_time}", event="pull_order", order_id=order_id,
                     create_time=update_time)


def pulled_aftersale_event(order_id: str, after_sale_order_id: str, update_time: int) -> ShopEvent:
    return ShopEvent(key=f"pull:aftersale:{after_sale_order_id}:{update_time}", event=AFTERSALE_EVENT,
                     order_id=order_id, after_sale_order_id=after_sale_order_id, create_time=update_time)


def refund_kind(after_sale_type: str, *, shipped: bool) -> RefundKind:
    """A refund-only request before anything shipped is a cancel; a return is the 7-day return;
    a refund-only request after shipment is a quality claim (support looks, with a deadline)."""
    if after_sale_type == "RETURN":
        return RefundKind.RETURN
    return RefundKind.QUALITY_REFUND if shipped else RefundKind.CANCEL


def allocate(total_fen: int, weights: list[int]) -> list[int]:
    """`total_fen` split in proportion to `weights`, rounded down, the remainder to the largest
    parts first: the parts always add up to the total exactly."""
    whole = sum(weights)
    if total_fen < 0 or whole <= 0 or any(w < 0 for w in weights):
        raise ValueError(f"cannot allocate {total_fen} over {weights}")
    parts = [total_fen * w // whole for w in weights]
    left = total_fen - sum(parts)
    for i in sorted(range(len(weights)), key=lambda i: (-(total_fen * weights[i] % whole), i))[:left]:
        parts[i] += 1
    return parts


class ShopLine(BaseModel):
    sku_id: int               # ours (the shop SKU's out_sku_id)
    quantity: int = Field(gt=0)
    list_fen: int = Field(ge=0)  # the shop's sale price × quantity
    paid_fen: int = Field(ge=0)  # what the buyer paid for it, after the shop's discounts


class ShopOrderState(BaseModel):
    """The shop's order as we need it, read from the shop's API."""

    shop_order_id: str
    status: int
    buyer_openid: str
    lines: list[ShopLine] = []
    paid_fen: int = 0             # goods paid (order price less freight)
    transaction_id: str | None = None
    finder_ids: list[str] = []    # 视频号 accounts the sale came through (source_infos)
    address: dict | None = None   # the shop's address_info, for the supplier's parcel
    our_status: str | None = None  # our order's status; None: not imported yet

    @property
    def paid(self) -> bool:
        return self.status in SHOP_PAID


def shop_address(info: dict | None) -> ShippingAddress | None:
    """The shop's address_info as the supplier's parcel needs it; None when the shop gives none
    we can use (a virtual number the supplier cannot call is still the shop's to handle)."""
    if not info:
        return None
    try:
        return ShippingAddress(receiver=str(info.get("user_name") or "")[:32], phone=str(info.get("tel_number") or ""),
                               province=str(info.get("province_name") or "")[:16],
                               city=str(info.get("city_name") or "")[:16],
                               district=str(info.get("county_name") or "")[:16],
                               detail=str(info.get("detail_info") or "")[:120])
    except ValidationError:
        return None


def shop_payment_notice(state: ShopOrderState) -> PaymentNotice:
    """The shop's payment as our order records it: the buyer paid the shop, whose settlement pays
    us (booked to channels:clearing, not to WeChat Pay)."""
    return PaymentNotice(out_trade_no=shop_order_no(state.shop_order_id),
                         transaction_id=state.transaction_id or f"channels-{state.shop_order_id}",
                         trade_state="SUCCESS", amount_fen=sum(ln.paid_fen for ln in state.lines), paid_in="channels")


class ShopAfterSale(BaseModel):
    after_sale_order_id: str
    order_id: str
    status: str
    type: str
    refund_fen: int
    sku_id: int | None = None    # ours
    count: int = 0


class ShopRefundStep(BaseModel):
    """What reconciling one after-sale found: a refund to start, or the one running to tell."""

    refund_no: str
    status: str
    start: bool = False
    refund_input: RefundInput | None = None  # set when `start`


class ShopOrderInput(BaseModel):
    shop_order_id: str
    events: list[ShopEvent] = []
    order_timings: OrderTimings
    linger: timedelta = Field(default=timedelta(minutes=5),
                              description="how long a run waits for more events before it ends")


class ShopOrderProgress(BaseModel):
    shop_order_id: str
    shop_status: int | None = None
    order_no: str | None = None
    events: int = 0
    refunds: list[str] = []
    failure: str | None = None  # the last event we could not act on (its error code)


class ChannelsPullInput(BaseModel):
    lookback: timedelta = Field(default=timedelta(minutes=30),
                                description="the pull starts this long before its cursor: late updates are found")
    order_timings: OrderTimings
    linger: timedelta = timedelta(minutes=5)
    page_size: int = Field(default=100, ge=1, le=100)


class ChannelsPullProgress(BaseModel):
    orders: int = 0
    aftersales: int = 0
    new_events: int = 0
