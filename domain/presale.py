"""Pre-sale (预售) rules: deposit now, balance in a window later.

* The deposit is less than the price and at most `max_deposit_bps` of it (by default 20%: the
  Civil Code, art. 586, caps a 定金 at 20% of the contract).
* Fee and commission are on what is really paid, after any coupon, as for every order; the
  coupon comes off the balance, which must stay above zero.
* Commission is posted once the balance is paid, on deposit + balance actually paid.
* A balance not paid by the end of its window closes the order and **the deposit is refunded**:
  the platform's rule is that refunds are always honoured, so no deposit is ever forfeited.
* A refund of a pre-sale order is taken from the balance payment first, then the deposit: two
  WeChat Pay refunds when it needs both, each idempotent by its own out_refund_no.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from pydantic import BaseModel

DEPOSIT_SUFFIX, BALANCE_SUFFIX = "D", "B"


class PresaleRefused(Exception):
    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code, self.message = code, message


@dataclass(frozen=True)
class PresaleRules:
    deposit_bps: int              # default deposit, share of the price
    max_deposit_bps: int          # legal ceiling on a deposit
    balance_starts_after: timedelta
    balance_window: timedelta


@dataclass(frozen=True)
class PresaleTerms:
    deposit_fen: int
    balance_starts_at: datetime
    balance_ends_at: datetime


def presale_terms(*, price_fen: int, now: datetime, rules: PresaleRules, deposit_fen: int | None = None,
                  balance_starts_at: datetime | None = None, balance_ends_at: datetime | None = None,
                  commission_pool_fen: int = 0, service_fee_fen: int = 0) -> PresaleTerms:
    """The terms of a SKU's pre-sale, defaults filled from the settings, or PresaleRefused."""
    deposit = deposit_fen if deposit_fen is not None else max(1, price_fen * rules.deposit_bps // 10_000)
    if deposit <= 0:
        raise PresaleRefused("DEPOSIT_INVALID", "the deposit must be at least 1 fen")
    if deposit >= price_fen:
        raise PresaleRefused("DEPOSIT_NOT_BELOW_PRICE", f"a deposit of {deposit} fen is not below the price {price_fen}")
    if deposit * 10_000 > price_fen * rules.max_deposit_bps:
        raise PresaleRefused("DEPOSIT_TOO_HIGH",
                             f"a deposit may be at most {rules.max_deposit_bps / 100:g}% of the price")
    if commission_pool_fen + service_fee_fen > price_fen:
        raise PresaleRefused("COMMISSION_TOO_HIGH", "commission and service fee exceed the price")
    starts = balance_starts_at or now + rules.balance_starts_after
    ends = balance_ends_at or starts + rules.balance_window
    if ends <= starts:
        raise PresaleRefused("WINDOW_INVALID", "the balance window must end after it starts")
    if ends <= now:
        raise PresaleRefused("WINDOW_PAST", "the balance window has already ended")
    return PresaleTerms(deposit, starts, ends)


def split_deposit(total_fen: int, deposit_per_unit: int, quantity: int) -> tuple[int, int]:
    """(deposit, balance) of an order line of `quantity` units paying `total_fen` after discounts."""
    deposit = deposit_per_unit * quantity
    if total_fen - deposit <= 0:
        raise PresaleRefused("DISCOUNT_TOO_LARGE", "the discount would leave no balance to pay after the deposit")
    return deposit, total_fen - deposit


def refund_parts(amount_fen: int, *, balance_left: int, deposit_left: int) -> list[tuple[str, int]]:
    """Split a refund over the payments: from the balance first, then the deposit.
    [(suffix, fen)], parts of zero left out; ValueError if both together cannot cover it."""
    if amount_fen > balance_left + deposit_left:
        raise ValueError("refund larger than what is left of both payments")
    from_balance = min(amount_fen, balance_left)
    parts = [(BALANCE_SUFFIX, from_balance), (DEPOSIT_SUFFIX, amount_fen - from_balance)]
    return [(k, v) for k, v in parts if v > 0]


def deposit_trade_no(order_no: str) -> str:
    return order_no + DEPOSIT_SUFFIX


def balance_trade_no(order_no: str) -> str:
    return order_no + BALANCE_SUFFIX


def lapse_refund_no(order_no: str) -> str:
    """The refund of the deposit of an order whose balance was not paid in time."""
    return f"RD{order_no}"


def combined_refund_status(statuses: list[str]) -> str:
    """One refund's status from its WeChat Pay parts: SUCCESS when every part succeeded,
    PROCESSING while any is processing, ABNORMAL when a part is abnormal or the parts disagree
    (a person must look), CLOSED when all were closed."""
    if not statuses:
        return "PROCESSING"
    if all(s == "SUCCESS" for s in statuses):
        return "SUCCESS"
    if all(s == "CLOSED" for s in statuses):
        return "CLOSED"
    if "ABNORMAL" in statuses:
        return "ABNORMAL"
    if "PROCESSING" in statuses:
        return "PROCESSING"
    return "ABNORMAL"


class PresaleInfo(BaseModel):
    """What the order workflow knows of a pre-sale order."""

    deposit_fen: int
    balance_fen: int
    balance_starts_at: datetime
    balance_ends_at: datetime


class PartPayment(BaseModel):
    """One of the two WeChat Pay orders of a pre-sale order."""

    order_no: str
    out_trade_no: str
    kind: str  # deposit | balance
    amount_fen: int
    description: str
    buyer_openid: str
