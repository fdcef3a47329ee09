"""Money and refunds you can trust (issue 15), end to end through the API, the WeChat Pay and
logistics sandboxes and the workflows, time skipped: a refund saved but never started is
started; a review nobody decides is approved at its deadline; a cancel or 7-day return cannot
be rejected; an order whose tracking never arrives completes by the shipment clock; a failure
at any step after payment gives the money back; a forged payment signal is never recorded.
Every test ends with the books balanced and Σ balances = payments − refunds."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy import func, select
from temporalio.client import WorkflowUpdateFailedError

from activities.ledger import balance
from activities.refunds import open_refund
from db.models import LedgerTransaction, Order, OrderEvent, OrderLine, Payment, Sku
from db.order_models import Refund
from db.risk_models import RiskFlag
from domain import ledger as rules
from domain.order_status import OrderStatus
from domain.orders import OrderProgress, PaymentNotice
from domain.refunds import (
    RefundDecision,
    RefundKind,
    RefundLineRequest,
    RefundOutcome,
    RefundStatus,
    RefundSweepInput,
    RefundSweepProgress,
    compensation_refund_no,
)
from domain.risk import RiskKind
from tests.helpers import (
    assert_books_balance,
    keep_history,
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
from workflows.order import OrderWorkflow, workflow_id
from workflows.refund import RefundWorkflow
from workflows.refund import workflow_id as refund_workflow_id
from workflows.refund_sweep import RefundSweepWorkflow

PRICE, COMMISSION_BPS = 19_900, 1_500


def _line_id(sessions, order_no: str) -> int:
    with sessions() as s:
        return s.scalar(select(OrderLine.id).where(OrderLine.order_no == order_no))


async def _paid_order(api, sandbox, temporal_env, buyer, demo, quantity: int = 1) -> str:
    order_no = (await place(api, buyer, demo, quantity=quantity)).json()["order_no"]
    await pay(sandbox, order_no)
    await wait_status(temporal_env.client, order_no, OrderStatus.PAID)
    return order_no


def _save_refund_and_crash(sessions, settings, demo, order_no: str, kind: RefundKind, lines=None) -> str:
    """What the API does before it starts the refund's workflow, and then it dies."""
    refund_no = f"RF{uuid.uuid4().hex[:16].upper()}"
    with sessions.begin() as s:
        refund, _ = open_refund(s, refund_no=refund_no, order_no=order_no, buyer_user_id=demo.buyer_user_id,
                                kind=kind, lines=lines, reason="", rules_=settings.refund_rules)
        refund.created_at = datetime.now(UTC) - timedelta(hours=1)
    return refund_no


async def _sweep(temporal_env, settings) -> RefundSweepProgress:
    wf_id = f"refunds-sweep-{uuid.uuid4().hex[:6]}"
    await temporal_env.client.start_workflow(
        RefundSweepWorkflow.run, RefundSweepInput(stranded_after=timedelta(minutes=10),
                                                  timings=settings.refund_timings()),
        id=wf_id, task_queue=settings.task_queue)
    # polled without skipping time: a skip would fire the swept refunds' own timers
    handle = temporal_env.client.get_workflow_handle(wf_id, result_type=RefundSweepProgress)
    for _ in range(300):
        progress = await handle.query(RefundSweepWorkflow.progress)
        if progress.done:
            break
        await asyncio.sleep(0.05)
    assert progress.done, progress
    progress = await handle.result()   # finished: nothing left to skip to
    await keep_run_history(temporal_env, wf_id, None, "refund_sweep")
    return progress


async def _pending_timers(client, wf_id: str) -> set[int]:
    started: set[int] = set()
    async for event in client.get_workflow_handle(wf_id).fetch_history_events():
        if event.HasField("timer_started_event_attributes"):
            started.add(event.event_id)
        for done in ("timer_fired_event_attributes", "timer_canceled_event_attributes"):
            if event.HasField(done):
                started.discard(getattr(event, done).started_event_id)
    return started


