"""Freight, regions and the cart's split into orders: pure rules (domain/freight.py,
domain/regions.py, domain/cart.py), exact fen."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from domain.cart import CartLine, split_into_orders
from domain.freight import Charge, FreightItem, NotDeliverable, TemplateRules, freight_refund, order_freight
from domain.privacy import phone_hash
from domain.refunds import RefundKind
from domain.regions import BadRegion, check_address_code, check_code, contains

BY_WEIGHT = TemplateRules.model_validate({
    "kind": "weight",
    # 1 kg for 8.00, each further 500 g begun 2.00
    "default": {"first_units": 1000, "first_fee_fen": 800, "additional_units": 500, "additional_fee_fen": 200},
    "regions": [
        # 广东 (province) and 广州 (city): the city's rule is the more specific
        {"regions": ["440000"], "first_units": 1000, "first_fee_fen": 600, "additional_units": 500,
         "additional_fee_fen": 100},
        {"regions": ["440100"], "first_units": 1000, "first_fee_fen": 500, "additional_units": 1000,
         "additional_fee_fen": 100},
        {"regions": ["650000", "540000"], "first_units": 500, "first_fee_fen": 2000, "additional_units": 500,
         "additional_fee_fen": 1500},
    ],
    "excluded_regions": ["710000", "810000", "820000"],
})
BY_PIECE = TemplateRules.model_validate({
    "kind": "piece",
    "default": {"first_units": 1, "first_fee_fen": 1000, "additional_units": 2, "additional_fee_fen": 300},
    "free_above_fen": 9900,
})


def test_regions_are_gbt2260_codes():
    assert check_code("440105") == "440105" and check_code("440000") == "440000"
    for bad in ("44010", "4401050", "99xx01", "990101", "440005"):
        with pytest.raises(BadRegion):
            check_code(bad)
    assert check_address_code("310115", "上海市") == "310115"
    assert check_address_code("441900", "广东")  # 东莞: a city without counties
    with pytest.raises(BadRegion):
        check_address_code("440000")  # a whole province is no address
    with pytest.raises(BadRegion):
        check_address_code("440105", "上海")  # the code is in 广东
    assert contains("440000", "440105") and contains("440100", "440105") and contains("440105", "440105")
    assert not contains("440100", "440305") and not contains("110000", "440105")


def test_by_weight_the_most_specific_region_wins():
    def fee(code: str, grams: int) -> int:
        return order_freight({1: BY_WEIGHT}, [FreightItem(template_id=1, quantity=1, weight_g=grams, goods_fen=1)],
                             code)

    assert fee("310115", 1000) == 800                 # default: first kilo
    assert fee("310115", 1001) == 1000                # one further 500 g begun
    assert fee("310115", 2600) == 800 + 4 * 200       # 1 600 g more: four blocks begun
    assert fee("440305", 2600) == 600 + 4 * 100       # 深圳: 广东's rule
    assert fee("440105", 2600) == 500 + 2 * 100       # 广州: the city's rule beats the province's
    assert fee("650102", 1200) == 2000 + 2 * 1500     # 新疆: remote rate
    with pytest.raises(NotDeliverable) as refused:
        fee("810001", 100)                            # 香港: excluded
    assert refused.value.code == "NOT_DELIVERABLE"


def test_weight_adds_up_over_lines_and_quantities():
    items = [FreightItem(template_id=1, quantity=3, weight_g=400, goods_fen=3000),   # 1 200 g
             FreightItem(template_id=1, quantity=1, weight_g=900, goods_fen=5000)]   # +900 g = 2 100 g
    assert order_freight({1: BY_WEIGHT}, items, "320102") == 800 + 3 * 200


def test_by_piece_free_above_and_templates_add_up():
    piece = [FreightItem(template_id=2, quantity=4, goods_fen=4 * 1990)]      # 79.60 yuan
    assert order_freight({2: BY_PIECE}, piece, "110101") == 1000 + 2 * 300    # 3 more pieces: two pairs begun
    rich = [FreightItem(template_id=2, quantity=5, goods_fen=5 * 1990)]       # 99.50 ≥ 99.00: free
    assert order_freight({2: BY_PIECE}, rich, "110101") == 0
    both = piece + [FreightItem(template_id=1, quantity=1, weight_g=500, goods_fen=100),
                    FreightItem(template_id=None, quantity=9, goods_fen=100)]  # no template: ships free
    assert order_freight({1: BY_WEIGHT, 2: BY_PIECE}, both, "110101") == 1600 + 800


def test_a_template_refuses_bad_codes_and_repeats():
    base = {"kind": "piece", "default": {"first_units": 1, "first_fee_fen": 0, "additional_units": 1,
                                         "additional_fee_fen": 0}}
    with pytest.raises(ValidationError):
        TemplateRules.model_validate(base | {"excluded_regions": ["990000"]})
    with pytest.raises(ValidationError):
        TemplateRules.model_validate(base | {"excluded_regions": ["650000"], "regions": [
            {"regions": ["650000"], "first_units": 1, "first_fee_fen": 1, "additional_units": 1,
             "additional_fee_fen": 1}]})
    with pytest.raises(ValidationError):
        Charge(first_units=0, first_fee_fen=1, additional_units=1, additional_fee_fen=1)


def test_freight_comes_back_only_with_the_whole_order_before_shipment_or_for_quality():
    def back(kind, *, shipped, nothing_kept):
        return freight_refund(1200, kind=kind, shipped=shipped, nothing_kept=nothing_kept)

    assert back(RefundKind.CANCEL, shipped=False, nothing_kept=True) == 1200
    assert back(RefundKind.CANCEL, shipped=False, nothing_kept=False) == 0       # some lines only
    assert back(RefundKind.RETURN, shipped=True, nothing_kept=True) == 0         # no-reason return: it travelled
    assert back(RefundKind.QUALITY_RETURN, shipped=True, nothing_kept=True) == 1200
    assert back(RefundKind.QUALITY_REFUND, shipped=True, nothing_kept=True) == 1200
    assert back(RefundKind.QUALITY_RETURN, shipped=True, nothing_kept=False) == 0
    assert back(RefundKind.PAYMENT_FAILED, shipped=True, nothing_kept=True) == 1200
    assert freight_refund(0, kind=RefundKind.CANCEL, shipped=False, nothing_kept=True) == 0


def test_the_cart_splits_by_supplier_and_window_and_the_coupon_goes_to_the_largest():
    def line(item, supplier, window, qty, price):
        return CartLine(item_id=item, sku_id=100 + item, supplier_id=supplier, window_id=window, quantity=qty,
                        unit_price_fen=price)

    lines = [line(1, 7, 3, 1, 500), line(2, 8, 3, 2, 1000), line(3, 7, None, 1, 9000), line(4, 7, 3, 2, 100),
             line(5, 7, 4, 1, 100)]
    groups = split_into_orders(lines, {7: "SAVE5"})
    assert [(g.supplier_id, g.window_id, [ln.item_id for ln in g.lines]) for g in groups] == [
        (7, 3, [1, 4]), (7, 4, [5]), (7, None, [3]), (8, 3, [2])]
    assert [g.coupon_code for g in groups] == [None, None, "SAVE5", None]
    assert [g.goods_fen for g in groups] == [700, 100, 9000, 2000]


def test_phone_hash_is_keyed_and_ignores_formatting():
    assert phone_hash("86-13800138000", "k1") == phone_hash("86-138 0013 8000", "k1")
    assert phone_hash("86-13800138000", "k1") != phone_hash("86-13800138000", "k2")
    assert phone_hash("86-13800138000", "k1") != phone_hash("852-13800138000", "k1")
    assert "13800138000" not in phone_hash("86-13800138000", "k1")
