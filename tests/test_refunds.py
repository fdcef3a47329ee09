"""Refunds end to end through the API, WeChat Pay sandbox and both workflows, time skipped:
before shipment, returns after delivery, after commission release, support review and late
payments. Every test ends with the books balanced and Σ balances = payments − refunds."""

from __future__ import annotations

from sqlalchemy import func, select

from activities.ledger import balance
from db.models import LedgerTransaction, Order, OrderLine, Sku
from db.order_models import Refund
from domain import ledger as rules
from domain.order_status import OrderStatus
from domain.refunds import RefundStatus, late_payment_refund_no
from tests.helpers import (
    assert_books_balance,
    keep_history,
    keep_run_history,
    make_user,
    pay,
    place,
    return_one_unit,
    run_to_end,
    ship_and_deliver,
    wait_refund,
    wait_status,
)

PRICE, FEE_BPS, COMMISSION_BPS = 19_900, 300, 1_500


def _line_id(sessions, order_no: str) -> int:
    with sessions() as s:
        return s.scalar(select(OrderLine.id).where(OrderLine.order_no == order_no))


async def test_refund_before_shipment_cancels_the_order_and_restores_everything(
        api, sandbox, demo, token, temporal_env, sessions, stack):
    buyer, supplier = token(demo.buyer_user_id, "buyer"), token(demo.supplier_user_id, "supplier")
    order_no = (await place(api, buyer, demo, quantity=2)).json()["order_no"]
    await pay(sandbox, order_no)
    await wait_status(temporal_env.client, order_no, OrderStatus.PAID)

    asked = await api.post(f"/orders/{order_no}/refunds", headers=buyer | {"Idempotency-Key": "r1"},
                           json={"kind": "cancel", "reason": "不想要了"})
    assert asked.status_code == 201, asked.text
    refund = asked.json()
    assert (refund["amount_fen"], refund["status"], refund["needs_return"]) == (2 * PRICE, "REFUNDING", False)
    again = await api.post(f"/orders/{order_no}/refunds", headers=buyer | {"Idempotency-Key": "r1"},
                           json={"kind": "cancel"})
    assert again.json()["refund_no"] == refund["refund_no"]  # a retried request is the same refund

    result = await run_to_end(temporal_env, order_no)
    assert result.status == OrderStatus.REFUNDED
    late_ship = await api.post(f"/orders/{order_no}/shipments", headers=supplier,
                               json={"carrier": "shunfeng", "waybill_no": "SF0000000001"})
    assert late_ship.status_code == 409
    shown = (await api.get(f"/orders/{order_no}", headers=buyer)).json()
    assert (shown["status"], shown["status_label"]) == ("REFUNDED", "已退款")

    at_wechat = await stack.state.pay.query_refund(refund["refund_no"])
    assert (at_wechat.status, at_wechat.amount.refund) == ("SUCCESS", 2 * PRICE)
    with sessions() as s:
        assert s.get(Sku, demo.sku_ids[0]).stock == 100
        assert balance(s, rules.promoter_pending(demo.promoter_id)) == 0
        assert balance(s, rules.CLEARING) == 0
        assert s.scalar(select(func.count()).select_from(LedgerTransaction)
                        .where(LedgerTransaction.kind == "refund")) == 1
        assert_books_balance(s)
    await keep_history(temporal_env, order_no, "order_refunded_before_shipment")
    await keep_run_history(temporal_env, f"refund-{refund['refund_no']}", None, "refund_before_shipment")


