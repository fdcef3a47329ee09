"""Orders under a partner having a bad day: WeChat Pay answers 500/429 at random (seeded),
notifications arrive twice or with a bad signature first. Every order still ends paid exactly
once, with one WeChat Pay transaction per out_trade_no, and the books balance."""

from __future__ import annotations

import asyncio

from sqlalchemy import func, select

from db.models import LedgerTransaction, Order, Payment, User
from domain.order_status import OrderStatus
from tests.helpers import assert_books_balance, place, wait_status

FAULTS = {
    "seed": 7,
    "endpoints": [
        {"path": "/v3/pay/transactions/jsapi", "error_rate": 0.25, "error_status": 500},
        {"path": "/v3/pay/transactions/jsapi", "error_rate": 0.15, "error_status": 429},
    ],
    "notifications": {"event_types": ["TRANSACTION.*"], "duplicate_rate": 1.0, "invalid_signature_rate": 0.4},
}


async def test_orders_converge_with_one_charge_each_under_partner_faults(api, sandbox, demo, token, temporal_env,
                                                                         sessions):
    with sessions.begin() as s:
        buyers = [User(role="buyer", openid=f"oFAULT{i:022d}") for i in range(5)]
        s.add_all(buyers)
    assert (await sandbox.put("/sandbox/faults", json=FAULTS)).status_code == 200
    try:
        placed = await asyncio.gather(*[place(api, token(b.id, "buyer"), demo, quantity=1) for b in buyers])
        assert all(r.status_code == 201 for r in placed), [r.text for r in placed]
        numbers = [r.json()["order_no"] for r in placed]
        for no in numbers:
            await sandbox.post(f"/sandbox/pay/{no}")
        for no in numbers:
            await wait_status(temporal_env.client, no, OrderStatus.PAID, timeout=30)
        stats = (await sandbox.get("/sandbox/faults")).json()["stats"]
    finally:
        await sandbox.delete("/sandbox/faults")
    assert stats, "the faults were never triggered: this test would prove nothing"

    for no in numbers:  # WeChat Pay holds exactly one transaction per business key
        txn = (await sandbox.get(f"/sandbox/pay/{no}")).json()
        assert txn["trade_state"] == "SUCCESS", txn
    with sessions() as s:
        assert s.scalar(select(func.count()).select_from(Payment).where(Payment.status == "SUCCESS")) == 5
        assert s.scalar(select(func.count()).select_from(Order).where(Order.status == "PAID")) == 5
        assert s.scalar(select(func.count()).select_from(LedgerTransaction)
                        .where(LedgerTransaction.kind == "payment")) == 5
        assert_books_balance(s)


REFUND_FAULTS = {
    "seed": 11,
    "endpoints": [
        {"path": "/v3/refund/domestic/refunds", "method": "POST", "error_rate": 0.3, "error_status": 500},
        {"path": "/v3/refund/domestic/refunds", "method": "POST", "error_rate": 0.2, "error_status": 429},
        {"path": "/v3/refund/domestic/refunds/*", "method": "GET", "error_rate": 0.3, "error_status": 500},
    ],
    "notifications": {"event_types": ["REFUND.*"], "duplicate_rate": 1.0, "invalid_signature_rate": 0.4,
                      "out_of_order": True},
}


async def test_refunds_converge_with_one_refund_each_under_partner_faults(api, sandbox, demo, token, temporal_env,
                                                                          sessions, stack):
    from datetime import timedelta

    from activities.ledger import balance
    from db.order_models import Refund
    from domain import ledger as rules
    from domain.refunds import RefundStatus
    from tests.helpers import pay, wait_refund

    with sessions.begin() as s:
        buyers = [User(role="buyer", openid=f"oRFAULT{i:021d}") for i in range(4)]
        s.add_all(buyers)
    numbers = []
    for b in buyers:
        placed = await place(api, token(b.id, "buyer"), demo, quantity=1)
        numbers.append(placed.json()["order_no"])
        await pay(sandbox, numbers[-1])
    for no in numbers:
        await wait_status(temporal_env.client, no, OrderStatus.PAID)

    assert (await sandbox.put("/sandbox/faults", json=REFUND_FAULTS)).status_code == 200
    try:
        asked = await asyncio.gather(*[
            api.post(f"/orders/{no}/refunds", headers=token(b.id, "buyer") | {"Idempotency-Key": "cancel"},
                     json={"kind": "cancel"}) for no, b in zip(numbers, buyers, strict=True)])
        assert all(r.status_code == 201 for r in asked), [r.text for r in asked]
        refund_nos = [r.json()["refund_no"] for r in asked]
        # a client retrying its request gets the same refund
        retried = await api.post(f"/orders/{numbers[0]}/refunds",
                                 headers=token(buyers[0].id, "buyer") | {"Idempotency-Key": "cancel"},
                                 json={"kind": "cancel"})
        assert retried.json()["refund_no"] == refund_nos[0]
        pending = set(refund_nos)
        for _ in range(40):
            # the sandbox settles refunds and holds their notices: release them newest first,
            # and let the workflows' own polls (every 10 minutes) find any notice still missing
            await asyncio.sleep(0.5)
            released = await sandbox.post("/sandbox/notifications/release")
            assert released.status_code == 200, released.text
            await temporal_env.sleep(timedelta(minutes=11))
            for refund_no in list(pending):
                progress = await temporal_env.client.get_workflow_handle(f"refund-{refund_no}").query("progress")
                if progress and progress["status"] == "REFUNDED":
                    pending.discard(refund_no)
            if not pending:
                break
        for refund_no in refund_nos:
            await wait_refund(temporal_env.client, refund_no, RefundStatus.REFUNDED, timeout=30)
        stats = (await sandbox.get("/sandbox/faults")).json()["stats"]
    finally:
        await sandbox.delete("/sandbox/faults")
    assert stats, "the faults were never triggered: this test would prove nothing"

    for no, refund_no in zip(numbers, refund_nos, strict=True):
        at_wechat = await stack.state.pay.query_refund(refund_no)
        assert (at_wechat.status, at_wechat.out_trade_no, at_wechat.amount.refund) == ("SUCCESS", no, 19_900)
        await wait_status(temporal_env.client, no, OrderStatus.REFUNDED)
    with sessions() as s:
        assert s.scalar(select(func.count()).select_from(Refund)) == 4
        assert s.scalar(select(func.count()).select_from(LedgerTransaction)
                        .where(LedgerTransaction.kind == "refund")) == 4
        assert balance(s, rules.CLEARING) == 0
        assert_books_balance(s)
