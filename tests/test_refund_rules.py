"""Refund and coupon rules: money split by quantity never loses or invents a fen, whatever
order and sizes refunds come in; who may refund what, and when support must look."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain.coupons import CouponRefused, discount_for, spread
from domain.order_status import OrderStatus
from domain.pickup import code_hash, normalise_code, pickup_code, qr_payload
from domain.refunds import RefundKind, RefundRefused, RefundRules, plan_refund, remaining_share, share_of

RULES = RefundRules(return_window=timedelta(days=7), quality_claim_window=timedelta(days=30),
                    review_above_fen=50_000, frequent_returns=3, frequent_returns_window=timedelta(days=30))
NOW = datetime(2026, 11, 22, tzinfo=UTC)


@given(total=st.integers(0, 10**9), units=st.integers(1, 50), data=st.data())
def test_refund_parts_add_up_to_the_whole_in_any_split(total, units, data):
    sizes, left = [], units
    while left:
        size = data.draw(st.integers(1, left))
        sizes.append(size)
        left -= size
    claimed, parts = 0, []
    for size in sizes:
        parts.append(share_of(total, units, claimed, size))
        claimed += size
        assert remaining_share(total, units, claimed) == total - sum(parts)
    assert sum(parts) == total and all(p >= 0 for p in parts)


@given(amounts=st.lists(st.integers(1, 10**7), min_size=1, max_size=20), data=st.data())
def test_discount_spread_sums_exactly_and_never_exceeds_a_line(amounts, data):
    discount = data.draw(st.integers(0, sum(amounts)))
    parts = spread(amounts, discount)
    assert sum(parts) == discount
    assert all(0 <= p <= a for p, a in zip(parts, amounts, strict=True))


def test_coupon_rules():
    assert discount_for("fixed", 1_000, 0, 5_000, active=True, starts_at=None, ends_at=None, now=NOW) == 1_000
    assert discount_for("fixed", 9_000, 0, 5_000, active=True, starts_at=None, ends_at=None, now=NOW) == 4_999
    with pytest.raises(CouponRefused, match="needs 30000"):
        discount_for("threshold", 5_000, 30_000, 29_999, active=True, starts_at=None, ends_at=None, now=NOW)
    with pytest.raises(CouponRefused):
        discount_for("fixed", 1_000, 0, 5_000, active=True, starts_at=None, ends_at=NOW, now=NOW)
    with pytest.raises(CouponRefused):
        discount_for("fixed", 1_000, 0, 0, active=True, starts_at=None, ends_at=None, now=NOW)


def _plan(kind, status=OrderStatus.PAID, *, received_days_ago=None, amount=10_000, recent=0, pickup=False,
          picked_up=False):
    received = NOW - timedelta(days=received_days_ago) if received_days_ago is not None else None
    return plan_refund(kind, status=status, pickup=pickup, picked_up=picked_up, received_at=received, now=NOW,
                       amount_fen=amount, recent_refunds=recent, rules=RULES)


def test_who_may_refund_what():
    assert _plan(RefundKind.CANCEL).needs_return is False
    with pytest.raises(RefundRefused, match="return instead"):
        _plan(RefundKind.CANCEL, OrderStatus.SHIPPED)
    with pytest.raises(RefundRefused) as refused:
        _plan(RefundKind.RETURN, OrderStatus.PAID)
    assert refused.value.code == "NOT_SHIPPED"
    assert _plan(RefundKind.RETURN, OrderStatus.DELIVERED, received_days_ago=6).needs_return
    with pytest.raises(RefundRefused) as late:
        _plan(RefundKind.RETURN, OrderStatus.COMPLETED, received_days_ago=8)
    assert late.value.code == "WINDOW_CLOSED"
    assert _plan(RefundKind.QUALITY_RETURN, OrderStatus.COMPLETED, received_days_ago=20).needs_return
    for status in (OrderStatus.PENDING_PAYMENT, OrderStatus.CANCELLED, OrderStatus.REFUNDED):
        with pytest.raises(RefundRefused):
            _plan(RefundKind.CANCEL, status)
    # pickup orders: cancel until picked up, return after
    assert _plan(RefundKind.CANCEL, pickup=True).needs_return is False
    with pytest.raises(RefundRefused):
        _plan(RefundKind.CANCEL, OrderStatus.RECEIVED, pickup=True, picked_up=True)
    with pytest.raises(RefundRefused) as system:
        _plan(RefundKind.PICKUP_EXPIRED)
    assert system.value.code == "INVALID_KIND"


def test_support_looks_at_quality_claims_and_only_flags_cancels_and_returns():
    assert _plan(RefundKind.CANCEL).review_reasons == []
    # a cancel before shipment and a 7-day return are the buyer's right: flagged, never reviewed
    large = _plan(RefundKind.CANCEL, amount=50_001)
    assert large.review_reasons == [] and "above" in large.flags[0]
    frequent = _plan(RefundKind.RETURN, OrderStatus.DELIVERED, received_days_ago=1, recent=3)
    assert frequent.review_reasons == [] and "3 refunds" in frequent.flags[0] and frequent.needs_return
    only = _plan(RefundKind.QUALITY_REFUND, OrderStatus.DELIVERED, received_days_ago=1)
    assert not only.needs_return and only.review_reasons == ["quality claim without return"]
    claim = _plan(RefundKind.QUALITY_RETURN, OrderStatus.DELIVERED, received_days_ago=1, amount=50_001)
    assert claim.needs_return and "above" in claim.review_reasons[0]


def test_pickup_codes_are_stable_distinct_and_stored_only_hashed():
    code = pickup_code("k", "CC1")
    assert code == pickup_code("k", "CC1") and len(code) == 12 and code.isdigit()
    assert code != pickup_code("k", "CC2") and code != pickup_code("other", "CC1") and code != pickup_code("k", "CC1", 1)
    assert normalise_code(qr_payload("CC1", code)) == code == normalise_code(f" {code[:6]} {code[6:]} ")
    assert code not in code_hash("k", code)
