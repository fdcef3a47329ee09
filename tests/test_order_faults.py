"""Orders under a partner having a bad day: WeChat Pay answers 500/429 at random (seeded),
notifications arrive twice or with a bad signature first. Every order still ends paid exactly
once, with one WeChat Pay transaction per out_trade_no, and the books balance."""

from __future__ import annotations

import asyncio

from sqlalchemy import func, select

from chuchuang.db.models import LedgerTransaction, Order, Payment, User
from chuchuang.domain.order_status import OrderStatus
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
