"""Pure rules: 统一社会信用代码 checksum, qualification table, decisions, commission ceiling."""

from __future__ import annotations

import pytest

from domain.catalog import effective_commission_bps, max_commission_fen, prohibited_words_in
from domain.suppliers import (
    LicenceError,
    ReviewDecision,
    decision_problem,
    missing_documents,
    required_documents,
    uscc_check_char,
    validate_uscc,
)


@pytest.mark.parametrize("code", ["91350100M000100Y43", "91110000802100433B", " 91350100m000100y43 "])
def test_valid_credit_codes(code):
    assert validate_uscc(code) == code.strip().upper()


@pytest.mark.parametrize("code, error", [
    ("91350100M000100Y44", "INVALID_LICENCE_CHECKSUM"),
    ("91350100M000100Y4", "INVALID_LICENCE_FORMAT"),
    ("9135010OM000100Y43", "INVALID_LICENCE_FORMAT"),   # letter O in the division code
    ("91350100I000100Y43", "INVALID_LICENCE_FORMAT"),   # I is not in the charset
    ("", "INVALID_LICENCE_FORMAT"),
])
def test_invalid_credit_codes(code, error):
    with pytest.raises(LicenceError) as info:
        validate_uscc(code)
    assert info.value.code == error


def test_every_single_character_change_is_caught():
    code = "91350100M000100Y43"
    for i in range(17):
        for c in "0123456789ABCDEFGHJKLMNPQRTUWXY":
            if c == code[i]:
                continue
            changed = code[:i] + c + code[i + 1:]
            assert uscc_check_char(changed[:17]) != code[17]


def test_qualifications_per_category():
    assert required_documents("enterprise", ["general"]) == ["business_licence"]
    assert required_documents("individual", ["general"]) == ["business_licence", "operator_id_card"]
    assert missing_documents("enterprise", ["food", "cosmetics"], ["business_licence"]) == [
        "food_business_licence", "cosmetics_production_licence"]
    assert missing_documents("enterprise", ["alcohol"], ["business_licence", "food_business_licence"]) == [
        "alcohol_circulation_filing"]


def test_review_decisions():
    approve = lambda fee: ReviewDecision(action="approve", reviewer_user_id=1, service_fee_bps=fee)  # noqa: E731
    assert decision_problem(approve(100), 100, 500) is None
    assert decision_problem(approve(500), 100, 500) is None
    assert decision_problem(approve(99), 100, 500)
    assert decision_problem(approve(501), 100, 500)
    assert decision_problem(approve(None), 100, 500)
    assert decision_problem(ReviewDecision(action="reject", reviewer_user_id=1, reason="  "), 100, 500)
    assert decision_problem(ReviewDecision(action="more_info", reviewer_user_id=1, reason="补充"), 100, 500) is None


def test_commission_ceiling_and_words():
    assert max_commission_fen(10_000, 300) == 9_700
    assert effective_commission_bps(10_000, None, 1_500) == 1_500
    assert effective_commission_bps(10_000, 2_000, None) == 2_000
    assert prohibited_words_in("全网第一的好茶", None, "无副作用") == ["全网第一", "无副作用"]
    assert prohibited_words_in("好喝的普洱茶") == []
