"""Settlement runs end to end: orders completed through the real pipeline (API, WeChat Pay
sandbox, order and refund workflows) are split to suppliers through WeChat Pay profit sharing
once per business key (also under injected faults), bills equal the ledger, re-running a period
changes nothing; monthly commission statements equal the ledger and large ones wait for
support through the HTTP API; the schedules exist on a real Temporal dev server."""

from __future__ import annotations

import asyncio
import csv
import io
import os
import uuid
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select, text
from temporalio.client import WorkflowExecutionStatus
from temporalio.common import WorkflowIDReusePolicy

from activities import ledger
from activities.ledger import balance
from db.catalog_models import Notification, ProfitSharingReceiver, SupplierProfile
from db.models import LedgerEntry, LedgerTransaction, OrderLine, Product, Promoter, Sku, Supplier, User
from db.models import WindowProduct
from db.settlement_models import CommissionStatement, SupplierBill, SupplierSettlement
from db.settlement_models import SupplierSettlementLine
from domain import ledger as rules
from domain.order_status import OrderStatus
from domain.refunds import RefundStatus
from domain.settlement import (
    CommissionRunInput,
    CommissionRunProgress,
    SupplierRunInput,
    SupplierRunProgress,
    commission_period_at,
    run_workflow_id,
    split_out_order_no,
    supplier_period_at,
    unfreeze_out_order_no,
)
from workflows.settlement import CommissionSettlementWorkflow, SupplierSettlementWorkflow
from tests.helpers import (
    assert_books_balance,
    end_workflows,
    keep_run_history,
    make_user,
    pay,
    place,
    result_skipping_time,
    run_to_end,
    ship_and_deliver,
    wait_refund,
    wait_status,
)

TZ = "Asia/Shanghai"
PRICE, FEE_BPS, COMMISSION_BPS = 19_900, 300, 1_500
DEMO_MCHID = "1900000109"
SPLIT = "profitsharing.order"


def today() -> str:
    return datetime.now(UTC).astimezone(ZoneInfo(TZ)).date().isoformat()


def this_month() -> str:
    return today()[:7]


def give_demo_supplier_a_wechatpay_account(sessions, demo) -> None:
    """The demo supplier predates onboarding: a profile with its WeChat Pay merchant id, but no
    profit-sharing receiver yet (the settlement run must add it)."""
    with sessions.begin() as s:
        s.add(SupplierProfile(supplier_id=demo.supplier_id, kind="enterprise", licence_no="91310000MA1FL0000X",
                              contact_name="李经理", contact_phone="13900139000", categories=["food"], documents=[],
                              wechatpay_mchid=DEMO_MCHID))


def second_supplier(sessions, demo) -> tuple[int, int, int]:
    """A supplier with no WeChat Pay account (its share is paid by bank transfer), its product
    in the demo window. Returns (supplier id, owner user id, sku id)."""
    with sessions.begin() as s:
        owner = User(role="supplier", username="bank-transfer-supplier", display_name="线下结算供应商")
        s.add(owner)
        s.flush()
        supplier = Supplier(owner_user_id=owner.id, name="线下结算供应商", service_fee_bps=200)
        s.add(supplier)
        s.flush()
        product = Product(supplier_id=supplier.id, title="手工红糖", category="food")
        s.add(product)
        s.flush()
        sku = Sku(product_id=product.id, spec="500g", price_fen=5_000, stock=50, commission_bps=1_000)
        s.add(sku)
        s.add(WindowProduct(window_id=demo.window_id, product_id=product.id))
        s.flush()
        return supplier.id, owner.id, sku.id


async def complete_order(api, sandbox, env, buyer, supplier, demo, waybill: str, **place_args) -> str:
    order_no = (await place(api, buyer, demo, **place_args)).json()["order_no"]
    await pay(sandbox, order_no)
    await wait_status(env.client, order_no, OrderStatus.PAID)
    await ship_and_deliver(api, sandbox, env.client, supplier, order_no, waybill)
    assert (await run_to_end(env, order_no)).status == OrderStatus.COMPLETED
    return order_no


async def complete_two_supplier_order(api, sandbox, env, buyer, suppliers, lines, waybills) -> str:
    placed = await api.post("/orders", headers=buyer, json={
        "window_id": lines[0]["window_id"], "lines": [{"sku_id": ln["sku_id"], "quantity": ln["quantity"]}
                                                      for ln in lines],
        "address": {"receiver": "王小明", "phone": "13800138000", "province": "上海", "city": "上海",
                    "district": "浦东新区", "detail": "世纪大道 100 号"}})
    assert placed.status_code == 201, placed.text
    order_no = placed.json()["order_no"]
    await pay(sandbox, order_no)
    await wait_status(env.client, order_no, OrderStatus.PAID)
    for headers, waybill in zip(suppliers, waybills, strict=True):
        shipped = await api.post(f"/orders/{order_no}/shipments", headers=headers,
                                 json={"carrier": "shunfeng", "waybill_no": waybill})
        assert shipped.status_code == 200, shipped.text
    await wait_status(env.client, order_no, OrderStatus.SHIPPED)
    for waybill in waybills:
        await sandbox.post("/sandbox/logistics/advance", json={"company": "shunfeng", "number": waybill, "state": "3"})
    await wait_status(env.client, order_no, OrderStatus.DELIVERED)
    assert (await run_to_end(env, order_no)).status == OrderStatus.COMPLETED
    return order_no


def split_orders_at_wechat(sandbox_app, transaction_ids: set[str]) -> dict[str, dict]:
    return {o["out_order_no"]: o for o in sandbox_app.state.sandbox.store.all(SPLIT)
            if o["transaction_id"] in transaction_ids}


def transaction_ids(sessions, order_nos) -> dict[str, str]:
    from db.models import Order

    with sessions() as s:
        return dict(s.execute(select(Order.order_no, Order.transaction_id).where(Order.order_no.in_(order_nos))).all())