# --- 1. refunds always start ------------------------------------------------------------------
async def test_a_refund_saved_but_never_started_is_started_and_holds_completion_without_a_timer_loop(
        api, sandbox, demo, token, temporal_env, sessions, settings):
    buyer, supplier = token(demo.buyer_user_id, "buyer"), token(demo.supplier_user_id, "supplier")
    order_no = await _paid_order(api, sandbox, temporal_env, buyer, demo, quantity=2)
    await ship_and_deliver(api, sandbox, temporal_env.client, supplier, order_no, "SF5000000001")
    assert (await api.post(f"/orders/{order_no}/confirm-receipt", headers=buyer)).status_code == 200
    await wait_status(temporal_env.client, order_no, OrderStatus.RECEIVED)
    # the API saved a return of one unit, then died before starting its workflow
    refund_no = _save_refund_and_crash(sessions, settings, demo, order_no, RefundKind.RETURN,
                                       lines=[RefundLineRequest(line_id=_line_id(sessions, order_no), quantity=1)])
    # the refund window closes: the order cannot complete over an open refund, and waits for
    # that refund's own workflow to tell it — on no timer
    await temporal_env.sleep(settings.refund_window + timedelta(hours=1))
    with sessions() as s:
        assert s.get(Order, order_no).status == OrderStatus.RECEIVED
    assert await _pending_timers(temporal_env.client, workflow_id(order_no)) == set()

    swept = await _sweep(temporal_env, settings)
    assert (swept.started, swept.already_running) == (1, 0)
    await wait_refund(temporal_env.client, refund_no, RefundStatus.AWAITING_RETURN)
    assert (await _sweep(temporal_env, settings)).started == 0       # started once, marked
    await api.post(f"/refunds/{refund_no}/return-parcel", headers=buyer,
                   json={"carrier": "yuantong", "waybill_no": "YTBACK500001"})
    await wait_refund(temporal_env.client, refund_no, RefundStatus.RETURN_SHIPPED)
    await api.post(f"/refunds/{refund_no}/confirm-return", headers=supplier)
    assert (await run_to_end(temporal_env, order_no)).status == OrderStatus.COMPLETED
    with sessions() as s:
        assert s.get(Refund, refund_no).status == RefundStatus.REFUNDED
        assert balance(s, rules.CLEARING) == PRICE
        assert_books_balance(s)
    await keep_history(temporal_env, order_no, "order_completed_after_swept_refund")


async def test_a_retry_without_idempotency_key_finds_the_open_refund_and_starts_it(
        api, sandbox, demo, token, temporal_env, sessions, settings):
    buyer = token(demo.buyer_user_id, "buyer")
    order_no = await _paid_order(api, sandbox, temporal_env, buyer, demo)
    refund_no = _save_refund_and_crash(sessions, settings, demo, order_no, RefundKind.CANCEL)
    again = await api.post(f"/orders/{order_no}/refunds", headers=buyer, json={"kind": "cancel"})
    assert again.status_code == 201, again.text
    assert again.json()["refund_no"] == refund_no               # not NOTHING_TO_REFUND
    await wait_refund(temporal_env.client, refund_no, RefundStatus.REFUNDED)
    assert (await run_to_end(temporal_env, order_no)).status == OrderStatus.REFUNDED
    assert (await _sweep(temporal_env, settings)).started == 0   # the retry started it
    with sessions() as s:
        assert s.get(Refund, refund_no).workflow_started_at is not None
        assert s.get(Sku, demo.sku_ids[0]).stock == 100
        assert balance(s, rules.CLEARING) == 0
        assert_books_balance(s)


# --- 2. refunds are always honoured ----------------------------------------------------------
async def test_a_review_left_undecided_is_approved_at_its_deadline(
        api, sandbox, demo, token, temporal_env, sessions, settings):
    buyer, supplier = token(demo.buyer_user_id, "buyer"), token(demo.supplier_user_id, "supplier")
    order_no = await _paid_order(api, sandbox, temporal_env, buyer, demo)
    await ship_and_deliver(api, sandbox, temporal_env.client, supplier, order_no, "SF5000000002")
    asked = await api.post(f"/orders/{order_no}/refunds", headers=buyer,
                           json={"kind": "quality_refund", "reason": "破损"})
    assert asked.status_code == 201 and asked.json()["status"] == "REVIEWING", asked.text
    refund_no = asked.json()["refund_no"]
    progress = await wait_refund(temporal_env.client, refund_no, RefundStatus.REVIEWING)
    shown = (await api.get(f"/refunds/{refund_no}", headers=buyer)).json()
    assert shown["review_deadline_at"] is not None and shown["reviewed_by"] is None
    assert datetime.fromisoformat(shown["review_deadline_at"]) == progress.review_deadline_at
    left = progress.review_deadline_at - progress.updated_at     # REFUND_REVIEW_DEADLINE from the review's start
    assert settings.refund_review_deadline - timedelta(minutes=1) < left <= settings.refund_review_deadline

    outcome = await result_skipping_time(temporal_env, refund_workflow_id(refund_no), RefundOutcome)
    assert outcome.status == RefundStatus.REFUNDED
    shown = (await api.get(f"/refunds/{refund_no}", headers=buyer)).json()
    assert shown["reviewed_by"] == "deadline: approved automatically" and shown["status"] == "REFUNDED"
    assert (await run_to_end(temporal_env, order_no)).status == OrderStatus.REFUNDED
    with sessions() as s:
        assert balance(s, rules.CLEARING) == 0
        assert balance(s, rules.promoter_pending(demo.promoter_id)) == 0
        assert_books_balance(s)
    await keep_run_history(temporal_env, refund_workflow_id(refund_no), None, "refund_review_auto_approved")


