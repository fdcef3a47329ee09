"""Refund rules: which refunds an order allows, when support must look first, and how money
is split by quantity so that every part adds up to the whole exactly."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum

from pydantic import BaseModel, Field

from domain.order_status import OrderStatus
from domain.orders import PaymentNotice


class RefundKind(StrEnum):
    CANCEL = "cancel"                      # before shipment (or before pickup): refund at once
    RETURN = "return"                      # 7-day no-reason return: parcel back first
    QUALITY_RETURN = "quality_return"      # quality claim, goods sent back
    QUALITY_REFUND = "quality_refund"      # quality claim, refund only (support looks first)
    PICKUP_EXPIRED = "pickup_expired"      # unclaimed pickup code (system)
    LATE_PAYMENT = "late_payment"          # paid after the order was closed (system)
    PRESALE_LAPSED = "presale_lapsed"      # pre-sale balance not paid in time: deposit back (system)
    PAYMENT_FAILED = "payment_failed"      # a payment the order could not keep: all of it back (system)
    GROUP_FAILED = "group_failed"          # a group buy (拼团) that did not fill in time (system)


BUYER_KINDS = (RefundKind.CANCEL, RefundKind.RETURN, RefundKind.QUALITY_RETURN, RefundKind.QUALITY_REFUND)
# Goods that come back unopened (or never left) go back on sale.
RESTOCKED = (RefundKind.CANCEL, RefundKind.RETURN, RefundKind.PICKUP_EXPIRED, RefundKind.GROUP_FAILED)
# The buyer's right: a cancel before shipment and a 7-day no-reason return are always honoured.
# They are never reviewed or rejected; large amounts and frequent returners are only flagged.
NEVER_REJECTABLE = (RefundKind.CANCEL, RefundKind.RETURN)
# Money refunded whole, with no goods and no commission booked against it.
WHOLE_PAYMENT = (RefundKind.LATE_PAYMENT, RefundKind.PRESALE_LAPSED, RefundKind.PAYMENT_FAILED)


class RefundStatus(StrEnum):
    REVIEWING = "REVIEWING"
    AWAITING_RETURN = "AWAITING_RETURN"
    RETURN_SHIPPED = "RETURN_SHIPPED"
    REFUNDING = "REFUNDING"
    ABNORMAL = "ABNORMAL"
    REFUNDED = "REFUNDED"
    REJECTED = "REJECTED"
    CLOSED = "CLOSED"

    @property
    def final(self) -> bool:
        return self in (RefundStatus.REFUNDED, RefundStatus.REJECTED, RefundStatus.CLOSED)


class RefundRefused(Exception):
    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code, self.message = code, message


@dataclass(frozen=True)
class RefundRules:
    return_window: timedelta          # no-reason returns, counted from receipt (or delivery)
    quality_claim_window: timedelta   # quality claims, counted from receipt (or delivery)
    review_above_fen: int             # support looks at refunds above this amount
    frequent_returns: int             # ... and at buyers with this many refunds in the window
    frequent_returns_window: timedelta


@dataclass
class RefundPlan:
    needs_return: bool
    review_reasons: list[str] = field(default_factory=list)   # support judges first (with a deadline)
    flags: list[str] = field(default_factory=list)            # noted for support, never holding it up


SHIPPED_STATES = (OrderStatus.SHIPPED, OrderStatus.DELIVERED, OrderStatus.RECEIVED, OrderStatus.COMPLETED)


def plan_refund(kind: RefundKind, *, status: OrderStatus, pickup: bool, picked_up: bool,
                received_at: datetime | None, now: datetime, amount_fen: int,
                recent_refunds: int, rules: RefundRules) -> RefundPlan:
    """Decide how a buyer's refund request proceeds, or refuse it with a reason the buyer can
    act on. Nothing here depends on sales targets: every paid order can be refunded.

    A cancel before shipment and a 7-day no-reason return are never reviewed (large amounts and
    frequent returners are flagged only); support reviews quality claims, with a deadline."""
    handed_over = picked_up if pickup else status in SHIPPED_STATES
    if status == OrderStatus.DEPOSIT_PAID:
        raise RefundRefused("PRESALE_BALANCE_PENDING", "only the deposit is paid: an unpaid balance closes the "
                                                       "order and the deposit is refunded automatically")
    if status in (OrderStatus.PENDING_PAYMENT, OrderStatus.CANCELLED, OrderStatus.REFUNDED):
        raise RefundRefused("NOT_REFUNDABLE", f"order is {status}: nothing was paid or it is already refunded")
    if kind == RefundKind.CANCEL:
        if handed_over:
            raise RefundRefused("ALREADY_SHIPPED", "the goods are on their way: ask for a return instead")
        return RefundPlan(needs_return=False, flags=_review(amount_fen, recent_refunds, rules))
    if kind not in BUYER_KINDS:
        raise RefundRefused("INVALID_KIND", f"{kind} refunds are started by the platform")
    if not handed_over:
        raise RefundRefused("NOT_SHIPPED", "nothing was handed over yet: cancel instead")
    window = rules.return_window if kind == RefundKind.RETURN else rules.quality_claim_window
    if received_at is not None and now - received_at > window:
        raise RefundRefused("WINDOW_CLOSED", f"{kind} is possible for {window.days} days after receipt")
    reasons = _review(amount_fen, recent_refunds, rules)
    if kind == RefundKind.RETURN:
        return RefundPlan(needs_return=True, flags=reasons)
    if kind == RefundKind.QUALITY_REFUND:
        reasons.insert(0, "quality claim without return")
    return RefundPlan(needs_return=kind != RefundKind.QUALITY_REFUND, review_reasons=reasons)


def _review(amount_fen: int, recent_refunds: int, rules: RefundRules) -> list[str]:
    reasons = []
    if amount_fen > rules.review_above_fen:
        reasons.append(f"amount {amount_fen} fen above {rules.review_above_fen}")
    if recent_refunds >= rules.frequent_returns:
        reasons.append(f"buyer has {recent_refunds} refunds in {rules.frequent_returns_window.days} days")
    return reasons


def share_of(total: int, units: int, claimed_before: int, quantity: int) -> int:
    """The part of `total` (spread evenly over `units`) that `quantity` more units take once
    `claimed_before` units were taken. Cumulative floors: the parts of all refunds of a line
    add up to exactly `total`, whatever order and sizes they come in."""
    if claimed_before < 0 or quantity < 0 or claimed_before + quantity > units:
        raise ValueError("claimed units out of range")
    return total * (claimed_before + quantity) // units - total * claimed_before // units


def remaining_share(total: int, units: int, claimed: int) -> int:
    """What is left of `total` once `claimed` units were taken by refunds."""
    return total - total * claimed // units


def new_refund_no() -> str:
    return f"RF{secrets.token_hex(8).upper()}"


def late_payment_refund_no(order_no: str) -> str:
    return f"RL{order_no}"


def pickup_refund_no(order_no: str) -> str:
    return f"RP{order_no}"


SHOP_REFUND_PREFIX = "CA"


def shop_refund_no(after_sale_order_id: str) -> str:
    """The refund of an after-sale opened in the Channels shop."""
    return f"{SHOP_REFUND_PREFIX}{after_sale_order_id}"


def aftersale_of_refund_no(refund_no: str) -> str | None:
    return refund_no[len(SHOP_REFUND_PREFIX):] if refund_no.startswith(SHOP_REFUND_PREFIX) else None


class RefundLineRequest(BaseModel):
    line_id: int = Field(gt=0)
    quantity: int = Field(gt=0, le=999)


class RefundTimings(BaseModel):
    return_ship_timeout: timedelta
    return_receipt_timeout: timedelta
    refund_poll_every: timedelta
    review_deadline: timedelta = Field(default=timedelta(hours=48),
                                       description="a review not decided by then is approved automatically")
    polls_per_run: int = Field(default=200, ge=1,
                               description="WeChat Pay polls of a PROCESSING refund before continuing as new")


class RefundInput(BaseModel):
    refund_no: str
    order_no: str
    kind: RefundKind
    amount_fen: int
    needs_return: bool
    review_reasons: list[str] = []
    supplier_ids: list[int] = []
    timings: RefundTimings
    late_payment: PaymentNotice | None = Field(
        default=None, description="set when refunding a payment that came after the order was closed")
    resume_refunding: bool = Field(
        default=False, description="continued as new while WeChat Pay was still processing the refund")
    resume_note: str = ""
    channels_aftersale_id: str | None = Field(
        default=None, description="an after-sale of the Channels shop: decided and paid back through the shop")


class RefundDecision(BaseModel):
    approve: bool
    note: str = Field(default="", max_length=500)
    reviewer_user_id: int | None = Field(description="None: approved automatically at the review deadline")


class ReturnParcel(BaseModel):
    carrier: str
    waybill_no: str


class ReturnReceipt(BaseModel):
    supplier_id: int


class RefundNotice(BaseModel):
    refund_no: str
    status: str
    refund_id: str | None = None


class RefundProgress(BaseModel):
    refund_no: str
    order_no: str
    kind: RefundKind
    status: RefundStatus
    amount_fen: int
    review_reasons: list[str] = []
    note: str = ""
    updated_at: datetime | None = None
    review_deadline_at: datetime | None = None


class RefundOutcome(BaseModel):
    """What the order workflow learns when one of its refunds ends."""

    refund_no: str
    status: RefundStatus
    order_fully_refunded: bool = False
    suppliers_with_units_left: list[int] = []


class RefundSweepInput(BaseModel):
    """The `refunds-sweep` run: buyers' refunds saved this long ago whose workflow never started."""

    stranded_after: timedelta = timedelta(minutes=10)
    timings: RefundTimings
    page_size: int = 100


class StrandedRefunds(BaseModel):
    refunds: list[RefundInput] = []
    next_after: str | None = None


class RefundSweepProgress(BaseModel):
    started: int = 0
    already_running: int = 0
    done: bool = False


def compensation_refund_no(order_no: str) -> str:
    return f"RC{order_no}"
