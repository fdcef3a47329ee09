"""Coupons: a fixed or threshold discount on one supplier's lines, spread over those lines in
proportion to their amounts so commission is computed on what was really paid."""

from __future__ import annotations

from datetime import datetime


class CouponRefused(Exception):
    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code, self.message = code, message


def discount_for(kind: str, amount_fen: int, threshold_fen: int, eligible_fen: int, *, active: bool,
                 starts_at: datetime | None, ends_at: datetime | None, now: datetime) -> int:
    if not active or (starts_at and now < starts_at) or (ends_at and now >= ends_at):
        raise CouponRefused("COUPON_NOT_VALID", "this coupon is not valid now")
    if eligible_fen <= 0:
        raise CouponRefused("COUPON_NOT_APPLICABLE", "the order has no goods this coupon applies to")
    if kind == "threshold" and eligible_fen < threshold_fen:
        raise CouponRefused("COUPON_THRESHOLD", f"needs {threshold_fen} fen of this supplier's goods")
    # at least one fen is always paid per order: WeChat Pay takes no zero-amount orders
    return min(amount_fen, eligible_fen - 1)


def spread(amounts: list[int], discount: int) -> list[int]:
    """Split `discount` over `amounts` proportionally (largest remainder). Parts sum to the
    discount exactly and no part exceeds its amount."""
    total = sum(amounts)
    if discount < 0 or discount > total:
        raise ValueError("discount out of range")
    if discount == 0:
        return [0] * len(amounts)
    parts = [a * discount // total for a in amounts]
    by_remainder = sorted(range(len(amounts)), key=lambda i: (-(amounts[i] * discount % total), i))
    for i in by_remainder[: discount - sum(parts)]:
        parts[i] += 1
    return parts