def books_snapshot(sessions) -> dict:
    with sessions() as s:
        return {
            "transactions": s.scalar(select(func.count()).select_from(LedgerTransaction)),
            "entries": s.scalar(select(func.count()).select_from(LedgerEntry)),
            "bills": [tuple(r) for r in s.execute(text(
                "SELECT supplier_id, orders, sales_fen, refunds_fen, service_fee_fen, commission_fen, adjustment_fen,"
                " net_fen, split_fen, outstanding_fen FROM supplier_bills ORDER BY settle_date, supplier_id")).all()],
            "settlements": [tuple(r) for r in s.execute(text(
                "SELECT order_no, status, split_fen, planned_split_fen FROM supplier_settlements ORDER BY order_no"))],
            "statements": [tuple(r) for r in s.execute(text(
                "SELECT month, promoter_id, opening_fen, released_fen, reversed_fen, closing_fen, status"
                " FROM commission_statements ORDER BY month, promoter_id"))],
        }


async def rerun(env, settings, workflow, arg, wf_id: str, result_type):
    """Run the period's workflow again under its id (as after a crash or a manual re-run)."""
    await env.client.start_workflow(workflow, arg, id=wf_id, task_queue=settings.task_queue,
                                    id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE)
    return await result_skipping_time(env, wf_id, result_type)


