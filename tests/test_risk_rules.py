"""Risk rules: three confirmed fake-trade findings close a promoter's window (two do not); an
anomaly flag on an order freezes only that order's commission — not released at completion,
in no statement — until support clears every flag on it (released then) or confirms one
(forfeited to the platform). Books balance throughout."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from sqlalchemy import select

from activities.ledger import balance
from db.bonus_models import WindowClosure
from db.models import OrderEvent, OrderLine, User, WindowProduct
from db.catalog_models import Notification
from db.risk_models import RiskFlag
from domain import ledger as rules
from domain.money import apply_bps
from domain.order_status import OrderStatus
from domain.refunds import share_of
from domain.settlement import CommissionRunProgress
from tests.helpers import (
    assert_books_balance,
    make_user,
    pay,
    place,
    result_skipping_time,
    return_one_unit,
    run_to_end,
    ship_and_deliver,
    wait_status,
)

PRICE, SKU_BPS = 19_900, 1_500


async def test_three_confirmed_findings_close_the_window_two_do_not(api, demo, token, sessions):
    support = token(make_user(sessions, "support", "kefu-ft"), "support")
    promoter = token(demo.promoter_user_id, "promoter")
    base = f"/risk/promoters/{demo.promoter_id}/fake-trade-findings"
    ids = []
    for n in range(4):
        r = await api.post(base, headers=support, json={"note": f"刷单 {n}", "order_nos": [f"CCFAKE{n}"]})
        assert r.status_code == 201, r.text
        ids.append(r.json()["id"])
    assert (await api.post(base, headers=promoter, json={"note": "x"})).status_code == 403
    assert (await api.post("/risk/promoters/999999/fake-trade-findings", headers=support,
                           json={"note": "x"})).status_code == 404

    async def review(finding_id: int, status: str):
        r = await api.post(f"/risk/fake-trade-findings/{finding_id}/review", headers=support,
                           json={"status": status, "note": "已核实"})
        assert r.status_code == 200, r.text
        return r.json()

    assert (await review(ids[0], "dismissed"))["window_closed"] is False       # dismissed: does not count
    assert (await review(ids[1], "confirmed"))["confirmed_findings"] == 1
    second = await review(ids[2], "confirmed")
    assert (second["confirmed_findings"], second["window_closed"]) == (2, False)
    with sessions() as s:  # two findings: the window is open, its products on show
        assert s.get(WindowClosure, demo.window_id) is None
        assert [wp.status for wp in s.scalars(select(WindowProduct).where(
            WindowProduct.window_id == demo.window_id))] == ["mounted"]
    order = await place(api, token(demo.buyer_user_id, "buyer"), demo, quantity=1)
    assert order.status_code == 201, order.text

    third = await review(ids[3], "confirmed")
    assert (third["confirmed_findings"], third["window_closed"]) == (3, True)
    again = await api.post(f"/risk/fake-trade-findings/{ids[3]}/review", headers=support,
                           json={"status": "dismissed", "note": "x"})
    assert (again.status_code, again.json()["code"]) == (409, "ALREADY_REVIEWED")
    with sessions() as s:
        assert s.get(WindowClosure, demo.window_id).confirmed_findings == 3
        items = list(s.scalars(select(WindowProduct).where(WindowProduct.window_id == demo.window_id)))
        assert [(wp.status, wp.off_reason) for wp in items] == [("off_sale", "window_closed")]
        told = list(s.scalars(select(Notification.kind).where(  # in the outbox, for the promoter's user
            Notification.recipient_user_id == demo.promoter_user_id, Notification.subject_type == "promoter")))
        assert "window_closed" in told
    remount = await api.post("/windows/me/products", headers=promoter, json={"product_id": demo.product_id})
    assert (remount.status_code, remount.json()["code"]) == (409, "WINDOW_CLOSED")
    refused = await place(api, token(demo.buyer_user_id, "buyer"), demo, quantity=1)
    assert (refused.status_code, refused.json()["code"]) == (422, "WINDOW_CLOSED"), refused.text
    listed = (await api.get(base, headers=support)).json()
    assert [f["status"] for f in listed] == ["dismissed", "confirmed", "confirmed", "confirmed"]
    with sessions() as s:
        assert_books_balance(s)


def _buyers(sessions, n: int) -> list[int]:
    with sessions.begin() as s:
        users = [User(role="buyer", openid=f"oFROZEN{i:021d}") for i in range(n)]
        s.add_all(users)
        s.flush()
        return [u.id for u in users]


async def test_a_flagged_orders_commission_is_frozen_until_support_clears_or_confirms(
        api, sandbox, demo, token, temporal_env, sessions, settings, monkeypatch):
    supplier = token(demo.supplier_user_id, "supplier")
    support = token(make_user(sessions, "support", "kefu-fz"), "support")
    buyers = _buyers(sessions, 4)
    orders = []
    for n, buyer in enumerate(buyers):  # four accounts on one phone: the 3rd and 4th orders are flagged
        r = await place(api, token(buyer, "buyer") | {"X-Device-Id": "ios-FROZEN"}, demo, quantity=2)
        assert r.status_code == 201, r.text
        order_no = r.json()["order_no"]
        orders.append(order_no)
        await pay(sandbox, order_no)
        await wait_status(temporal_env.client, order_no, OrderStatus.PAID)
        await ship_and_deliver(api, sandbox, temporal_env.client, supplier, order_no, f"SFFZ{n:08d}")
        assert (await run_to_end(temporal_env, order_no)).status == OrderStatus.COMPLETED
    clean, _, cleared, confirmed = orders
    c = apply_bps(2 * PRICE, SKU_BPS)          # one order's commission
    half = share_of(c, 2, 0, 1)                 # what one returned unit takes back
    available, pending = rules.promoter_available(demo.promoter_id), rules.promoter_pending(demo.promoter_id)
    with sessions() as s:
        flags = {no: list(s.scalars(select(RiskFlag).where(RiskFlag.order_no == no).order_by(RiskFlag.id)))
                 for no in orders}
        assert flags[clean] == [] and flags[cleared] and flags[confirmed]
        # only the flagged orders' commission is held back; the rest is released as usual
        assert balance(s, available) == 2 * c and balance(s, pending) == 2 * c
        frozen = s.scalar(select(OrderEvent.note).where(OrderEvent.order_no == cleared,
                                                        OrderEvent.idempotency_key.like("%commission:frozen")))
        assert frozen and "frozen" in frozen
        assert_books_balance(s)

    # frozen commission is in no statement
    monkeypatch.setattr(settings, "settlement_allow_open_periods", True)
    operator = token(make_user(sessions, "operator", "ops-fz"), "operator")
    month = datetime.now(UTC).astimezone(ZoneInfo(settings.settlement_timezone)).strftime("%Y-%m")
    run = await api.post("/settlements/runs", headers=operator, json={"kind": "commission", "period": month})
    assert run.status_code == 201, run.text
    result = await result_skipping_time(temporal_env, run.json()["run_id"], CommissionRunProgress)
    assert (result.status, result.totals.released_fen) == ("final", 2 * c)

    # a refund on a frozen order takes the commission back from pending
    line_of = {}
    with sessions() as s:
        for no in (cleared, confirmed):
            line_of[no] = s.scalar(select(OrderLine.id).where(OrderLine.order_no == no))
    await return_one_unit(api, temporal_env.client, token(buyers[2], "buyer"), supplier, cleared,
                          line_of[cleared], "YTFZ00000001")
    with sessions() as s:
        assert balance(s, available) == 2 * c and balance(s, pending) == 2 * c - half
        assert_books_balance(s)

    async def review(flag_id: int, status: str):
        r = await api.post(f"/risk/flags/{flag_id}/review", headers=support, json={"status": status, "note": "核查"})
        assert r.status_code == 200, r.text

    # clearing one of two flags on an order is not enough; clearing the last releases it
    assert len(flags[cleared]) == 2  # the same device and the same door
    await review(flags[cleared][0].id, "cleared")
    with sessions() as s:
        assert balance(s, available) == 2 * c
    await review(flags[cleared][1].id, "cleared")
    with sessions() as s:
        assert balance(s, available) == 3 * c - half and balance(s, pending) == c
    # confirming a flag gives the commission back to the platform
    with sessions() as s:
        revenue_before = balance(s, rules.PLATFORM_REVENUE)
    await review(flags[confirmed][0].id, "confirmed")
    for other in flags[confirmed][1:]:
        await review(other.id, "cleared")   # a later clear on a forfeited order releases nothing
    with sessions() as s:
        assert balance(s, available) == 3 * c - half and balance(s, pending) == 0
        assert balance(s, rules.PLATFORM_REVENUE) == revenue_before + c
        assert_books_balance(s)
    # a refund after the forfeit takes nothing from the promoter: the platform returns it
    await return_one_unit(api, temporal_env.client, token(buyers[3], "buyer"), supplier, confirmed,
                          line_of[confirmed], "YTFZ00000002")
    with sessions() as s:
        assert balance(s, available) == 3 * c - half and balance(s, pending) == 0
        assert_books_balance(s)
    detail = (await api.get("/wallet/entries", headers=token(demo.promoter_user_id, "promoter"))).json()
    assert sum(e["amount_fen"] for e in detail if e["kind"] == "commission_forfeit") == -c
