"""Flash sales (秒杀): a SKU sold at a lower price for a while, from a stock set aside for it,
at most `per_buyer_limit` units per buyer.

A buyer's claim is answered at once from the database (the sale's row is the queue: claims take
its lock in arrival order), before any workflow runs: sold out, limit reached, not started or
ended are clear answers in milliseconds. A claimed unit is the buyer's order; an order cancelled
unpaid gives its unit back to the sale while it runs (to the SKU's stock once it has ended), and
at the end whatever the sale did not sell goes back to the SKU's stock (FlashSaleWorkflow)."""

from __future__ import annotations

from datetime import datetime, timedelta

from pydantic import BaseModel

MIN_DURATION = timedelta(minutes=1)
MAX_DURATION = timedelta(days=7)


class FlashSaleRefused(Exception):
    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


class FlashSaleInput(BaseModel):
    flash_sale_id: int
    ends_at: datetime


def workflow_id(flash_sale_id: int) -> str:
    return f"flash-sale-{flash_sale_id}"


def sale_status(*, active: bool, starts_at: datetime, ends_at: datetime, now: datetime) -> str:
    """upcoming, running or ended: a flash sale's or a group deal's window as buyers see it."""
    return "ended" if not active or now >= ends_at else "upcoming" if now < starts_at else "running"


def check_new_sale(*, price_fen: int, list_price_fen: int, quantity: int, stock: int, per_buyer_limit: int,
                   starts_at: datetime, ends_at: datetime, now: datetime) -> None:
    if not 0 < price_fen < list_price_fen:
        raise FlashSaleRefused("PRICE_NOT_LOWER", f"a flash price must be above 0 and below the SKU's "
                                                  f"{list_price_fen} fen")
    if quantity > stock:
        raise FlashSaleRefused("NOT_ENOUGH_STOCK", f"the SKU has {stock} in stock, fewer than {quantity}")
    if per_buyer_limit > quantity:
        raise FlashSaleRefused("LIMIT_ABOVE_QUANTITY", "the per-buyer limit cannot exceed the sale's quantity")
    if ends_at <= max(starts_at, now):
        raise FlashSaleRefused("ENDS_TOO_EARLY", "a flash sale must end after it starts, in the future")
    if not MIN_DURATION <= ends_at - starts_at <= MAX_DURATION:
        raise FlashSaleRefused("BAD_DURATION", f"a flash sale lasts between {MIN_DURATION} and {MAX_DURATION}")


def refused_at_once(*, now: datetime, starts_at: datetime, ends_at: datetime, left: int, total: int, status: str,
                    wanted: int) -> FlashSaleRefused | None:
    """The refusal a claim would get, read from the sale's row alone: a burst's many refusals are
    answered without the order's other checks. A claim not refused here is still judged by the
    conditional update (`activities/flash_sales.claim`)."""
    if status != "active" or now >= ends_at or now < starts_at or wanted > left:
        return why_not(now=now, starts_at=starts_at, ends_at=ends_at, left=left, quantity=total, status=status)
    return None


def limit_reached(per_buyer_limit: int) -> FlashSaleRefused:
    return FlashSaleRefused("FLASH_SALE_LIMIT_REACHED", f"at most {per_buyer_limit} per buyer")


def why_not(*, now: datetime, starts_at: datetime, ends_at: datetime, left: int, quantity: int,
            status: str) -> FlashSaleRefused:
    """The answer to a claim the sale's conditional update did not take."""
    if status != "active" or now >= ends_at:
        return FlashSaleRefused("FLASH_SALE_ENDED", "this flash sale has ended")
    if now < starts_at:
        return FlashSaleRefused("FLASH_SALE_NOT_STARTED", f"this flash sale starts at {starts_at:%Y-%m-%d %H:%M:%S} UTC")
    return FlashSaleRefused("FLASH_SALE_SOLD_OUT", f"sold out: {left} left of {quantity}")
