"""Reconciliation of a pre-sale order: two payments ({no}D, {no}B) and, when it is refunded,
two WeChat Pay refunds ({refund_no}B, {refund_no}D) on the bill against one refund in the books.
Its own module: it reconciles today, as the first reconciliation test does, on a fresh
Temporal server (a day's run id is the day)."""

from __future__ import annotations

from sqlalchemy import select

from db.reconciliation_models import ReconciliationBillRow
from domain.order_status import OrderStatus
from domain.refunds import RefundStatus
from tests.helpers import assert_books_balance, make_user, pay, wait_refund, wait_status
from tests.test_presale import _deposit_paid, _window_open
from tests.test_reconciliation import publish_now, run_day, sandbox, today  # noqa: F401 - sandbox: fixture


async def test_a_pre_sale_order_refunded_from_both_payments_reconciles_clean(
        api, sandbox, demo, token, temporal_env, sessions):
    """A pre-sale order is two payments ({no}D, {no}B) and its refund two WeChat Pay refunds
    ({refund_no}B, {refund_no}D) on the bill; in the books it is one refund: still clean."""
    operator = token(make_user(sessions, "operator", "finance-presale"), "operator")
    order_no, buyer, _ = await _deposit_paid(api, sandbox, temporal_env, demo, token)
    await _window_open(temporal_env, order_no)
    assert (await api.post(f"/orders/{order_no}/balance", headers=buyer)).status_code == 200
    await pay(sandbox, order_no + "B")
    await wait_status(temporal_env.client, order_no, OrderStatus.PAID)
    asked = await api.post(f"/orders/{order_no}/refunds", headers=buyer, json={"kind": "cancel", "reason": "不要了"})
    assert asked.status_code == 201, asked.text
    refund_no = asked.json()["refund_no"]
    await wait_refund(temporal_env.client, refund_no, RefundStatus.REFUNDED)
    await publish_now(sandbox)

    day = today()
    clean = await run_day(api, temporal_env, operator, day)
    report = (await api.get(f"/reconciliations/{day}", headers=operator)).json()
    assert (clean.result.status, report["differences"]) == ("clean", []), report["differences"]
    assert (report["totals"]["bill"]["refunds"], report["totals"]["bill"]["net_fen"]) == (2, 0)
    with sessions() as s:
        kept = {(r.kind, r.key) for r in s.scalars(select(ReconciliationBillRow))}
        assert kept == {("payment", order_no + "D"), ("payment", order_no + "B"),
                        ("refund", refund_no + "B"), ("refund", refund_no + "D")}
        assert_books_balance(s)