async def test_a_cancel_or_a_7_day_return_cannot_be_rejected_only_flagged(
        api, sandbox, demo, token, temporal_env, sessions):
    buyer, supplier = token(demo.buyer_user_id, "buyer"), token(demo.supplier_user_id, "supplier")
    support = token(make_user(sessions, "support", "kefu-2"), "support")
    # a large cancel before shipment: flagged for support, refunded at once
    first = await _paid_order(api, sandbox, temporal_env, buyer, demo, quantity=3)    # 59 700 > 50 000
    cancel = (await api.post(f"/orders/{first}/refunds", headers=buyer, json={"kind": "cancel"})).json()
    assert cancel["status"] == "REFUNDING" and cancel["review_reasons"] == ""
    refused = await api.post(f"/refunds/{cancel['refund_no']}/review", headers=support, json={"approve": False})
    assert refused.status_code == 409 and refused.json()["code"] == "NOT_REJECTABLE"
    await wait_refund(temporal_env.client, cancel["refund_no"], RefundStatus.REFUNDED)

    # a large 7-day return after delivery: never reviewed, never rejectable
    second = await _paid_order(api, sandbox, temporal_env, buyer, demo, quantity=3)
    await ship_and_deliver(api, sandbox, temporal_env.client, supplier, second, "SF5000000003")
    ret = (await api.post(f"/orders/{second}/refunds", headers=buyer, json={"kind": "return"})).json()
    assert ret["status"] == "AWAITING_RETURN" and ret["review_reasons"] == ""
    await wait_refund(temporal_env.client, ret["refund_no"], RefundStatus.AWAITING_RETURN)
    refused = await api.post(f"/refunds/{ret['refund_no']}/review", headers=support,
                             json={"approve": False, "note": "不同意"})
    assert refused.status_code == 409 and refused.json()["code"] == "NOT_REJECTABLE"
    # the workflow refuses too, whoever reaches Temporal
    handle = temporal_env.client.get_workflow_handle(refund_workflow_id(ret["refund_no"]))
    with pytest.raises(WorkflowUpdateFailedError) as direct:
        await handle.execute_update(RefundWorkflow.review, RefundDecision(approve=False, reviewer_user_id=1))
    assert direct.value.cause.type == "NOT_REJECTABLE"
    with sessions() as s:
        flagged = set(s.scalars(select(RiskFlag.subject_id).where(RiskFlag.kind == RiskKind.LARGE_REFUND)))
        assert flagged == {cancel["refund_no"], ret["refund_no"]}
    await api.post(f"/refunds/{ret['refund_no']}/return-parcel", headers=buyer,
                   json={"carrier": "yuantong", "waybill_no": "YTBACK500003"})
    await wait_refund(temporal_env.client, ret["refund_no"], RefundStatus.RETURN_SHIPPED)
    await api.post(f"/refunds/{ret['refund_no']}/confirm-return", headers=supplier)
    for order_no in (first, second):
        assert (await run_to_end(temporal_env, order_no)).status == OrderStatus.REFUNDED
    with sessions() as s:
        assert s.scalar(select(func.count()).select_from(Refund).where(Refund.status == "REFUNDED")) == 2
        assert balance(s, rules.CLEARING) == 0
        assert_books_balance(s)


