"""Pure rules: money rounding, commission tiers, ledger balance, order state moves."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain import ledger as rules
from domain.commission import (
    CommissionPolicy,
    PolicyRefused,
    SkuCommission,
    line_commission_pool,
    split_by_tier,
)
from domain.money import apply_bps, yuan
from domain.order_status import OrderStatus, can_move
from settings import Settings


def test_apply_bps_rounds_down():
    assert apply_bps(999, 1_500) == 149  # 149.85 → 149, the 0.85 fen stays with the platform
    assert apply_bps(0, 10_000) == 0
    with pytest.raises(ValueError):
        apply_bps(100, 10_001)
    assert yuan(12_345) == "123.45" and yuan(-5) == "-0.05"


@given(paid=st.integers(0, 10**10), qty=st.integers(1, 999), bps=st.integers(0, 10_000),
       fixed=st.one_of(st.none(), st.integers(0, 10**7)))
def test_a_line_never_pays_more_commission_than_was_paid(paid, qty, bps, fixed):
    pool = line_commission_pool(paid, qty, SkuCommission(rate_bps=bps, fixed_fen_per_unit=fixed))
    assert 0 <= pool <= paid


@given(pool=st.integers(0, 10**10), tiers=st.integers(1, 3), chain=st.integers(0, 6),
       rates=st.lists(st.integers(0, 10_000), min_size=3, max_size=3))
def test_tier_shares_never_exceed_the_pool(pool, tiers, chain, rates):
    if sum(rates[:tiers]) > 10_000:
        with pytest.raises(PolicyRefused):
            CommissionPolicy(tiers=tiers, tier_rates_bps=tuple(rates))
        return
    shares = split_by_tier(pool, CommissionPolicy(tiers=tiers, tier_rates_bps=tuple(rates)), chain)
    assert len(shares) == min(tiers, chain)
    assert sum(shares) <= pool and all(s >= 0 for s in shares)


def test_default_policy_pays_only_the_sellers_window():
    assert split_by_tier(1_000, CommissionPolicy(), chain_length=3) == [1_000]


def test_more_than_three_tiers_is_refused_everywhere():
    with pytest.raises(PolicyRefused):
        CommissionPolicy(tiers=4, tier_rates_bps=(2_500,) * 4)
    with pytest.raises(ValueError, match="never deeper than 3"):
        Settings(_env_file=None, commission_tiers=4)


def test_transactions_must_balance():
    rules.check_balanced(rules.transfer(rules.ORDERS_HELD, rules.promoter_pending(1), 10))
    with pytest.raises(rules.Unbalanced):
        rules.check_balanced([rules.Posting(rules.CLEARING, 10), rules.Posting(rules.ORDERS_HELD, -9)])
    with pytest.raises(rules.Unbalanced):
        rules.check_balanced([])
    assert rules.transfer(rules.ORDERS_HELD, rules.PLATFORM_REVENUE, 0) == []


def test_hash_depends_on_every_field_and_the_previous_hash():
    base = dict(key="k", account="a", amount_fen=1, line=None, tier=None, rule="")
    h = rules.entry_hash("0" * 64, **base)
    assert rules.entry_hash("1" * 64, **base) != h
    assert rules.entry_hash("0" * 64, **(base | {"amount_fen": 2})) != h


def test_order_moves():
    assert can_move(OrderStatus.PENDING_PAYMENT, OrderStatus.PAID)
    assert not can_move(OrderStatus.COMPLETED, OrderStatus.PAID)
    assert not can_move(OrderStatus.CANCELLED, OrderStatus.PAID)
    assert OrderStatus.PAID.label == "待发货"