# --- supplier settlement ------------------------------------------------------------------------
async def test_supplier_settlement_splits_once_per_payment_and_bills_equal_the_ledger(
        api, sandbox, sandbox_app, demo, token, temporal_env, sessions, settings):
    give_demo_supplier_a_wechatpay_account(sessions, demo)
    other_id, other_owner, other_sku = second_supplier(sessions, demo)
    buyer, supplier = token(demo.buyer_user_id, "buyer"), token(demo.supplier_user_id, "supplier")
    other = token(other_owner, "supplier")
    operator = token(make_user(sessions, "operator", "ops-1"), "operator")
    support = token(make_user(sessions, "support", "kefu-1"), "support")

    plain = await complete_order(api, sandbox, temporal_env, buyer, supplier, demo, "SF7000000001", quantity=2)
    mixed = await complete_two_supplier_order(
        api, sandbox, temporal_env, buyer, [supplier, other],
        [{"window_id": demo.window_id, "sku_id": demo.sku_ids[1], "quantity": 1},
         {"window_id": demo.window_id, "sku_id": other_sku, "quantity": 3}], ["SF7000000002", "SF7000000003"])
    # one unit returned before the order completed: the bill shows the refund, the share is less
    returned = (await place(api, buyer, demo, quantity=2)).json()["order_no"]
    await pay(sandbox, returned)
    await wait_status(temporal_env.client, returned, OrderStatus.PAID)
    await ship_and_deliver(api, sandbox, temporal_env.client, supplier, returned, "SF7000000004")
    with sessions() as s:
        line = s.scalar(select(OrderLine.id).where(OrderLine.order_no == returned))
    refund = await api.post(f"/orders/{returned}/refunds", headers=buyer,
                            json={"kind": "return", "lines": [{"line_id": line, "quantity": 1}]})
    refund_no = refund.json()["refund_no"]
    await wait_refund(temporal_env.client, refund_no, RefundStatus.AWAITING_RETURN)
    await api.post(f"/refunds/{refund_no}/return-parcel", headers=buyer,
                   json={"carrier": "yuantong", "waybill_no": "YTBACK700001"})
    await wait_refund(temporal_env.client, refund_no, RefundStatus.RETURN_SHIPPED)
    await api.post(f"/refunds/{refund_no}/confirm-return", headers=supplier)
    await wait_refund(temporal_env.client, refund_no, RefundStatus.REFUNDED)
    assert (await run_to_end(temporal_env, returned)).status == OrderStatus.COMPLETED

    day = today()
    assert (await api.post("/settlements/runs", headers=support, json={"kind": "supplier", "period": day})
            ).status_code == 403
    for bad, code in [("2026-02-30", "BAD_PERIOD"), ("2999-01-01", "PERIOD_IN_FUTURE")]:
        refused = await api.post("/settlements/runs", headers=operator, json={"kind": "supplier", "period": bad})
        assert (refused.status_code, refused.json()["code"]) == (422, code)
    started = await api.post("/settlements/runs", headers=operator, json={"kind": "supplier", "period": day})
    assert started.status_code == 201, started.text
    run_id = started.json()["run_id"]
    assert run_id == f"settlement-supplier-{day}"
    again = await api.post("/settlements/runs", headers=operator, json={"kind": "supplier", "period": day})
    assert (again.status_code, again.json()["run_id"]) == (200, run_id)   # the same run, not a second one
    result = await result_skipping_time(temporal_env, run_id, SupplierRunProgress)
    assert (result.status, result.orders_settled, result.failed_orders) == ("done", 3, [])
    shown = (await api.get(f"/settlements/runs/supplier/{day}", headers=support)).json()
    assert (shown["running"], shown["progress"]["status"]) == (False, "done")
    recorded = (await api.get("/settlements/runs", params={"kind": "supplier"}, headers=operator)).json()
    assert [(r["period"], r["status"], r["totals"]["bills"]) for r in recorded] == [(day, "final", 2)]
    assert (await api.get("/settlements/runs/supplier/2026-01-01", headers=support)).status_code == 404

    # --- at WeChat Pay: one split and one unfreeze per payment, within the 30% cap ---
    txns = transaction_ids(sessions, [plain, mixed, returned])
    at_wechat = split_orders_at_wechat(sandbox_app, set(txns.values()))
    assert set(at_wechat) == {f(no) for no in txns for f in (split_out_order_no, unfreeze_out_order_no)}
    with sessions() as s:
        rows = {r.order_no: r for r in s.scalars(select(SupplierSettlement))}
        lines = s.scalars(select(SupplierSettlementLine)).all()
        assert s.get(ProfitSharingReceiver, demo.supplier_id).status == "ADDED"   # added on the way
    for no, row in rows.items():
        split = at_wechat[split_out_order_no(no)]
        assert split["state"] == "FINISHED" and row.status == "DONE"
        assert [(r["account"], r["amount"], r["result"]) for r in split["receivers"]] == [(DEMO_MCHID, row.split_fen, "SUCCESS")]
        assert row.split_fen <= row.paid_fen * 3000 // 10_000
        assert at_wechat[unfreeze_out_order_no(no)]["receivers"][0]["amount"] == row.paid_fen - row.split_fen

    # the plain order: 2 × 199.00, fee 3%, commission 15% → share 326.36, cap 30% = 119.40
    share = 2 * PRICE - 2 * PRICE * FEE_BPS // 10_000 - 2 * PRICE * COMMISSION_BPS // 10_000
    assert (rows[plain].split_fen, rows[plain].room_fen) == (11_940, 11_940)
    plain_line = next(ln for ln in lines if ln.order_no == plain)
    assert (plain_line.share_fen, plain_line.split_fen, plain_line.outstanding_fen) == (share, 11_940, share - 11_940)
    # the supplier without a WeChat Pay account got nothing split: all of it is outstanding
    other_line = next(ln for ln in lines if ln.supplier_id == other_id)
    assert (other_line.split_fen, other_line.outstanding_fen, other_line.result) == (0, other_line.share_fen, "NONE")
    assert other_line.share_fen == 3 * 5_000 - 3 * 5_000 * 200 // 10_000 - 3 * 5_000 * 1_000 // 10_000
    refunded_line = next(ln for ln in lines if ln.order_no == returned)
    assert refunded_line.refunds_fen == PRICE and rows[returned].refunded_fen == PRICE

    # --- bills equal the ledger ---
    with sessions() as s:
        bills = {b.supplier_id: b for b in s.scalars(select(SupplierBill))}
        split_postings = s.scalars(select(LedgerTransaction.idempotency_key).where(
            LedgerTransaction.kind == "supplier_split")).all()
        assert sorted(split_postings) == sorted(f"settlement:supplier:{no}:{demo.supplier_id}" for no in txns)
        for supplier_id, bill in bills.items():
            assert bill.net_fen == bill.sales_fen - bill.refunds_fen - bill.service_fee_fen - bill.commission_fen
            assert bill.adjustment_fen == 0
            assert bill.split_fen + bill.outstanding_fen == bill.net_fen
            # what the supplier is still owed on the ledger is exactly the bill's outstanding
            assert balance(s, rules.supplier_payable(supplier_id)) == bill.outstanding_fen
            booked = -s.scalar(select(func.coalesce(func.sum(LedgerEntry.amount_fen), 0)).join(
                LedgerTransaction, LedgerEntry.transaction_id == LedgerTransaction.id).where(
                LedgerTransaction.kind == "supplier_split", LedgerEntry.amount_fen < 0,
                LedgerTransaction.idempotency_key.like(f"settlement:supplier:%:{supplier_id}")))
            assert bill.split_fen == booked
        assert bills[demo.supplier_id].orders == 3 and bills[other_id].orders == 1
        assert bills[other_id].split_fen == 0
        assert balance(s, rules.CLEARING) == sum(r.paid_fen - r.refunded_fen - r.split_fen for r in rows.values())
        assert_books_balance(s)

    # --- who sees which bill ---
    mine = (await api.get("/settlements/supplier-bills", params={"date": day}, headers=supplier)).json()
    assert [b["supplier_id"] for b in mine] == [demo.supplier_id]
    theirs = (await api.get("/settlements/supplier-bills", params={"date": day}, headers=other)).json()
    assert [(b["supplier_id"], b["split_fen"]) for b in theirs] == [(other_id, 0)]
    everyone = (await api.get("/settlements/supplier-bills", params={"date": day}, headers=operator)).json()
    assert {b["supplier_id"] for b in everyone} == {demo.supplier_id, other_id}
    assert (await api.get("/settlements/supplier-bills", params={"date": day}, headers=buyer)).status_code == 403
    assert (await api.get("/settlements/supplier-bills", params={"date": day})).status_code == 401
    bad_date = await api.get("/settlements/supplier-bills", params={"date": "yesterday"}, headers=operator)
    assert (bad_date.status_code, bad_date.json()["code"]) == (422, "BAD_PERIOD")
    exported = await api.get("/settlements/supplier-bills", params={"date": day, "format": "csv"}, headers=support)
    assert exported.headers["content-type"].startswith("text/csv")
    table = list(csv.DictReader(io.StringIO(exported.text)))
    assert {int(r["supplier_id"]): int(r["outstanding_fen"]) for r in table} == {
        b["supplier_id"]: b["outstanding_fen"] for b in everyone}
    assert table[0]["outstanding_yuan"].count(".") == 1

    await keep_run_history(temporal_env, run_id, None, "settlement_supplier_day")

    # --- re-running the period changes nothing ---
    before = books_snapshot(sessions)
    wechat_before = split_orders_at_wechat(sandbox_app, set(txns.values()))
    again = await rerun(temporal_env, settings, SupplierSettlementWorkflow.run,
                        SupplierRunInput(period=day, timezone=TZ), run_id, SupplierRunProgress)
    assert (again.status, again.orders_settled, again.bills) == ("done", 0, 2)
    assert books_snapshot(sessions) == before
    assert split_orders_at_wechat(sandbox_app, set(txns.values())) == wechat_before

    # --- a scheduled start works out its period and settles it under the period's id ---
    launcher = await temporal_env.client.start_workflow(
        SupplierSettlementWorkflow.run, SupplierRunInput(timezone=TZ), id=f"settlement-supplier-scheduled-{uuid.uuid4().hex[:6]}",
        task_queue=settings.task_queue)
    scheduled = await result_skipping_time(temporal_env, launcher.id, SupplierRunProgress)
    due = (await launcher.describe()).start_time
    assert scheduled.delegated_to == run_workflow_id("supplier", supplier_period_at(due, TZ))
    # (the test server's clock has skipped ahead: that day was settled already, or is now, with
    # nothing left to settle)
    assert scheduled.status in ("done", "already_run") and scheduled.orders_settled == 0
    assert books_snapshot(sessions)["transactions"] == before["transactions"]

    await keep_run_history(temporal_env, launcher.id, None, "settlement_supplier_scheduled")