# --- 3. orders complete without a carrier ----------------------------------------------------
async def test_tracking_that_never_arrives_completes_by_the_shipment_clock(
        api, sandbox, demo, token, temporal_env, sessions, settings):
    buyer, supplier = token(demo.buyer_user_id, "buyer"), token(demo.supplier_user_id, "supplier")
    order_no = await _paid_order(api, sandbox, temporal_env, buyer, demo, quantity=2)
    shipped = await api.post(f"/orders/{order_no}/shipments", headers=supplier,
                             json={"carrier": "shunfeng", "waybill_no": "SF5000000004"})
    assert shipped.status_code == 200, shipped.text
    answer = shipped.json()            # the state after the shipment is recorded
    assert answer["status"] == "SHIPPED" and answer["shipped_suppliers"] == [demo.supplier_id]
    clock = datetime.fromisoformat(answer["auto_confirm_at"])
    extended = await api.post(f"/orders/{order_no}/extend-receipt", headers=buyer)
    assert extended.status_code == 200, extended.text
    assert datetime.fromisoformat(extended.json()["auto_confirm_at"]) - clock == settings.receipt_extension
    twice = await api.post(f"/orders/{order_no}/extend-receipt", headers=buyer)
    assert twice.status_code == 409 and twice.json()["code"] == "ALREADY_EXTENDED"

    # the carrier never reports anything: the order is confirmed and completes all the same
    assert (await run_to_end(temporal_env, order_no)).status == OrderStatus.COMPLETED
    commission = 2 * PRICE * COMMISSION_BPS // 10_000
    with sessions() as s:
        notes = s.scalars(select(OrderEvent.note).where(OrderEvent.order_no == order_no)).all()
        assert "auto-confirmed" in notes and "delivered (carrier signed)" not in notes
        assert balance(s, rules.promoter_available(demo.promoter_id)) == commission
        assert balance(s, rules.CLEARING) == 2 * PRICE
        assert_books_balance(s)
    await keep_history(temporal_env, order_no, "order_completed_by_ship_clock")


async def test_a_subscription_after_the_last_carrier_event_still_gets_the_state(
        api, sandbox, demo, token, temporal_env, sessions):
    buyer, supplier = token(demo.buyer_user_id, "buyer"), token(demo.supplier_user_id, "supplier")
    order_no = await _paid_order(api, sandbox, temporal_env, buyer, demo)
    # the parcel was signed for before the supplier told us it shipped
    before = await sandbox.post("/sandbox/logistics/advance",
                                json={"company": "shunfeng", "number": "SF5000000005", "state": "3"})
    assert before.json()["subscribed"] is False
    shipped = await api.post(f"/orders/{order_no}/shipments", headers=supplier,
                             json={"carrier": "shunfeng", "waybill_no": "SF5000000005"})
    assert shipped.status_code == 200, shipped.text
    await wait_status(temporal_env.client, order_no, OrderStatus.DELIVERED)   # pushed on subscribe
    assert (await run_to_end(temporal_env, order_no)).status == OrderStatus.COMPLETED
    with sessions() as s:
        assert "delivered (carrier signed)" in s.scalars(
            select(OrderEvent.note).where(OrderEvent.order_no == order_no)).all()
        assert_books_balance(s)


# --- 4. no workflow ever ends holding money ---------------------------------------------------
FAILURES = {
    # step → SQL making that step's record impossible to write (dropped after the test)
    "record_payment": "BEFORE INSERT ON ledger_transactions FOR EACH ROW WHEN (NEW.kind = 'payment')",
    "record_shipment": "BEFORE INSERT ON shipments FOR EACH ROW",
    "record_tracking": "BEFORE UPDATE ON shipments FOR EACH ROW WHEN (NEW.tracking_state IS NOT NULL)",
    "mark_received": "BEFORE INSERT ON order_events FOR EACH ROW WHEN (right(NEW.idempotency_key, 9) = ':received')",
    "complete_order": "BEFORE INSERT ON ledger_transactions FOR EACH ROW WHEN (NEW.kind = 'order_settlement')",
    "amount_mismatch": None,   # the order's own record says another amount than WeChat Pay took
}


@pytest.fixture
def fail_step(engine, settings, monkeypatch):
    # a failing step is given up after 2 minutes here (an hour by default)
    monkeypatch.setattr(settings, "paid_step_give_up_after", timedelta(minutes=2))
    made = []

    def make(step: str) -> None:
        when = FAILURES[step]
        if when is None:
            return
        with engine.begin() as c:
            c.execute(sa.text("CREATE OR REPLACE FUNCTION test_injected_failure() RETURNS trigger AS "
                              "$$ BEGIN RAISE EXCEPTION 'injected failure'; END $$ LANGUAGE plpgsql"))
            table = when.split(" ON ")[1].split()[0]
            c.exec_driver_sql(f"CREATE TRIGGER test_injected_failure {when} EXECUTE FUNCTION test_injected_failure()")
            made.append(table)

    yield make
    with engine.begin() as c:
        for table in made:
            c.execute(sa.text(f"DROP TRIGGER IF EXISTS test_injected_failure ON {table}"))


