"""One order end to end through the HTTP API, with time skipped by Temporal's test server."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func, select
from temporalio.worker import Replayer

from activities.ledger import balance
from db.models import LedgerTransaction, OrderEvent, Sku
from domain import ledger as rules
from domain.order_status import OrderStatus
from domain.search_attributes import BUSINESS_STATUS, ORDER_NO, PROMOTER_ID
from workflows.order import OrderWorkflow, workflow_id
from tests.helpers import assert_books_balance, keep_history, place, run_to_end, wait_status


async def test_order_runs_from_placement_to_available_commission(api, sandbox, demo, token, temporal_env, sessions):
    buyer, supplier = token(demo.buyer_user_id, "buyer"), token(demo.supplier_user_id, "supplier")
    promoter = token(demo.promoter_user_id, "promoter")

    placed = await place(api, buyer, demo, quantity=2)
    assert placed.status_code == 201, placed.text
    order_no = placed.json()["order_no"]
    assert placed.json()["total_fen"] == 2 * 19_900
    assert placed.json()["prepay"]["package"].startswith("prepay_id=")
    with sessions() as s:
        assert s.get(Sku, demo.sku_ids[0]).stock == 98

    paid = await sandbox.post(f"/sandbox/pay/{order_no}")
    assert paid.json()["delivered"] is True, paid.text
    await wait_status(temporal_env.client, order_no, OrderStatus.PAID)
    commission = 2 * 19_900 * 1_500 // 10_000
    with sessions() as s:
        assert balance(s, rules.promoter_pending(demo.promoter_id)) == commission
        assert balance(s, rules.promoter_available(demo.promoter_id)) == 0

    shipped = await api.post(f"/orders/{order_no}/shipments", headers=supplier,
                             json={"carrier": "shunfeng", "waybill_no": "SF1234567890"})
    assert shipped.status_code == 200, shipped.text
    await wait_status(temporal_env.client, order_no, OrderStatus.SHIPPED)
    pushed = await sandbox.post("/sandbox/logistics/advance",
                                json={"company": "shunfeng", "number": "SF1234567890", "state": "3"})
    assert pushed.json()["delivered"] is True, pushed.text
    await wait_status(temporal_env.client, order_no, OrderStatus.DELIVERED)

    # Nobody confirms: auto-confirm after 10 days, then the 7-day refund window, skipped.
    handle = temporal_env.client.get_workflow_handle(workflow_id(order_no))
    result = await run_to_end(temporal_env, order_no)
    assert result.status == OrderStatus.COMPLETED

    order = (await api.get(f"/orders/{order_no}", headers=buyer)).json()
    assert order["status"] == "COMPLETED" and order["status_label"] == "已完成"
    assert [e["status"] for e in order["history"]] == [
        "PENDING_PAYMENT", "PAID", "SHIPPED", "DELIVERED", "RECEIVED", "COMPLETED"]
    wallet = (await api.get("/wallet", headers=promoter)).json()
    assert (wallet["pending_fen"], wallet["available_fen"]) == (0, commission)
    assert {e["kind"] for e in wallet["entries"]} == {"commission_pending", "commission_release"}

    with sessions() as s:
        assert_books_balance(s)
        fee = 2 * 19_900 * 300 // 10_000
        assert balance(s, rules.supplier_payable(demo.supplier_id)) == 2 * 19_900 - fee - commission
        assert balance(s, rules.PLATFORM_REVENUE) == fee

    described = await handle.describe()
    attrs = described.typed_search_attributes
    assert attrs.get(BUSINESS_STATUS) == "COMPLETED"
    assert attrs.get(ORDER_NO) == order_no
    assert attrs.get(PROMOTER_ID) == str(demo.promoter_id)

    await keep_history(temporal_env, order_no, "order_delivered_auto_confirmed")
    history = await handle.fetch_history()
    await Replayer(workflows=[OrderWorkflow], data_converter=temporal_env.client.data_converter).replay_workflow(history)


async def test_buyer_confirming_receipt_skips_the_auto_confirm_wait(api, sandbox, demo, token, temporal_env):
    buyer, supplier = token(demo.buyer_user_id, "buyer"), token(demo.supplier_user_id, "supplier")
    order_no = (await place(api, buyer, demo, sku_index=1, quantity=1)).json()["order_no"]
    await sandbox.post(f"/sandbox/pay/{order_no}")
    await wait_status(temporal_env.client, order_no, OrderStatus.PAID)
    early = await api.post(f"/orders/{order_no}/confirm-receipt", headers=buyer)
    assert early.status_code == 409 and early.json()["code"] == "NOT_RECEIVABLE"
    await api.post(f"/orders/{order_no}/shipments", headers=supplier,
                   json={"carrier": "yuantong", "waybill_no": "YT9876543210"})
    again = await api.post(f"/orders/{order_no}/shipments", headers=supplier,
                           json={"carrier": "yuantong", "waybill_no": "YT9876543210"})
    assert again.status_code == 409 and again.json()["code"] in ("ALREADY_SHIPPED", "NOT_SHIPPABLE")
    await wait_status(temporal_env.client, order_no, OrderStatus.SHIPPED)
    confirmed = await api.post(f"/orders/{order_no}/confirm-receipt", headers=buyer)
    assert confirmed.status_code == 200, confirmed.text
    received = await wait_status(temporal_env.client, order_no, OrderStatus.RECEIVED)
    result = await run_to_end(temporal_env, order_no)
    assert result.status == OrderStatus.COMPLETED
    # only the refund window passed in workflow time: no 10-day auto-confirm wait
    assert timedelta(days=7) <= result.updated_at - received.updated_at < timedelta(days=7, minutes=1)
    await keep_history(temporal_env, order_no, "order_buyer_confirmed")


async def test_duplicate_payment_notification_changes_nothing(api, sandbox, demo, token, temporal_env, sessions):
    order_no = (await place(api, token(demo.buyer_user_id, "buyer"), demo)).json()["order_no"]
    await sandbox.post(f"/sandbox/pay/{order_no}")
    await wait_status(temporal_env.client, order_no, OrderStatus.PAID)
    with sessions() as s:
        before = s.scalar(select(func.count()).select_from(LedgerTransaction))
    again = await sandbox.post(f"/sandbox/notify/{order_no}/resend")
    assert again.json()["delivered"] is True, again.text
    progress = await wait_status(temporal_env.client, order_no, OrderStatus.PAID)
    assert progress.status == OrderStatus.PAID
    with sessions() as s:
        assert s.scalar(select(func.count()).select_from(LedgerTransaction)) == before
        assert s.scalar(select(func.count()).select_from(OrderEvent)
                        .where(OrderEvent.order_no == order_no, OrderEvent.status == "PAID")) == 1
        assert_books_balance(s)


async def test_unpaid_order_is_closed_and_its_stock_released(api, demo, token, temporal_env, sessions):
    order_no = (await place(api, token(demo.buyer_user_id, "buyer"), demo, quantity=3)).json()["order_no"]
    with sessions() as s:
        assert s.get(Sku, demo.sku_ids[0]).stock == 97
    result = await run_to_end(temporal_env, order_no)
    assert result.status == OrderStatus.CANCELLED
    await keep_history(temporal_env, order_no, "order_payment_timed_out")
    with sessions() as s:
        assert s.get(Sku, demo.sku_ids[0]).stock == 100
        assert balance(s, rules.CLEARING) == 0


async def test_lost_notification_is_recovered_by_querying_wechat_pay(api, sandbox, demo, token, temporal_env, sessions):
    from integrations import http

    order_no = (await place(api, token(demo.buyer_user_id, "buyer"), demo)).json()["order_no"]
    api_route = http._routes.pop("http://api.test")
    try:  # the buyer pays but no notification reaches us until the payment timeout
        paid = await sandbox.post(f"/sandbox/pay/{order_no}")
        assert paid.json()["delivered"] is False
        await temporal_env.sleep(timedelta(minutes=16))
        await wait_status(temporal_env.client, order_no, OrderStatus.PAID)
        await keep_history(temporal_env, order_no, "order_paid_after_lost_notification")
    finally:
        http._routes["http://api.test"] = api_route
    with sessions() as s:
        assert balance(s, rules.CLEARING) == 2 * 19_900
        assert_books_balance(s)