async def test_a_refund_after_the_split_takes_the_share_back_from_the_supplier_once(
        api, sandbox, sandbox_app, demo, token, temporal_env, sessions, settings):
    from activities.settlement import splits_of_order

    give_demo_supplier_a_wechatpay_account(sessions, demo)
    buyer, supplier = token(demo.buyer_user_id, "buyer"), token(demo.supplier_user_id, "supplier")
    no = await complete_order(api, sandbox, temporal_env, buyer, supplier, demo, "SF7300000001", quantity=2)
    wf_id = run_workflow_id("supplier", today())
    assert (await sandbox.put("/sandbox/faults", json={"profit_sharing_max_ratio": 1.0})).status_code == 200
    try:
        await temporal_env.client.start_workflow(
            SupplierSettlementWorkflow.run, SupplierRunInput(period=today(), timezone=TZ, max_ratio_bps=10_000),
            id=wf_id, task_queue=settings.task_queue)
        assert (await result_skipping_time(temporal_env, wf_id, SupplierRunProgress)).status == "done"
    finally:
        await sandbox.delete("/sandbox/faults")
    with sessions() as s:
        (split,) = splits_of_order(s, no)
        assert (split.supplier_id, split.receiver_account, split.result) == (demo.supplier_id, DEMO_MCHID, "SUCCESS")
        assert split.split_fen == split.share_fen and balance(s, rules.supplier_payable(demo.supplier_id)) == 0
        line = s.scalar(select(OrderLine.id).where(OrderLine.order_no == no))

    asked = await api.post(f"/orders/{no}/refunds", headers=buyer,
                           json={"kind": "quality_return", "lines": [{"line_id": line, "quantity": 1}], "reason": "破损"})
    refund_no = asked.json()["refund_no"]
    await wait_refund(temporal_env.client, refund_no, RefundStatus.AWAITING_RETURN)
    await api.post(f"/refunds/{refund_no}/return-parcel", headers=buyer,
                   json={"carrier": "yuantong", "waybill_no": "YTBACK730001"})
    await wait_refund(temporal_env.client, refund_no, RefundStatus.RETURN_SHIPPED)
    await api.post(f"/refunds/{refund_no}/confirm-return", headers=supplier)
    await wait_refund(temporal_env.client, refund_no, RefundStatus.REFUNDED)
    refunded = await temporal_env.client.get_workflow_handle(f"refund-{refund_no}").result()
    assert refunded["status"] == RefundStatus.REFUNDED
    await keep_run_history(temporal_env, f"refund-{refund_no}", None, "refund_after_split_returned")
    fee, commission = 2 * PRICE * FEE_BPS // 10_000, 2 * PRICE * COMMISSION_BPS // 10_000
    owed = PRICE - fee // 2 - commission // 2
    # the supplier was paid for both units: the refunded unit's share is taken back from their
    # receiver account once (分账回退), which brings the payable the refund took negative back to 0
    returns = [r for r in sandbox_app.state.sandbox.store.all("profitsharing.return")
               if r["out_order_no"] == f"SS{no}"]
    assert [(r["out_return_no"], r["return_mchid"], r["amount"], r["result"]) for r in returns] == [
        (f"SR{refund_no}S{demo.supplier_id}", DEMO_MCHID, owed, "SUCCESS")]
    with sessions() as s:
        assert balance(s, rules.supplier_payable(demo.supplier_id)) == 0
        assert s.scalar(select(func.count()).select_from(LedgerTransaction).where(
            LedgerTransaction.kind == "supplier_split_return", LedgerTransaction.order_no == no)) == 1
        assert_books_balance(s)
    before = books_snapshot(sessions)
    await rerun(temporal_env, settings, SupplierSettlementWorkflow.run, SupplierRunInput(period=today(), timezone=TZ),
                wf_id, SupplierRunProgress)
    assert books_snapshot(sessions) == before   # the payment was settled once; the refund does not re-split it


PROFIT_SHARING_FAULTS = {
    "seed": 23,
    "profit_sharing_max_ratio": 1.0,   # this merchant may split everything
    "endpoints": [
        # the first split request is processed but its answer never arrives (client timeout)
        {"path": "/v3/profitsharing/orders", "method": "POST", "timeout_seconds": 11, "times": 1},
        {"path": "/v3/profitsharing/orders", "method": "POST", "error_rate": 0.5, "error_status": 500},
        {"path": "/v3/profitsharing/orders/*", "method": "GET", "error_rate": 0.4, "error_status": 429},
        {"path": "/v3/profitsharing/orders/unfreeze", "error_rate": 0.5, "error_status": 500},
        {"path": "/v3/profitsharing/receivers/add", "error_rate": 0.5, "error_status": 500},
        {"path": "/v3/profitsharing/transactions/*/amounts", "error_rate": 0.4, "error_status": 500},
    ],
}


async def test_supplier_settlement_under_profit_sharing_faults_splits_once_per_out_order_no(
        api, sandbox, sandbox_app, demo, token, temporal_env, sessions, settings):
    give_demo_supplier_a_wechatpay_account(sessions, demo)
    buyer, supplier = token(demo.buyer_user_id, "buyer"), token(demo.supplier_user_id, "supplier")
    orders = [await complete_order(api, sandbox, temporal_env, buyer, supplier, demo, f"SF710000000{i}",
                                   quantity=i + 1, sku_index=i % 2) for i in range(3)]
    day, wf_id = today(), run_workflow_id("supplier", today())
    assert (await sandbox.put("/sandbox/faults", json=PROFIT_SHARING_FAULTS)).status_code == 200
    try:
        await temporal_env.client.start_workflow(
            SupplierSettlementWorkflow.run, SupplierRunInput(period=day, timezone=TZ, max_ratio_bps=10_000,
                                                             parallel_orders=3),
            id=wf_id, task_queue=settings.task_queue)
        result = await result_skipping_time(temporal_env, wf_id, SupplierRunProgress, budget=180)
        stats = (await sandbox.get("/sandbox/faults")).json()["stats"]
    finally:
        await sandbox.delete("/sandbox/faults")
    assert stats.get("timeout") == 1 and stats.get("error_500"), stats
    assert (result.status, result.orders_settled, result.failed_orders, result.outstanding_fen) == ("done", 3, [], 0)

    txns = transaction_ids(sessions, orders)
    at_wechat = split_orders_at_wechat(sandbox_app, set(txns.values()))
    assert set(at_wechat) == {f(no) for no in orders for f in (split_out_order_no, unfreeze_out_order_no)}
    with sessions() as s:
        for no in orders:
            row = s.get(SupplierSettlement, no)
            (line,) = s.scalars(select(SupplierSettlementLine).where(SupplierSettlementLine.order_no == no)).all()
            split = at_wechat[split_out_order_no(no)]
            # the whole share went in one split: the merchant's ratio allowed it all
            assert [r["amount"] for r in split["receivers"]] == [line.share_fen] == [row.split_fen]
            assert line.outstanding_fen == 0
            assert s.scalar(select(func.count()).select_from(LedgerTransaction).where(
                LedgerTransaction.idempotency_key == f"settlement:supplier:{no}:{demo.supplier_id}")) == 1
        assert balance(s, rules.supplier_payable(demo.supplier_id)) == 0
        bill = s.get(SupplierBill, (datetime.fromisoformat(day).date(), demo.supplier_id))
        assert (bill.orders, bill.outstanding_fen, bill.split_fen) == (3, 0, bill.net_fen)
        assert_books_balance(s)
    await keep_run_history(temporal_env, wf_id, None, "settlement_supplier_faults")


