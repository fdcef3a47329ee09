"""Pre-sale orders end to end through the API, the WeChat Pay sandbox and OrderWorkflow, time
skipped: deposit then balance (commission on both, refund of both payments), a balance never
paid (order closed, deposit refunded), a lost balance notice found by query, a balance paid
after the close refunded automatically. Every test ends with the books balanced and
Σ balances = payments − refunds."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func, select

from activities.ledger import balance
from db.catalog_models import Notification
from db.models import LedgerTransaction, Order, Payment, Sku
from db.order_models import Refund
from db.presale_models import PresaleOrder, RefundPayment
from domain import ledger as rules
from domain.order_status import OrderStatus
from domain.presale import lapse_refund_no
from domain.refunds import RefundStatus, late_payment_refund_no
from domain.search_attributes import BUSINESS_STATUS
from workflows.order import OrderWorkflow, workflow_id
from tests.helpers import (
    assert_books_balance,
    keep_history,
    pay,
    place,
    run_to_end,
    ship_and_deliver,
    wait_refund,
    wait_status,
)

PRICE, FEE_BPS, COMMISSION_BPS = 19_900, 300, 1_500
DEPOSIT = 3_000  # a unit; at most 20% of the price


async def _on_presale(api, temporal_env, supplier, sku_id, *, opens_in=timedelta(days=1), lasts=timedelta(days=2)):
    now = await temporal_env.get_current_time()  # the test server's clock runs ahead of the wall clock
    answer = await api.put(f"/skus/{sku_id}/presale", headers=supplier, json={
        "deposit_fen": DEPOSIT, "balance_starts_at": (now + opens_in).isoformat(),
        "balance_ends_at": (now + opens_in + lasts).isoformat()})
    assert answer.status_code == 200, answer.text
    return answer.json()


async def _deposit_paid(api, sandbox, temporal_env, demo, token, quantity=2):
    buyer, supplier = token(demo.buyer_user_id, "buyer"), token(demo.supplier_user_id, "supplier")
    await _on_presale(api, temporal_env, supplier, demo.sku_ids[0])
    placed = await place(api, buyer, demo, quantity=quantity)
    assert placed.status_code == 201, placed.text
    body = placed.json()
    order_no = body["order_no"]
    assert body["presale"]["deposit_fen"] == quantity * DEPOSIT
    assert body["presale"]["balance_fen"] == quantity * (PRICE - DEPOSIT)
    too_early = await api.post(f"/orders/{order_no}/balance", headers=buyer)
    assert too_early.status_code == 409 and too_early.json()["code"] == "NOT_AWAITING_BALANCE"
    await pay(sandbox, order_no + "D")
    await wait_status(temporal_env.client, order_no, OrderStatus.DEPOSIT_PAID)
    return order_no, buyer, supplier


async def _window_open(temporal_env, order_no):
    await temporal_env.sleep(timedelta(days=1, minutes=1))
    handle = temporal_env.client.get_workflow_handle(workflow_id(order_no))
    for _ in range(200):
        progress = await handle.query(OrderWorkflow.progress)
        if progress.balance_open:
            return progress
        await temporal_env.sleep(timedelta(minutes=1))
    raise AssertionError("the balance window did not open")


async def test_deposit_then_balance_completes_with_commission_on_both_and_a_refund_returns_both(
        api, sandbox, demo, token, temporal_env, sessions, stack):
    order_no, buyer, supplier = await _deposit_paid(api, sandbox, temporal_env, demo, token)
    deposit, balance_fen = 2 * DEPOSIT, 2 * (PRICE - DEPOSIT)
    with sessions() as s:
        assert s.get(Sku, demo.sku_ids[0]).stock == 98                  # reserved with the deposit
        assert balance(s, rules.CLEARING) == deposit
        assert balance(s, rules.promoter_pending(demo.promoter_id)) == 0  # no commission on a deposit alone
        assert_books_balance(s)
    not_yet = await api.post(f"/orders/{order_no}/balance", headers=buyer)
    assert not_yet.status_code == 409 and not_yet.json()["code"] == "BALANCE_NOT_OPEN"
    cancel = await api.post(f"/orders/{order_no}/refunds", headers=buyer, json={"kind": "cancel"})
    assert cancel.status_code == 422 and cancel.json()["code"] == "PRESALE_BALANCE_PENDING"

    await _window_open(temporal_env, order_no)
    with sessions() as s:  # the buyer was reminded
        assert s.scalar(select(func.count()).select_from(Notification).where(
            Notification.kind == "presale_balance_due", Notification.subject_id == order_no,
            Notification.recipient_user_id == demo.buyer_user_id)) == 1
        assert s.get(PresaleOrder, order_no).status == "BALANCE_DUE"
    asked = await api.post(f"/orders/{order_no}/balance", headers=buyer)
    assert asked.status_code == 200, asked.text
    again = await api.post(f"/orders/{order_no}/balance", headers=buyer)
    assert again.json()["balance_prepay"]["prepay_id"] == asked.json()["balance_prepay"]["prepay_id"]
    await pay(sandbox, order_no + "B")
    await wait_status(temporal_env.client, order_no, OrderStatus.PAID)
    commission = 2 * PRICE * COMMISSION_BPS // 10_000           # on deposit + balance
    with sessions() as s:
        assert balance(s, rules.promoter_pending(demo.promoter_id)) == commission
        assert balance(s, rules.CLEARING) == deposit + balance_fen
        keys = s.scalars(select(LedgerTransaction.idempotency_key).where(
            LedgerTransaction.order_no == order_no, LedgerTransaction.kind == "payment")
            .order_by(LedgerTransaction.id)).all()
        assert keys == [f"order:{order_no}:payment:deposit", f"order:{order_no}:payment:balance"]

    await ship_and_deliver(api, sandbox, temporal_env.client, supplier, order_no, "SF7000000001")
    result = await run_to_end(temporal_env, order_no)
    assert result.status == OrderStatus.COMPLETED
    described = await temporal_env.client.get_workflow_handle(workflow_id(order_no)).describe()
    assert described.typed_search_attributes.get(BUSINESS_STATUS) == "COMPLETED"
    await keep_history(temporal_env, order_no, "order_presale")
    fee = 2 * PRICE * FEE_BPS // 10_000
    with sessions() as s:
        assert balance(s, rules.promoter_available(demo.promoter_id)) == commission
        assert balance(s, rules.supplier_payable(demo.supplier_id)) == 2 * PRICE - fee - commission
        assert balance(s, rules.PLATFORM_REVENUE) == fee
        assert_books_balance(s)
    history = [e["status"] for e in (await api.get(f"/orders/{order_no}", headers=buyer)).json()["history"]]
    assert history[:3] == ["PENDING_PAYMENT", "DEPOSIT_PAID", "DEPOSIT_PAID"] and history[-1] == "COMPLETED"

    # the whole order comes back: two WeChat Pay refunds, the balance's and the deposit's
    asked = await api.post(f"/orders/{order_no}/refunds", headers=buyer, json={"kind": "quality_return"})
    assert asked.status_code == 201, asked.text
    refund_no = asked.json()["refund_no"]
    assert asked.json()["amount_fen"] == deposit + balance_fen
    await wait_refund(temporal_env.client, refund_no, RefundStatus.AWAITING_RETURN)
    await api.post(f"/refunds/{refund_no}/return-parcel", headers=buyer,
                   json={"carrier": "yuantong", "waybill_no": "YTBACK700001"})
    await wait_refund(temporal_env.client, refund_no, RefundStatus.RETURN_SHIPPED)
    await api.post(f"/refunds/{refund_no}/confirm-return", headers=supplier)
    await wait_refund(temporal_env.client, refund_no, RefundStatus.REFUNDED)
    from_balance = await stack.state.pay.query_refund(refund_no + "B")
    from_deposit = await stack.state.pay.query_refund(refund_no + "D")
    assert (from_balance.status, from_balance.amount.refund, from_balance.out_trade_no) == (
        "SUCCESS", balance_fen, order_no + "B")
    assert (from_deposit.status, from_deposit.amount.refund, from_deposit.out_trade_no) == (
        "SUCCESS", deposit, order_no + "D")
    with sessions() as s:
        parts = s.scalars(select(RefundPayment).where(RefundPayment.refund_no == refund_no)
                          .order_by(RefundPayment.out_refund_no)).all()
        assert [(p.out_refund_no, p.amount_fen, p.status) for p in parts] == [
            (refund_no + "B", balance_fen, "SUCCESS"), (refund_no + "D", deposit, "SUCCESS")]
        assert s.get(Order, order_no).status == OrderStatus.REFUNDED
        assert balance(s, rules.promoter_available(demo.promoter_id)) == 0
        assert balance(s, rules.CLEARING) == 0
        assert_books_balance(s)


async def test_balance_never_paid_closes_the_order_and_refunds_the_deposit(
        api, sandbox, demo, token, temporal_env, sessions, stack):
    order_no, buyer, _ = await _deposit_paid(api, sandbox, temporal_env, demo, token, quantity=3)
    result = await run_to_end(temporal_env, order_no)   # the window opens, ends; nobody pays
    assert result.status == OrderStatus.CANCELLED
    refund_no = lapse_refund_no(order_no)
    await wait_refund(temporal_env.client, refund_no, RefundStatus.REFUNDED)
    at_wechat = await stack.state.pay.query_refund(refund_no)
    assert (at_wechat.status, at_wechat.amount.refund, at_wechat.out_trade_no) == (
        "SUCCESS", 3 * DEPOSIT, order_no + "D")
    late = await api.post(f"/orders/{order_no}/balance", headers=buyer)
    assert late.status_code == 409
    with sessions() as s:
        assert s.get(Sku, demo.sku_ids[0]).stock == 100
        assert s.get(PresaleOrder, order_no).status == "LAPSED"
        assert s.get(Order, order_no).status == OrderStatus.CANCELLED
        assert balance(s, rules.CLEARING) == 0
        assert balance(s, rules.promoter_pending(demo.promoter_id)) == 0
        assert_books_balance(s)


async def test_a_lost_balance_notification_is_found_by_querying_wechat_pay(
        api, sandbox, demo, token, temporal_env, sessions):
    from integrations import http

    order_no, buyer, _ = await _deposit_paid(api, sandbox, temporal_env, demo, token, quantity=1)
    await _window_open(temporal_env, order_no)
    assert (await api.post(f"/orders/{order_no}/balance", headers=buyer)).status_code == 200
    api_route = http._routes.pop("http://api.test")
    try:  # the buyer pays the balance but the notice never reaches us
        paid = await pay(sandbox, order_no + "B")
        assert paid["delivered"] is False
        await temporal_env.sleep(timedelta(days=2, minutes=20))
        await wait_status(temporal_env.client, order_no, OrderStatus.PAID)
    finally:
        http._routes["http://api.test"] = api_route
    with sessions() as s:
        assert balance(s, rules.CLEARING) == PRICE
        assert balance(s, rules.promoter_pending(demo.promoter_id)) == PRICE * COMMISSION_BPS // 10_000
        assert_books_balance(s)


async def test_a_balance_paid_after_the_close_is_refunded_automatically(
        api, sandbox, demo, token, temporal_env, sessions, stack):
    order_no, buyer, _ = await _deposit_paid(api, sandbox, temporal_env, demo, token, quantity=1)
    await _window_open(temporal_env, order_no)
    assert (await api.post(f"/orders/{order_no}/balance", headers=buyer)).status_code == 200
    assert (await run_to_end(temporal_env, order_no)).status == OrderStatus.CANCELLED  # queried, closed
    await wait_refund(temporal_env.client, lapse_refund_no(order_no), RefundStatus.REFUNDED)
    paid = await pay(sandbox, order_no + "B", after_close="true")  # WeChat completed a payment under way
    assert paid["delivered"] is True
    refund_no = late_payment_refund_no(order_no + "B")
    await wait_refund(temporal_env.client, refund_no, RefundStatus.REFUNDED)
    again = await sandbox.post(f"/sandbox/notify/{order_no}B/resend")
    assert again.json()["delivered"] is True
    at_wechat = await stack.state.pay.query_refund(refund_no)
    assert (at_wechat.status, at_wechat.amount.refund, at_wechat.out_trade_no) == (
        "SUCCESS", PRICE - DEPOSIT, order_no + "B")
    with sessions() as s:
        assert s.scalar(select(func.count()).select_from(Refund).where(Refund.order_no == order_no)) == 2
        assert s.get(Payment, order_no + "B").status == "SUCCESS"
        assert s.get(Order, order_no).status == OrderStatus.CANCELLED
        assert balance(s, rules.CLEARING) == 0
        assert_books_balance(s)


async def test_presale_terms_are_checked(api, demo, token):
    supplier = token(demo.supplier_user_id, "supplier")
    sku = demo.sku_ids[0]
    for body, code in [({"deposit_fen": PRICE}, "DEPOSIT_NOT_BELOW_PRICE"),
                       ({"deposit_fen": PRICE // 2}, "DEPOSIT_TOO_HIGH"),
                       ({"balance_starts_at": "2030-01-02T00:00:00Z", "balance_ends_at": "2030-01-01T00:00:00Z"},
                        "WINDOW_INVALID"),
                       ({"balance_starts_at": "2020-01-01T00:00:00Z", "balance_ends_at": "2020-01-02T00:00:00Z"},
                        "WINDOW_PAST")]:
        refused = await api.put(f"/skus/{sku}/presale", headers=supplier, json=body)
        assert refused.status_code == 422 and refused.json()["code"] == code, refused.text
    defaults = await api.put(f"/skus/{sku}/presale", headers=supplier, json={})
    assert defaults.status_code == 200 and defaults.json()["deposit_fen"] == PRICE * 1000 // 10_000
    other = token(demo.buyer_user_id, "buyer")
    assert (await api.put(f"/skus/{sku}/presale", headers=other, json={})).status_code == 403


async def test_an_unpaid_deposit_closes_the_order_and_a_late_deposit_is_refunded(
        api, sandbox, demo, token, temporal_env, sessions, stack):
    buyer, supplier = token(demo.buyer_user_id, "buyer"), token(demo.supplier_user_id, "supplier")
    await _on_presale(api, temporal_env, supplier, demo.sku_ids[0])
    order_no = (await place(api, buyer, demo, quantity=1)).json()["order_no"]
    assert (await run_to_end(temporal_env, order_no)).status == OrderStatus.CANCELLED  # payment timeout
    with sessions() as s:
        assert s.get(Sku, demo.sku_ids[0]).stock == 100
        assert s.get(PresaleOrder, order_no).status == "CANCELLED"
    paid = await pay(sandbox, order_no + "D", after_close="true")
    assert paid["delivered"] is True
    refund_no = late_payment_refund_no(order_no + "D")
    await wait_refund(temporal_env.client, refund_no, RefundStatus.REFUNDED)
    at_wechat = await stack.state.pay.query_refund(refund_no)
    assert (at_wechat.status, at_wechat.amount.refund, at_wechat.out_trade_no) == ("SUCCESS", DEPOSIT, order_no + "D")
    with sessions() as s:
        kinds = s.scalars(select(LedgerTransaction.kind).where(LedgerTransaction.order_no == order_no)
                          .order_by(LedgerTransaction.id)).all()
        assert kinds == ["late_payment", "refund"]
        assert balance(s, rules.CLEARING) == 0
        assert_books_balance(s)


def test_refund_parts_take_the_balance_first_and_add_up():
    from domain.presale import combined_refund_status, refund_parts, split_deposit

    assert refund_parts(19_900, balance_left=33_800, deposit_left=6_000) == [("B", 19_900)]
    assert refund_parts(39_800, balance_left=33_800, deposit_left=6_000) == [("B", 33_800), ("D", 6_000)]
    assert refund_parts(19_900, balance_left=13_900, deposit_left=6_000) == [("B", 13_900), ("D", 6_000)]
    assert refund_parts(100, balance_left=0, deposit_left=6_000) == [("D", 100)]
    import pytest

    with pytest.raises(ValueError):
        refund_parts(39_801, balance_left=33_800, deposit_left=6_000)
    assert split_deposit(39_800, 3_000, 2) == (6_000, 33_800)
    from domain.presale import PresaleRefused

    with pytest.raises(PresaleRefused):
        split_deposit(6_000, 3_000, 2)  # a coupon that leaves nothing after the deposit
    assert combined_refund_status(["SUCCESS", "SUCCESS"]) == "SUCCESS"
    assert combined_refund_status(["SUCCESS", "PROCESSING"]) == "PROCESSING"
    assert combined_refund_status(["SUCCESS", "CLOSED"]) == "ABNORMAL"
    assert combined_refund_status(["CLOSED", "CLOSED"]) == "CLOSED"


async def test_supplier_settlement_of_a_pre_sale_order_splits_the_balance_and_releases_the_deposit(
        api, sandbox, sandbox_app, demo, token, temporal_env, sessions, settings):
    """Both payments were frozen for profit sharing: the split is made on the balance's
    transaction, within what WeChat Pay allows on it, and the deposit's is unfrozen too
    (`SU{no}D`), so no money of the merchant stays frozen."""
    from db.settlement_models import SupplierSettlement
    from domain.settlement import SupplierRunInput, SupplierRunProgress, run_workflow_id
    from workflows.settlement import SupplierSettlementWorkflow
    from tests.helpers import result_skipping_time
    from tests.test_settlement import TZ, give_demo_supplier_a_wechatpay_account, split_orders_at_wechat, today

    give_demo_supplier_a_wechatpay_account(sessions, demo)
    order_no, buyer, supplier = await _deposit_paid(api, sandbox, temporal_env, demo, token)
    await _window_open(temporal_env, order_no)
    assert (await api.post(f"/orders/{order_no}/balance", headers=buyer)).status_code == 200
    await pay(sandbox, order_no + "B")
    await wait_status(temporal_env.client, order_no, OrderStatus.PAID)
    await ship_and_deliver(api, sandbox, temporal_env.client, supplier, order_no, "SF7000000099")
    assert (await run_to_end(temporal_env, order_no)).status == OrderStatus.COMPLETED
    with sessions() as s:
        txns = {p.out_trade_no: p.transaction_id for p in s.scalars(select(Payment).where(Payment.order_no == order_no))}
    assert set(txns) == {order_no + "D", order_no + "B"}

    wf_id = run_workflow_id("supplier", today())
    await temporal_env.client.start_workflow(
        SupplierSettlementWorkflow.run, SupplierRunInput(period=today(), timezone=TZ), id=wf_id,
        task_queue=settings.task_queue)
    result = await result_skipping_time(temporal_env, wf_id, SupplierRunProgress)
    assert result.status == "done" and result.failed_orders == []
    at_wechat = split_orders_at_wechat(sandbox_app, set(txns.values()))
    assert at_wechat[f"SS{order_no}"]["transaction_id"] == txns[order_no + "B"]
    assert at_wechat[f"SU{order_no}"]["transaction_id"] == txns[order_no + "B"]
    assert at_wechat[f"SU{order_no}D"]["transaction_id"] == txns[order_no + "D"]
    assert sorted(at_wechat) == sorted([f"SS{order_no}", f"SU{order_no}", f"SU{order_no}D"])
    with sessions() as s:
        row = s.get(SupplierSettlement, order_no)
        balance_paid = s.get(Payment, order_no + "B").amount_fen
        assert row.status == "DONE" and 0 < row.split_fen <= balance_paid * 3 // 10   # WeChat's 30% on that payment
        assert_books_balance(s)
