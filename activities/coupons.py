"""Redeeming and releasing coupons inside the placement / cancellation transaction."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from activities.errors import business_error
from db.order_models import Coupon, CouponClaim, CouponRedemption
from domain.coupons import CouponRefused, discount_for, spread


def redeem(s: Session, code: str, buyer_user_id: int, lines: list[tuple[int, int]]) -> tuple[list[int], bool]:
    """Take one use of the coupon for this buyer and return the discount per line
    (`lines` = (supplier_id, list amount)), and whether the platform funds it. A supplier's
    coupon is shared by that supplier's lines only; a platform coupon by every line."""
    coupon = s.execute(update(Coupon).where(Coupon.code == code, Coupon.used_count < Coupon.total_limit)
                       .values(used_count=Coupon.used_count + 1).returning(Coupon)).scalar()
    if coupon is None:
        exists = s.get(Coupon, code) is not None
        raise business_error("COUPON_USED_UP" if exists else "COUPON_NOT_FOUND",
                             f"coupon {code} is used up" if exists else f"coupon {code} does not exist")
    used = s.scalar(select(func.count()).select_from(CouponRedemption).where(
        CouponRedemption.code == code, CouponRedemption.buyer_user_id == buyer_user_id)) or 0
    if used >= coupon.per_buyer_limit:
        raise business_error("COUPON_ALREADY_USED", f"you have used coupon {code} "
                             f"{'once' if used == 1 else f'{used} times'} already, its limit per buyer")
    if coupon.claimable and _unused_claim(s, code, buyer_user_id) is None:
        raise business_error("COUPON_NOT_CLAIMED", f"claim coupon {code} in the coupon centre first")
    platform = coupon.supplier_id is None
    eligible = [amount if platform or supplier == coupon.supplier_id else 0 for supplier, amount in lines]
    try:
        discount = discount_for(coupon.kind, coupon.amount_fen, coupon.threshold_fen, sum(eligible),
                                active=coupon.active, starts_at=coupon.starts_at, ends_at=coupon.ends_at,
                                now=datetime.now(UTC))
    except CouponRefused as err:
        raise business_error(err.code, err.message) from err
    return spread(eligible, discount), platform


def _unused_claim(s: Session, code: str, buyer_user_id: int) -> int | None:
    return s.scalar(select(CouponClaim.id).where(CouponClaim.code == code, CouponClaim.buyer_user_id == buyer_user_id,
                                                 CouponClaim.order_no.is_(None))
                    .order_by(CouponClaim.id).limit(1).with_for_update())


def record_redemption(s: Session, code: str, order_no: str, buyer_user_id: int, discount_fen: int) -> None:
    s.add(CouponRedemption(order_no=order_no, code=code, buyer_user_id=buyer_user_id, discount_fen=discount_fen))
    claim_id = _unused_claim(s, code, buyer_user_id)
    if claim_id is not None:  # a claimed coupon: one of the buyer's claims is now used
        s.execute(update(CouponClaim).where(CouponClaim.id == claim_id).values(order_no=order_no))


def release(s: Session, order_no: str) -> None:
    """An unpaid order was cancelled: its coupon use is given back."""
    code = s.execute(delete(CouponRedemption).where(CouponRedemption.order_no == order_no)
                     .returning(CouponRedemption.code)).scalar()
    if code is not None:
        s.execute(update(Coupon).where(Coupon.code == code).values(used_count=Coupon.used_count - 1))
        s.execute(update(CouponClaim).where(CouponClaim.order_no == order_no).values(order_no=None))


def claim(s: Session, code: str, buyer_user_id: int, now: datetime | None = None) -> CouponClaim:
    """The buyer claims a coupon-centre coupon: `per_buyer_limit` each, `total_limit` in all, while it is on.
    The coupon row is locked, so a burst of claims never hands out more than the limit."""
    now = now or datetime.now(UTC)
    coupon = s.get(Coupon, code, with_for_update=True)
    if coupon is None or not coupon.claimable:
        raise CouponRefused("COUPON_NOT_FOUND", f"coupon {code} is not in the coupon centre")
    if not coupon.active or (coupon.ends_at is not None and now >= coupon.ends_at):
        raise CouponRefused("COUPON_ENDED", f"coupon {code} can no longer be claimed")
    if coupon.starts_at is not None and now < coupon.starts_at:
        raise CouponRefused("COUPON_NOT_STARTED", f"coupon {code} can be claimed from {coupon.starts_at:%Y-%m-%d %H:%M}")
    held_already = s.scalar(select(func.count()).select_from(CouponClaim).where(
        CouponClaim.code == code, CouponClaim.buyer_user_id == buyer_user_id)) or 0
    if held_already >= coupon.per_buyer_limit:
        raise CouponRefused("ALREADY_CLAIMED", f"you have claimed coupon {code} {held_already} time(s), "
                                               f"its limit per buyer")
    if coupon.claimed_count >= coupon.total_limit:
        raise CouponRefused("COUPON_CLAIMED_OUT", f"coupon {code} has all been claimed")
    coupon.claimed_count += 1
    held = CouponClaim(code=code, buyer_user_id=buyer_user_id)
    s.add(held)
    s.flush()
    return held


def best_claimed(s: Session, buyer_user_id: int, supplier_id: int, eligible_fen: int,
                 now: datetime | None = None) -> tuple[str, int] | None:
    """The buyer's unused claimed coupon, of this supplier or the platform's, that takes the most
    off `eligible_fen` of the supplier's goods now: (code, discount), or None when none applies."""
    now = now or datetime.now(UTC)
    best: tuple[str, int] | None = None
    for coupon in s.scalars(select(Coupon).join(CouponClaim, CouponClaim.code == Coupon.code).where(
            CouponClaim.buyer_user_id == buyer_user_id, CouponClaim.order_no.is_(None),
            (Coupon.supplier_id == supplier_id) | Coupon.supplier_id.is_(None),
            Coupon.used_count < Coupon.total_limit).distinct().order_by(Coupon.code)):
        try:
            discount = discount_for(coupon.kind, coupon.amount_fen, coupon.threshold_fen, eligible_fen,
                                    active=coupon.active, starts_at=coupon.starts_at, ends_at=coupon.ends_at, now=now)
        except CouponRefused:
            continue
        if best is None or discount > best[1]:
            best = (coupon.code, discount)
    return best