async def test_a_split_refused_by_wechat_pay_goes_to_support_and_stays_payable(
        api, sandbox, sandbox_app, demo, token, temporal_env, sessions, settings):
    """We believe the merchant may split 50%, WeChat Pay says 30%: the split is refused, support
    is told, nothing is booked and the whole share stays owed to the supplier."""
    give_demo_supplier_a_wechatpay_account(sessions, demo)
    buyer, supplier = token(demo.buyer_user_id, "buyer"), token(demo.supplier_user_id, "supplier")
    no = await complete_order(api, sandbox, temporal_env, buyer, supplier, demo, "SF7200000001", quantity=1)
    wf_id = run_workflow_id("supplier", today())
    await temporal_env.client.start_workflow(
        SupplierSettlementWorkflow.run, SupplierRunInput(period=today(), timezone=TZ, max_ratio_bps=5_000),
        id=wf_id, task_queue=settings.task_queue)
    result = await result_skipping_time(temporal_env, wf_id, SupplierRunProgress)
    assert (result.status, result.failed_orders) == ("done_with_failures", [no])
    with sessions() as s:
        row = s.get(SupplierSettlement, no)
        assert row.status == "FAILED" and "INVALID_REQUEST" in row.failure and row.split_fen == 0
        assert s.scalar(select(func.count()).select_from(LedgerTransaction).where(
            LedgerTransaction.kind == "supplier_split")) == 0
        bill = s.get(SupplierBill, (datetime.fromisoformat(today()).date(), demo.supplier_id))
        assert bill.outstanding_fen == bill.net_fen == balance(s, rules.supplier_payable(demo.supplier_id))
        assert s.scalar(select(func.count()).select_from(Notification).where(
            Notification.kind == "settlement_failed", Notification.recipient_role == "support")) == 1
        assert_books_balance(s)
    assert unfreeze_out_order_no(no) not in split_orders_at_wechat(sandbox_app, {row.transaction_id})


# --- commission settlement ------------------------------------------------------------------------
def make_promoters(sessions, n: int) -> list[tuple[int, int]]:
    """n promoters: [(promoter id, user id)]."""
    with sessions.begin() as s:
        out = []
        for i in range(n):
            user = User(role="promoter", openid=f"oSETTLE{uuid.uuid4().hex[:20]}", display_name=f"推客{i}")
            s.add(user)
            s.flush()
            promoter = Promoter(user_id=user.id, nickname=f"推客{i}")
            s.add(promoter)
            s.flush()
            out.append((promoter.id, user.id))
        return out


def earn(sessions, promoter_id: int, amount: int, key: str) -> None:
    """Commission released to `available` the way an order books it: paid, pending, released."""
    with sessions.begin() as s:
        pending, available = rules.promoter_pending(promoter_id), rules.promoter_available(promoter_id)
        ledger.lock_accounts(s, {rules.CLEARING, rules.ORDERS_HELD, pending, available})
        ledger.post(s, f"{key}:payment", "payment", rules.transfer(rules.CLEARING, rules.ORDERS_HELD, amount))
        ledger.post(s, f"{key}:commission", "commission_pending", rules.transfer(rules.ORDERS_HELD, pending, amount))
        ledger.post(s, f"{key}:release", "commission_release", rules.transfer(pending, available, amount))


def reverse(sessions, promoter_id: int, amount: int, key: str) -> None:
    """A refund after release takes the commission back from `available` (it may go negative)."""
    with sessions.begin() as s:
        available = rules.promoter_available(promoter_id)
        ledger.lock_accounts(s, {rules.CLEARING, available})
        ledger.post(s, key, "refund", [rules.Posting(available, amount), rules.Posting(rules.CLEARING, -amount)])


async def wait_run(env, wf_id: str, status: str, timeout: float = 30.0):
    handle = env.client.get_workflow_handle(wf_id)
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        try:
            progress = await handle.query(CommissionSettlementWorkflow.progress)
        except Exception:  # noqa: BLE001 - not started yet
            progress = None
        if progress is not None and progress.status == status:
            return progress
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"{wf_id} at {progress.status if progress else None}, wanted {status}")
        await asyncio.sleep(0.05)


