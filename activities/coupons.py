"""Redeeming and releasing coupons inside the placement / cancellation transaction."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from activities.errors import business_error
from db.order_models import Coupon, CouponRedemption
from domain.coupons import CouponRefused, discount_for, spread


def redeem(s: Session, code: str, buyer_user_id: int, lines: list[tuple[int, int]]) -> list[int]:
    """Take one use of the coupon for this buyer and return the discount per line
    (`lines` = (supplier_id, list amount)); only the coupon's supplier's lines share it."""
    coupon = s.execute(update(Coupon).where(Coupon.code == code, Coupon.used_count < Coupon.total_limit)
                       .values(used_count=Coupon.used_count + 1).returning(Coupon)).scalar()
    if coupon is None:
        exists = s.get(Coupon, code) is not None
        raise business_error("COUPON_USED_UP" if exists else "COUPON_NOT_FOUND",
                             f"coupon {code} is used up" if exists else f"coupon {code} does not exist")
    if s.scalar(select(CouponRedemption.order_no).where(
            CouponRedemption.code == code, CouponRedemption.buyer_user_id == buyer_user_id)):
        raise business_error("COUPON_ALREADY_USED", f"you have already used coupon {code}")
    eligible = [amount if supplier == coupon.supplier_id else 0 for supplier, amount in lines]
    try:
        discount = discount_for(coupon.kind, coupon.amount_fen, coupon.threshold_fen, sum(eligible),
                                active=coupon.active, starts_at=coupon.starts_at, ends_at=coupon.ends_at,
                                now=datetime.now(UTC))
    except CouponRefused as err:
        raise business_error(err.code, err.message) from err
    return spread(eligible, discount)


def record_redemption(s: Session, code: str, order_no: str, buyer_user_id: int, discount_fen: int) -> None:
    s.add(CouponRedemption(order_no=order_no, code=code, buyer_user_id=buyer_user_id, discount_fen=discount_fen))


def release(s: Session, order_no: str) -> None:
    """An unpaid order was cancelled: its coupon use is given back."""
    code = s.execute(delete(CouponRedemption).where(CouponRedemption.order_no == order_no)
                     .returning(CouponRedemption.code)).scalar()
    if code is not None:
        s.execute(update(Coupon).where(Coupon.code == code).values(used_count=Coupon.used_count - 1))
