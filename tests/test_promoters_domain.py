"""Pure promoter rules: the ID-number checksum, masking, referral binding, assessment."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from domain.assessment import assess, progress_text
from domain.commission import CommissionPolicy, PolicyRefused, policy_from_rates, within_ceiling
from domain.promoters import (
    BindingRefused,
    InvalidIdentity,
    PromoterStatus,
    check_referral_binding,
    id_check_char,
    identity_hash,
    mask_id_number,
    mask_name,
    new_referral_code,
    validate_id_number,
    validate_real_name,
)

TODAY = date(2026, 6, 1)


def test_gb11643_check_digit():
    assert id_check_char("11010519491231002") == "X"  # the standard's worked example
    assert validate_id_number("11010519491231002x", TODAY) == "11010519491231002X"
    assert id_check_char("44030019900101123") in "0123456789X"


@pytest.mark.parametrize("bad, why", [
    ("11010519491231002", "18 characters"),
    ("110105194912310021", "check digit"),
    ("01010519491231002X", "18 characters"),   # region cannot start with 0
    ("110105194902300020", "not a real date"),
    ("11010530001231002X", "plausible"),
])
def test_bad_id_numbers_are_refused(bad, why):
    with pytest.raises(InvalidIdentity, match=why):
        validate_id_number(bad, TODAY)


def test_minors_cannot_become_promoters():
    body = "11010520100101123"
    with pytest.raises(InvalidIdentity, match="18 years"):
        validate_id_number(body + id_check_char(body), TODAY)


def test_only_masked_data_and_a_keyed_hash_are_kept():
    assert mask_id_number("11010519491231002X") == "110***********002X"
    assert mask_name("王小明") == "王**"
    assert identity_hash("11010519491231002X", "k1") != identity_hash("11010519491231002X", "k2")
    assert len(identity_hash("11010519491231002X", "k1")) == 64
    with pytest.raises(InvalidIdentity):
        validate_real_name("x")
    code = new_referral_code()
    assert len(code) == 8 and not set(code) & set("01OI")


def test_referral_binding_rules():
    assert check_referral_binding(5, None, 3, [2, 1]) is True
    assert check_referral_binding(5, 3, 3, [2, 1]) is False  # the same binding again: nothing new
    with pytest.raises(BindingRefused) as err:
        check_referral_binding(5, 3, 4, [])
    assert err.value.code == "ALREADY_BOUND"  # first touch is permanent
    with pytest.raises(BindingRefused) as err:
        check_referral_binding(5, None, 5, [])
    assert err.value.code == "SELF_REFERRAL"
    with pytest.raises(BindingRefused) as err:
        check_referral_binding(1, None, 3, [2, 1])  # 3 was referred by 2, who was referred by 1
    assert err.value.code == "REFERRAL_CYCLE"


def test_assessment_measures_sales_and_lapses_after_two_failures():
    assert assess(3, 3, 1) == (PromoterStatus.ACTIVE, 0)
    assert assess(2, 3, 0) == (PromoterStatus.PAUSED, 1)
    assert assess(0, 3, 1) == (PromoterStatus.LAPSED, 2)
    assert progress_text(2, 3, timedelta(days=9, hours=5)) == "2 of 3 orders, 9 days left"
    assert progress_text(5, 3, timedelta(hours=5)) == "3 of 3 orders, 5 hours left"


def test_policy_changes_deeper_than_three_tiers_are_refused():
    assert policy_from_rates(2, [8_000, 2_000]).tiers == 2
    with pytest.raises(PolicyRefused, match="at most 3"):
        policy_from_rates(4, [2_500] * 4)
    with pytest.raises(PolicyRefused):
        policy_from_rates(2, [8_000, 3_000])
    with pytest.raises(PolicyRefused):
        policy_from_rates(2, [10_000])
    with pytest.raises(PolicyRefused, match="tier 2 has no rate"):
        policy_from_rates(2, [10_000, 0])                     # a tier without a rate is refused, never paid 0
    with pytest.raises(PolicyRefused, match="COMMISSION_TIERS caps every policy at 1 tier"):
        policy_from_rates(2, [8_000, 2_000], ceiling=1)       # deeper than the ceiling
    assert policy_from_rates(1, [10_000]) == CommissionPolicy(tiers=1, tier_rates_bps=(10_000,))
    # a version stored above a lowered ceiling pays only down to it
    assert within_ceiling(policy_from_rates(3, [6_000, 2_500, 1_500]), 1) == CommissionPolicy(1, (6_000,))