@pytest.mark.parametrize("step", list(FAILURES))
async def test_a_failure_at_any_step_after_payment_gives_the_money_back(
        step, fail_step, api, sandbox, demo, token, temporal_env, sessions, stack):
    buyer, supplier = token(demo.buyer_user_id, "buyer"), token(demo.supplier_user_id, "supplier")
    order_no = (await place(api, buyer, demo, quantity=2)).json()["order_no"]
    before_payment = step in ("record_payment", "amount_mismatch")
    if step == "amount_mismatch":
        with sessions.begin() as s:
            s.get(Order, order_no).total_fen += 1
    if before_payment:
        fail_step(step)
    await pay(sandbox, order_no)
    if not before_payment:
        await wait_status(temporal_env.client, order_no, OrderStatus.PAID)
        if step == "record_shipment":
            fail_step(step)
        # the ship call answers once the parcel is recorded: here, once the order gave up on it
        shipping = asyncio.create_task(api.post(f"/orders/{order_no}/shipments", headers=supplier,
                                                json={"carrier": "shunfeng", "waybill_no": "SF5100000001"}))
        if step != "record_shipment":
            shipped = await shipping
            assert shipped.status_code == 200, shipped.text
            if step == "record_tracking":
                fail_step(step)
            await sandbox.post("/sandbox/logistics/advance",
                               json={"company": "shunfeng", "number": "SF5100000001", "state": "3"})
            if step != "record_tracking":
                await wait_status(temporal_env.client, order_no, OrderStatus.DELIVERED)
                fail_step(step)
                if step == "mark_received":
                    await api.post(f"/orders/{order_no}/confirm-receipt", headers=buyer)

    result = await run_to_end(temporal_env, order_no)
    assert result.failure and result.failure.startswith("PAYMENT_NOT_KEPT"), result
    if step == "record_shipment":
        assert (await shipping).json()["status"] == OrderStatus.REFUNDED
    refund_no = compensation_refund_no(order_no)
    at_wechat = await stack.state.pay.query_refund(refund_no)
    assert (at_wechat.status, at_wechat.amount.refund) == ("SUCCESS", 2 * PRICE)     # all of it back
    shipped_goods = step not in ("record_payment", "amount_mismatch", "record_shipment")
    with sessions() as s:
        order = s.get(Order, order_no)
        assert order.status == (OrderStatus.CANCELLED if before_payment else OrderStatus.REFUNDED)
        assert order.open_refunds == 0
        assert s.get(Refund, refund_no).status == RefundStatus.REFUNDED
        assert s.get(Sku, demo.sku_ids[0]).stock == (98 if shipped_goods else 100)   # unshipped stock released
        assert s.scalar(select(Payment.status).where(Payment.order_no == order_no)) == "SUCCESS"
        assert balance(s, rules.CLEARING) == 0
        assert balance(s, rules.ORDERS_HELD) == 0
        assert balance(s, rules.promoter_pending(demo.promoter_id)) == 0
        assert balance(s, rules.promoter_available(demo.promoter_id)) == 0
        assert_books_balance(s)
    if step == "record_payment":
        await keep_history(temporal_env, order_no, "order_payment_not_kept")


# --- 5. only WeChat Pay says an order is paid ------------------------------------------------
async def test_a_forged_payment_signal_is_not_recorded(api, sandbox, demo, token, temporal_env, sessions):
    buyer = token(demo.buyer_user_id, "buyer")
    forged_only = (await place(api, buyer, demo, quantity=1)).json()["order_no"]
    then_paid = (await place(api, buyer, demo, quantity=1)).json()["order_no"]
    for order_no in (forged_only, then_paid):
        handle = temporal_env.client.get_workflow_handle(workflow_id(order_no))
        await handle.signal(OrderWorkflow.payment_notified, PaymentNotice(
            out_trade_no=order_no, transaction_id="4200000000202612030000000001", trade_state="SUCCESS",
            amount_fen=PRICE))
    for order_no in (forged_only, then_paid):
        handle = temporal_env.client.get_workflow_handle(workflow_id(order_no), result_type=OrderProgress)
        for _ in range(200):
            progress = await handle.query(OrderWorkflow.progress)
            if progress.ignored_payment_signals:
                break
            await temporal_env.sleep(timedelta(milliseconds=50))
        assert progress.ignored_payment_signals == 1 and progress.status == OrderStatus.PENDING_PAYMENT

    real = await pay(sandbox, then_paid)
    await wait_status(temporal_env.client, then_paid, OrderStatus.PAID)
    assert (await run_to_end(temporal_env, forged_only)).status == OrderStatus.CANCELLED
    with sessions() as s:
        assert s.get(Order, then_paid).transaction_id == real["transaction_id"]
        assert s.scalar(select(Payment.status).where(Payment.order_no == forged_only)) == "CLOSED"
        assert set(s.scalars(select(LedgerTransaction.order_no))) == {then_paid}   # the real payment only
        assert s.get(Order, forged_only).paid_at is None
        assert balance(s, rules.CLEARING) == PRICE
        assert_books_balance(s)
    await keep_history(temporal_env, forged_only, "order_forged_payment_ignored")