async def test_commission_statements_equal_the_ledger_and_large_ones_wait_for_support(
        api, demo, token, temporal_env, sessions, settings, monkeypatch):
    monkeypatch.setattr(settings, "commission_review_above_fen", 100_000)
    monkeypatch.setattr(settings, "settlement_batch_size", 2)          # 6 promoters → 3 batches
    monkeypatch.setattr(settings, "settlement_batches_per_child", 1)   # → 3 child workflows
    operator = token(make_user(sessions, "operator", "ops-2"), "operator")
    support = token(make_user(sessions, "support", "kefu-2"), "support")
    (small, _), (big, _), (bigger, _), (negative, _), (quiet, _) = promoters = make_promoters(sessions, 5)
    earn(sessions, small, 12_345, "t:small")
    earn(sessions, small, 655, "t:small2")
    earn(sessions, big, 150_000, "t:big")
    earn(sessions, bigger, 250_000, "t:bigger")
    reverse(sessions, bigger, 10_000, "t:bigger:refund")
    earn(sessions, negative, 1_000, "t:neg")
    reverse(sessions, negative, 1_500, "t:neg:refund")     # more reversed than earned: carried negative
    earn(sessions, demo.promoter_id, 2_000, "t:demo")
    month = this_month()

    not_ended = await api.post("/settlements/runs", headers=operator, json={"kind": "commission", "period": month})
    assert (not_ended.status_code, not_ended.json()["code"]) == (422, "PERIOD_NOT_ENDED")
    monkeypatch.setattr(settings, "settlement_allow_open_periods", True)
    assert (await api.post("/settlements/runs", headers=support, json={"kind": "commission", "period": month})
            ).status_code == 403
    started = await api.post("/settlements/runs", headers=operator, json={"kind": "commission", "period": month})
    assert started.status_code == 201, started.text
    run_id = started.json()["run_id"]
    waiting = await wait_run(temporal_env, run_id, "awaiting_review")
    assert (waiting.batches_total, waiting.batches_done, waiting.totals.statements) == (3, 3, 5)
    assert waiting.awaiting_review_ids == sorted([big, bigger])
    shown = (await api.get(f"/settlements/runs/commission/{month}", headers=support)).json()
    assert shown["running"] and shown["progress"]["awaiting_review"] == 2
    again = await api.post("/settlements/runs", headers=operator, json={"kind": "commission", "period": month})
    assert (again.status_code, again.json()["run_id"]) == (200, run_id)

    review = f"/settlements/runs/{run_id}/statements"
    assert (await api.post(f"{review}/{big}/review", headers=operator, json={"approve": True})).status_code == 403
    not_waiting = await api.post(f"{review}/{small}/review", headers=support, json={"approve": True})
    assert (not_waiting.status_code, not_waiting.json()["code"]) == (409, "NOT_AWAITING_REVIEW")
    no_reason = await api.post(f"{review}/{bigger}/review", headers=support, json={"approve": False})
    assert (no_reason.status_code, no_reason.json()["code"]) == (422, "INVALID_DECISION")
    unknown = await api.post(f"/settlements/runs/settlement-commission-1999-01/statements/{big}/review",
                             headers=support, json={"approve": True})
    assert unknown.status_code == 404
    approved = await api.post(f"{review}/{big}/review", headers=support, json={"approve": True, "note": "已核实订单"})
    assert approved.status_code == 200, approved.text
    assert (approved.json()["status"], approved.json()["released_fen"]) == ("final", 150_000)
    twice = await api.post(f"{review}/{big}/review", headers=support, json={"approve": False, "note": "改主意"})
    assert (twice.status_code, twice.json()["code"]) == (409, "NOT_AWAITING_REVIEW")
    rejected = await api.post(f"{review}/{bigger}/review", headers=support,
                              json={"approve": False, "note": "疑似刷单，待核查"})
    assert rejected.status_code == 200 and rejected.json()["status"] == "rejected"

    result = await result_skipping_time(temporal_env, run_id, CommissionRunProgress)
    assert (result.status, result.approved, result.rejected, result.awaiting_review) == ("final", 1, 1, 0)
    after = await api.post(f"{review}/{big}/review", headers=support, json={"approve": True})
    assert (after.status_code, after.json()["code"]) == (409, "PROCESS_ENDED")

    with sessions() as s:
        statements = {st.promoter_id: st for st in s.scalars(
            select(CommissionStatement).where(CommissionStatement.month == month))}
        assert set(statements) == {p for p, _ in promoters if p != quiet} | {demo.promoter_id}  # quiet: no ledger
        for pid, st in statements.items():   # every statement closes at the ledger's balance
            assert st.closing_fen == balance(s, rules.promoter_available(pid))
            assert st.opening_fen == 0 and st.withdrawn_fen == 0
        assert sum(st.closing_fen for st in statements.values()) == result.totals.closing_fen
        assert sum(st.released_fen for st in statements.values()) == result.totals.released_fen == 416_000
        assert (statements[small].released_fen, statements[small].status) == (13_000, "final")
        assert (statements[bigger].reversed_fen, statements[bigger].status) == (10_000, "rejected")
        assert statements[bigger].review_note == "疑似刷单，待核查"
        assert statements[negative].closing_fen == -500
        assert statements[big].reviewed_by_user_id is not None
        assert_books_balance(s)

    # a promoter sees its own statement only
    own = await api.get("/settlements/statements", params={"month": month}, headers=token(promoters[0][1], "promoter"))
    assert [st["promoter_id"] for st in own.json()] == [small]
    held = await api.get("/settlements/statements", params={"month": month, "status": "rejected"}, headers=support)
    assert [st["promoter_id"] for st in held.json()] == [bigger]

    await keep_run_history(temporal_env, run_id, None, "settlement_commission_reviewed")
    await keep_run_history(temporal_env, f"{run_id}-batches-00000", None, "settlement_commission_batches")

    # re-running the month makes nothing twice and reports the same totals
    before = books_snapshot(sessions)
    again = await rerun(temporal_env, settings, CommissionSettlementWorkflow.run,
                        CommissionRunInput(period=month, timezone=TZ, batch_size=2, review_above_fen=100_000),
                        run_id, CommissionRunProgress)
    assert (again.status, again.created, again.totals) == ("final", 0, result.totals)
    assert books_snapshot(sessions) == before

    # next month opens where this one closed: the negative balance is carried into it
    year, mon = map(int, month.split("-"))
    following = f"{year + mon // 12:04d}-{mon % 12 + 1:02d}"
    nxt = await rerun(temporal_env, settings, CommissionSettlementWorkflow.run,
                      CommissionRunInput(period=following, timezone=TZ, review_above_fen=100_000),
                      run_workflow_id("commission", following), CommissionRunProgress)
    assert nxt.status == "final" and nxt.totals.opening_fen == result.totals.closing_fen
    with sessions() as s:
        carried = s.scalar(select(CommissionStatement).where(CommissionStatement.month == following,
                                                             CommissionStatement.promoter_id == negative))
        assert (carried.opening_fen, carried.carried_negative_fen, carried.closing_fen) == (-500, 500, -500)