async def test_partial_return_after_delivery_then_the_rest_completes(
        api, sandbox, demo, token, temporal_env, sessions):
    buyer, supplier = token(demo.buyer_user_id, "buyer"), token(demo.supplier_user_id, "supplier")
    order_no = (await place(api, buyer, demo, quantity=2)).json()["order_no"]
    await pay(sandbox, order_no)
    await wait_status(temporal_env.client, order_no, OrderStatus.PAID)
    await ship_and_deliver(api, sandbox, temporal_env.client, supplier, order_no, "SF2000000001")

    line = _line_id(sessions, order_no)
    too_many = await api.post(f"/orders/{order_no}/refunds", headers=buyer,
                              json={"kind": "return", "lines": [{"line_id": line, "quantity": 3}]})
    assert too_many.status_code == 422 and too_many.json()["code"] == "QUANTITY_TOO_HIGH"
    cancel = await api.post(f"/orders/{order_no}/refunds", headers=buyer, json={"kind": "cancel"})
    assert cancel.status_code == 409 and cancel.json()["code"] == "ALREADY_SHIPPED"
    asked = await api.post(f"/orders/{order_no}/refunds", headers=buyer,
                           json={"kind": "return", "lines": [{"line_id": line, "quantity": 1}]})
    assert asked.status_code == 201, asked.text
    refund_no = asked.json()["refund_no"]
    assert asked.json()["status"] == "AWAITING_RETURN" and asked.json()["amount_fen"] == PRICE
    await wait_refund(temporal_env.client, refund_no, RefundStatus.AWAITING_RETURN)
    listed = (await api.get("/orders", headers=buyer)).json()
    assert [o["status_label"] for o in listed if o["order_no"] == order_no] == ["售后中"]

    early = await api.post(f"/refunds/{refund_no}/confirm-return", headers=supplier)
    assert early.status_code == 409 and early.json()["code"] == "NOT_ALLOWED_NOW"
    parcel = await api.post(f"/refunds/{refund_no}/return-parcel", headers=buyer,
                            json={"carrier": "yuantong", "waybill_no": "YTBACK000001"})
    assert parcel.status_code == 200, parcel.text
    await wait_refund(temporal_env.client, refund_no, RefundStatus.RETURN_SHIPPED)
    received = await api.post(f"/refunds/{refund_no}/confirm-return", headers=supplier)
    assert received.status_code == 200, received.text
    await wait_refund(temporal_env.client, refund_no, RefundStatus.REFUNDED)

    result = await run_to_end(temporal_env, order_no)
    assert result.status == OrderStatus.COMPLETED
    commission = 2 * PRICE * COMMISSION_BPS // 10_000        # 5 970, half reversed
    fee = 2 * PRICE * FEE_BPS // 10_000                       # 1 194, half kept
    with sessions() as s:
        assert s.get(Sku, demo.sku_ids[0]).stock == 99         # the returned unit is back on sale
        assert balance(s, rules.promoter_pending(demo.promoter_id)) == 0
        assert balance(s, rules.promoter_available(demo.promoter_id)) == commission - commission // 2
        assert balance(s, rules.PLATFORM_REVENUE) == fee - fee // 2
        assert balance(s, rules.supplier_payable(demo.supplier_id)) == (
            PRICE - (fee - fee // 2) - (commission - commission // 2))
        assert balance(s, rules.CLEARING) == PRICE
        assert_books_balance(s)
    await keep_run_history(temporal_env, f"refund-{refund_no}", None, "refund_return_after_delivery")


async def test_partial_refund_after_commission_release_reverses_every_party(
        api, sandbox, demo, token, temporal_env, sessions):
    buyer, supplier = token(demo.buyer_user_id, "buyer"), token(demo.supplier_user_id, "supplier")
    order_no = (await place(api, buyer, demo, quantity=2)).json()["order_no"]
    await pay(sandbox, order_no)
    await wait_status(temporal_env.client, order_no, OrderStatus.PAID)
    await ship_and_deliver(api, sandbox, temporal_env.client, supplier, order_no, "SF3000000001")
    assert (await run_to_end(temporal_env, order_no)).status == OrderStatus.COMPLETED
    commission, fee = 2 * PRICE * COMMISSION_BPS // 10_000, 2 * PRICE * FEE_BPS // 10_000
    with sessions() as s:
        assert balance(s, rules.promoter_available(demo.promoter_id)) == commission

    await return_one_unit(api, temporal_env.client, buyer, supplier, order_no, _line_id(sessions, order_no),
                          "YTBACK000002")

    with sessions() as s:
        reversed_commission = commission // 2
        supplier_reversal = PRICE - fee // 2 - reversed_commission
        assert balance(s, rules.promoter_available(demo.promoter_id)) == commission - reversed_commission
        assert balance(s, rules.supplier_payable(demo.supplier_id)) == (
            2 * PRICE - fee - commission - supplier_reversal)
        assert balance(s, rules.PLATFORM_REVENUE) == fee - fee // 2
        assert balance(s, rules.CLEARING) == PRICE
        assert s.get(Sku, demo.sku_ids[0]).stock == 98         # damaged goods are not restocked
        assert s.get(Order, order_no).status == OrderStatus.COMPLETED
        assert_books_balance(s)


async def test_support_judges_a_quality_claim_rejects_then_approves(
        api, sandbox, demo, token, temporal_env, sessions):
    buyer, supplier = token(demo.buyer_user_id, "buyer"), token(demo.supplier_user_id, "supplier")
    support = token(make_user(sessions, "support", "kefu-1"), "support")
    order_no = (await place(api, buyer, demo, quantity=3)).json()["order_no"]   # 59 700 > 50 000
    await pay(sandbox, order_no)
    await wait_status(temporal_env.client, order_no, OrderStatus.PAID)
    await ship_and_deliver(api, sandbox, temporal_env.client, supplier, order_no, "SF4000000001")

    first = (await api.post(f"/orders/{order_no}/refunds", headers=buyer,
                            json={"kind": "quality_refund", "reason": "发霉"})).json()
    assert first["status"] == "REVIEWING" and "quality claim" in first["review_reasons"]
    await wait_refund(temporal_env.client, first["refund_no"], RefundStatus.REVIEWING)
    shown = (await api.get(f"/refunds/{first['refund_no']}", headers=buyer)).json()
    assert shown["review_deadline_at"] is not None and shown["reviewed_by"] is None
    not_support = await api.post(f"/refunds/{first['refund_no']}/review", headers=buyer, json={"approve": True})
    assert not_support.status_code == 403
    rejected = await api.post(f"/refunds/{first['refund_no']}/review", headers=support,
                              json={"approve": False, "note": "照片不清晰，请补充"})
    assert rejected.status_code == 200, rejected.text
    await wait_refund(temporal_env.client, first["refund_no"], RefundStatus.REJECTED)
    twice = await api.post(f"/refunds/{first['refund_no']}/review", headers=support, json={"approve": True})
    assert twice.status_code == 409
    shown = (await api.get(f"/refunds/{first['refund_no']}", headers=buyer)).json()
    assert shown["reviewed_by"] == "support: kefu-1" and shown["reviewed_at"] is not None
    with sessions() as s:  # the units are free again
        assert s.scalar(select(OrderLine.refund_claimed_quantity).where(OrderLine.order_no == order_no)) == 0

    second = (await api.post(f"/orders/{order_no}/refunds", headers=buyer,
                             json={"kind": "quality_refund", "reason": "发霉"})).json()
    await wait_refund(temporal_env.client, second["refund_no"], RefundStatus.REVIEWING)
    await api.post(f"/refunds/{second['refund_no']}/review", headers=support, json={"approve": True})
    assert (await run_to_end(temporal_env, order_no)).status == OrderStatus.REFUNDED
    with sessions() as s:
        assert balance(s, rules.CLEARING) == 0
        assert_books_balance(s)
    await keep_run_history(temporal_env, f"refund-{first['refund_no']}", None, "refund_quality_claim_rejected")


async def test_payment_after_close_is_refunded_automatically_once(
        api, sandbox, demo, token, temporal_env, sessions, stack):
    order_no = (await place(api, token(demo.buyer_user_id, "buyer"), demo, quantity=1)).json()["order_no"]
    assert (await run_to_end(temporal_env, order_no)).status == OrderStatus.CANCELLED
    paid = await pay(sandbox, order_no, after_close="true")   # WeChat completed a payment already under way
    assert paid["delivered"] is True
    refund_no = late_payment_refund_no(order_no)
    await wait_refund(temporal_env.client, refund_no, RefundStatus.REFUNDED)
    again = await sandbox.post(f"/sandbox/notify/{order_no}/resend")
    assert again.json()["delivered"] is True
    at_wechat = await stack.state.pay.query_refund(refund_no)
    assert (at_wechat.status, at_wechat.amount.refund) == ("SUCCESS", PRICE)
    with sessions() as s:
        assert s.scalar(select(func.count()).select_from(Refund).where(Refund.order_no == order_no)) == 1
        kinds = s.scalars(select(LedgerTransaction.kind).where(LedgerTransaction.order_no == order_no)
                          .order_by(LedgerTransaction.id)).all()
        assert kinds == ["late_payment", "refund"]
        assert s.get(Order, order_no).status == OrderStatus.CANCELLED
        assert s.get(Sku, demo.sku_ids[0]).stock == 100
        assert balance(s, rules.CLEARING) == 0
        assert_books_balance(s)
    await keep_run_history(temporal_env, f"refund-{refund_no}", None, "refund_late_payment")