# --- 8. long loops stay small ----------------------------------------------------------------
async def test_a_refund_wechat_pay_keeps_processing_continues_as_new(
        api, sandbox, sandbox_app, demo, token, temporal_env, sessions, settings, monkeypatch):
    monkeypatch.setattr(settings, "refund_polls_per_run", 2)
    monkeypatch.setattr(sandbox_app.state.sandbox, "settle_delay", None)   # WeChat Pay sits on it
    buyer = token(demo.buyer_user_id, "buyer")
    order_no = await _paid_order(api, sandbox, temporal_env, buyer, demo)
    refund_no = (await api.post(f"/orders/{order_no}/refunds", headers=buyer, json={"kind": "cancel"})).json()[
        "refund_no"]
    handle = temporal_env.client.get_workflow_handle(refund_workflow_id(refund_no))
    first_run = (await handle.describe()).run_id
    for _ in range(200):
        if (await sandbox.get(f"/sandbox/pay/{order_no}")).json()["trade_state"] == "REFUND":
            break
        await asyncio.sleep(0.05)
    for _ in range(7):   # a poll period at a time: one long skip can outlast the test server's RPC
        await temporal_env.sleep(settings.refund_poll_every)
    described = await handle.describe()
    assert described.run_id != first_run                              # continued as new, at least once
    assert described.raw_description.workflow_execution_info.history_length < 60
    settled = await sandbox.post(f"/sandbox/refunds/{refund_no}/settle")
    assert settled.status_code == 200, settled.text
    await wait_refund(temporal_env.client, refund_no, RefundStatus.REFUNDED)
    assert (await run_to_end(temporal_env, order_no)).status == OrderStatus.REFUNDED
    with sessions() as s:
        assert balance(s, rules.CLEARING) == 0
        assert_books_balance(s)


async def test_a_forged_late_payment_is_not_booked(api, demo, token, temporal_env, sessions, settings):
    """Someone starts a late-payment refund for an order that was never paid: WeChat Pay's own
    record says there is nothing, so nothing is booked and nothing refunded."""
    from domain.refunds import RefundInput, late_payment_refund_no

    order_no = (await place(api, token(demo.buyer_user_id, "buyer"), demo, quantity=1)).json()["order_no"]
    assert (await run_to_end(temporal_env, order_no)).status == OrderStatus.CANCELLED
    refund_no = late_payment_refund_no(order_no)
    forged = PaymentNotice(out_trade_no=order_no, transaction_id="4200000000202612030000000002",
                           trade_state="SUCCESS", amount_fen=PRICE)
    await temporal_env.client.start_workflow(
        RefundWorkflow.run, RefundInput(refund_no=refund_no, order_no=order_no, kind=RefundKind.LATE_PAYMENT,
                                        amount_fen=PRICE, needs_return=False, timings=settings.refund_timings(),
                                        late_payment=forged),
        id=refund_workflow_id(refund_no), task_queue=settings.task_queue)
    outcome = await result_skipping_time(temporal_env, refund_workflow_id(refund_no), RefundOutcome)
    assert outcome.status == RefundStatus.CLOSED
    await keep_run_history(temporal_env, refund_workflow_id(refund_no), None, "refund_late_payment_forged")
    with sessions() as s:
        assert s.get(Refund, refund_no) is None
        assert s.scalar(select(func.count()).select_from(LedgerTransaction)) == 0
        assert s.get(Order, order_no).status == OrderStatus.CANCELLED
        assert_books_balance(s)