async def test_a_scheduled_commission_run_settles_last_month_once(api, temporal_env, sessions, settings):
    launcher = await temporal_env.client.start_workflow(
        CommissionSettlementWorkflow.run, CommissionRunInput(timezone=TZ),
        id=f"settlement-commission-scheduled-{uuid.uuid4().hex[:6]}", task_queue=settings.task_queue)
    first = await result_skipping_time(temporal_env, launcher.id, CommissionRunProgress)
    month = commission_period_at((await launcher.describe()).start_time, TZ)
    assert first.delegated_to == run_workflow_id("commission", month)
    assert first.status in ("final", "already_run")   # an earlier test may have run that month
    second = await temporal_env.client.start_workflow(
        CommissionSettlementWorkflow.run, CommissionRunInput(timezone=TZ),
        id=f"settlement-commission-scheduled-{uuid.uuid4().hex[:6]}", task_queue=settings.task_queue)
    repeat = await result_skipping_time(temporal_env, second.id, CommissionRunProgress)
    if commission_period_at((await second.describe()).start_time, TZ) == month:
        assert repeat.status == "already_run"
    await keep_run_history(temporal_env, launcher.id, None, "settlement_commission_scheduled")
    await end_workflows(temporal_env.client, [launcher.id, second.id, run_workflow_id("commission", month)])


@pytest.mark.timeout(600)
async def test_a_commission_run_over_100000_promoters_completes(api, temporal_env, sessions, settings, engine):
    """100,000 promoters with commission this month: 200 batches of 500 in 20 child workflows,
    every statement made once and their totals equal to the ledger."""
    n = int(os.environ.get("CHUCHUANG_SCALE_PROMOTERS", "100000"))
    began = asyncio.get_running_loop().time()
    seed_many_promoters(engine, n)
    seeded = asyncio.get_running_loop().time()
    month = this_month()
    wf_id = run_workflow_id("commission", month)
    try:
        await temporal_env.client.start_workflow(
            CommissionSettlementWorkflow.run, CommissionRunInput(period=month, timezone=TZ, review_above_fen=10**9),
            id=wf_id, task_queue=settings.task_queue)
        result = await result_skipping_time(temporal_env, wf_id, CommissionRunProgress, budget=500)
        took = asyncio.get_running_loop().time() - seeded
        batches = -(-n // 500)
        assert (result.status, result.batches_total, result.batches_done) == ("final", batches, batches)
        assert result.totals.statements == result.created == n
        with engine.connect() as c:
            ledger_total = c.execute(text("SELECT SUM(balance_fen) FROM ledger_accounts WHERE code LIKE :p"),
                                     {"p": "promoter:%:available"}).scalar()
            assert result.totals.closing_fen == result.totals.released_fen == ledger_total
            assert c.execute(text("SELECT count(*) FROM commission_statements WHERE month = :m"),
                             {"m": month}).scalar() == n
        history = await temporal_env.client.get_workflow_handle(wf_id).fetch_history()
        print(f"\n{n} promoters: seeded in {seeded - began:.1f}s, settled in {took:.1f}s, "
              f"run history {len(history.events)} events")
    finally:
        # so the fixture's clean-up does not look for 100,000 promoter workflows
        from db.all_models import Base

        with engine.begin() as c:
            c.execute(text(f"TRUNCATE {', '.join(t.name for t in Base.metadata.sorted_tables)} RESTART IDENTITY CASCADE"))


def seed_many_promoters(engine, n: int) -> None:
    """n promoters, each with one commission release, in one ledger transaction (hash chains
    computed as `ledger.post` computes them, so the ledger stays verifiable)."""
    from sqlalchemy import insert

    from activities.ledger import GENESIS
    from db.models import LedgerAccount
    from domain.ledger import entry_hash

    with engine.begin() as c:
        users = c.execute(text(
            "INSERT INTO users (role, openid, display_name, active) SELECT 'promoter', 'oSCALE' || g, 'p', true"
            " FROM generate_series(1, :n) g RETURNING id"), {"n": n}).scalars().all()
        promoter_ids = sorted(c.execute(text(
            "INSERT INTO promoters (user_id, nickname, status) SELECT u, 'p', 'active' FROM unnest(:users) u"
            " RETURNING id"), {"users": list(users)}).scalars().all())
        key = f"scale:{uuid.uuid4().hex[:8]}"
        txn = c.execute(text("INSERT INTO ledger_transactions (idempotency_key, kind, memo) VALUES (:k,"
                             " 'commission_release', 'scale test') RETURNING id"), {"k": key}).scalar()
        amounts = {pid: 100 + i % 997 for i, pid in enumerate(promoter_ids)}
        accounts, entries = [], []
        for pid, amount in amounts.items():
            code = rules.promoter_available(pid)
            digest = entry_hash(GENESIS, key=key, account=code, amount_fen=-amount, line=None, tier=None, rule="")
            accounts.append({"code": code, "normal_side": "credit", "owner_type": "promoter", "owner_id": pid,
                             "balance_fen": amount, "last_hash": digest})
            entries.append({"code": code, "amount": -amount, "prev": GENESIS, "hash": digest})
        total = sum(amounts.values())
        clearing_prev = c.execute(text("SELECT last_hash FROM ledger_accounts WHERE code = :c"),
                                  {"c": rules.CLEARING}).scalar() or GENESIS
        clearing_hash = entry_hash(clearing_prev, key=key, account=rules.CLEARING, amount_fen=total, line=None,
                                   tier=None, rule="")
        c.execute(text("INSERT INTO ledger_accounts (code, normal_side, owner_type, balance_fen, last_hash)"
                       " VALUES (:c, 'debit', 'platform', :t, :h) ON CONFLICT (code) DO UPDATE SET"
                       " balance_fen = ledger_accounts.balance_fen + :t, last_hash = :h"),
                  {"c": rules.CLEARING, "t": total, "h": clearing_hash})
        entries.append({"code": rules.CLEARING, "amount": total, "prev": clearing_prev, "hash": clearing_hash})
        c.execute(insert(LedgerAccount), accounts)
        ids = dict(c.execute(text("SELECT code, id FROM ledger_accounts WHERE code = ANY(:codes)"),
                             {"codes": [e["code"] for e in entries]}).all())
        c.execute(insert(LedgerEntry), [{"transaction_id": txn, "account_id": ids[e["code"]], "amount_fen": e["amount"],
                                         "rule": "", "prev_hash": e["prev"], "hash": e["hash"]} for e in entries])


# --- schedules on a real Temporal dev server ------------------------------------------------------
def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def quiet_stack():
    from rich.console import Console

    from cli import devstack

    return devstack.Stack(console=Console(file=open(os.devnull, "w")))  # noqa: SIM115


@pytest.mark.timeout(180)
async def test_schedules_are_created_once_and_start_the_right_period(
        tmp_path: Path, api, sessions, settings, sandbox_app):
    """Temporal's time-skipping test server does not implement schedules, so this starts the
    real dev server (as `chuchuang dev` does), creates the schedules twice, and lets the daily
    one start a run with a worker of ours attached."""
    from concurrent.futures import ThreadPoolExecutor

    from cli import devstack
    from workflows.schedules import (
        COMMISSION_SCHEDULE_ID,
        SUPPLIER_SCHEDULE_ID,
        SWEEP_SCHEDULE_ID,
        ensure_schedules,
        schedules,
    )
    from integrations.temporal import connect
    from integrations.wechatpay import WeChatPayClient, WeChatPayConfig
    from sandbox.credentials import load_or_create
    from worker import build_worker

    dev = settings.model_copy(update={"data_dir": tmp_path, "temporal_port": free_port(),
                                      "temporal_ui_port": free_port(), "task_queue": f"sched-{uuid.uuid4().hex[:6]}"})
    load_or_create(dev.sandbox_dir)  # the sandbox merchant kit, which `chuchuang dev` writes first
    stack = quiet_stack()
    try:
        server = devstack.start_temporal(stack, dev)
        await devstack.wait_for_temporal(dev.resolved_temporal_address, dev.temporal_namespace, timeout=60,
                                         server=server)
        await devstack.prepare_temporal(dev, server)           # what `chuchuang dev` does: creates them
        client = await connect(dev)
        expected = list(schedules(dev))
        assert {SUPPLIER_SCHEDULE_ID, COMMISSION_SCHEDULE_ID, SWEEP_SCHEDULE_ID} <= set(expected)
        assert await ensure_schedules(client, dev) == expected  # again: updated
        deadline = asyncio.get_running_loop().time() + 30
        while sorted([s.id async for s in await client.list_schedules()]) != sorted(expected):  # visibility catches up
            assert asyncio.get_running_loop().time() < deadline
            await asyncio.sleep(0.2)
        for schedule_id, hour in [(SUPPLIER_SCHEDULE_ID, 2), (COMMISSION_SCHEDULE_ID, 3)]:
            described = await client.get_schedule_handle(schedule_id).describe()
            assert described.schedule.spec.time_zone_name == TZ
            upcoming = described.info.next_action_times[0].astimezone(ZoneInfo(TZ))
            assert (upcoming.hour, upcoming.minute) == (hour, 0)
            if schedule_id == COMMISSION_SCHEDULE_ID:
                assert upcoming.day == 5
        with ThreadPoolExecutor(max_workers=8) as executor:
            # our sandbox's credentials (dev's data_dir only holds the dev server's database)
            pay = WeChatPayClient(WeChatPayConfig.from_settings(settings))
            async with build_worker(client, dev, executor, sessions=sessions, pay=pay):
                handle = client.get_schedule_handle(SUPPLIER_SCHEDULE_ID)
                await handle.trigger()
                deadline = asyncio.get_running_loop().time() + 60
                while not (await handle.describe()).info.recent_actions:
                    assert asyncio.get_running_loop().time() < deadline
                    await asyncio.sleep(0.2)
                action = (await handle.describe()).info.recent_actions[0]
                launched = client.get_workflow_handle(action.action.workflow_id, run_id=action.action.first_execution_run_id,
                                                      result_type=SupplierRunProgress)
                result = await asyncio.wait_for(launched.result(), 60)
                period = supplier_period_at(action.scheduled_at, TZ)
                assert result.delegated_to == run_workflow_id("supplier", period)
                assert result.status == "done"
                settled = await client.get_workflow_handle(run_workflow_id("supplier", period)).describe()
                assert settled.status == WorkflowExecutionStatus.COMPLETED
    finally:
        stack.stop(grace=5)


# --- the command line ------------------------------------------------------------------------------
async def test_cli_settle_follows_a_run_and_report_prints_the_figures(
        api, demo, temporal_env, sessions, settings, monkeypatch):
    from rich.console import Console
    from typer.testing import CliRunner

    from cli import main as cli
    from cli import settle as settlement_cli
    from integrations import temporal
    from workflows import schedules

    async def test_server(_settings):
        return temporal_env.client

    monkeypatch.setattr(temporal, "connect", test_server)
    monkeypatch.setattr(settings, "settlement_allow_open_periods", True)
    # Temporal's state outlives the database between tests: a run id of this test's own
    suffix = uuid.uuid4().hex[:6]
    monkeypatch.setattr(schedules, "run_workflow_id", lambda kind, period: f"settlement-{kind}-{period}-{suffix}")
    (p1, _), (p2, _) = make_promoters(sessions, 2)
    earn(sessions, p1, 4_321, "cli:1")
    earn(sessions, p2, 1_000, "cli:2")
    reverse(sessions, p2, 200, "cli:2:refund")
    console = Console(record=True, width=160)
    month = this_month()
    assert await settlement_cli.settle(settings, console, "commission", month, follow=True) == 0
    out = console.export_text()
    assert f"started settlement-commission-{month}-{suffix}" in out and "final: 2 statements, released 53.21" in out
    assert await settlement_cli.settle(settings, console, "commission", month, follow=False) == 0
    assert f"found settlement-commission-{month}-{suffix}" in console.export_text()
    assert await settlement_cli.settle(settings, console, "commission", "2026-13", follow=False) == 2

    printed = Console(record=True, width=160)
    assert settlement_cli.report(settings, printed, month) == 0
    table = printed.export_text()
    assert "commission released" in table and "53.21" in table and "2 statement(s), 0 awaiting review" in table
    assert settlement_cli.report(settings, printed, "yesterday") == 2

    runner = CliRunner()
    helped = runner.invoke(cli.app, ["settle", "--help"])
    assert helped.exit_code == 0 and "--period" in helped.output and "--kind" in helped.output
    assert runner.invoke(cli.app, ["report", "--help"]).exit_code == 0
