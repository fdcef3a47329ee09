"""拼团 group buying, with time skipped: a group that fills sends every member's order into
fulfilment (commission only from then on); a group that does not fill in time refunds every
member in full with the stock back and the books balanced; a burst of joins on the last place
gives it to exactly one buyer and a clear answer to the rest, none of whom is charged."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select, update

from db.group_models import GroupSeat
from db.models import LedgerAccount, LedgerEntry, Order, OrderLine, Payment, Sku
from domain import ledger as rules
from domain.group_buy import GroupDecision, GroupStatus
from domain.group_buy import workflow_id as group_workflow_id
from domain.order_status import OrderStatus
from tests.helpers import (
    ADDRESS,
    assert_books_balance,
    end_workflows,
    keep_history,
    keep_run_history,
    pay,
    result_skipping_time,
    run_to_end,
    wait_status,
)
from tests.test_flash_sale import buyers, wait_payable
from workflows.order import workflow_id as order_workflow_id

GROUP_PRICE = 15_900


async def offer(api, demo, token, *, size: int, minutes: int = 60) -> dict:
    now = datetime.now(UTC)
    r = await api.post("/group-deals", headers=token(demo.supplier_user_id, "supplier"), json={
        "sku_id": demo.sku_ids[0], "group_price_fen": GROUP_PRICE, "group_size": size,
        "time_limit_minutes": minutes, "starts_at": (now - timedelta(seconds=1)).isoformat(),
        "ends_at": (now + timedelta(days=1)).isoformat()})
    assert r.status_code == 201, r.text
    return r.json()


async def open_group(api, demo, token, buyer: int, deal_id: int):
    return await api.post(f"/group-deals/{deal_id}/groups", headers=token(buyer, "buyer"),
                          json={"window_id": demo.window_id, "address": ADDRESS})


async def join(api, demo, token, buyer: int, group_id: int):
    return await api.post(f"/groups/{group_id}/orders", headers=token(buyer, "buyer"),
                          json={"window_id": demo.window_id, "address": ADDRESS})


async def pay_when_payable(temporal_env, sandbox, sessions, order_no: str) -> None:
    """Pay, and wait until the group has counted the payment: time skipped before that could
    reach the group's deadline while the payment notice is still on its way."""
    await wait_payable(temporal_env, order_no)
    await pay(sandbox, order_no)

    def counted() -> bool:
        with sessions() as s:
            return s.scalar(select(GroupSeat.status).where(GroupSeat.order_no == order_no)) == "paid"

    for _ in range(300):
        if counted():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"the payment of {order_no} was never counted by its group")


def pending_commission(sessions, order_no: str) -> int:
    with sessions() as s:
        return -(s.scalar(select(func.coalesce(func.sum(LedgerEntry.amount_fen), 0))
                          .join(LedgerAccount, LedgerAccount.id == LedgerEntry.account_id)
                          .where(LedgerEntry.order_no == order_no,
                                 LedgerAccount.code.like("promoter:%:pending"))) or 0)


async def started_group(api, sandbox, demo, token, temporal_env, sessions, *, size: int, tag: str):
    """A deal and a group whose opener has paid; the opener and the group's id."""
    deal = await offer(api, demo, token, size=size)
    (opener,) = buyers(sessions, 1, tag)
    opened = await open_group(api, demo, token, opener, deal["id"])
    assert opened.status_code == 202, opened.text
    assert opened.json()["unit_price_fen"] == GROUP_PRICE
    group_id = opened.json()["group_id"]

    # nobody joins a group before its opener has paid
    (early,) = buyers(sessions, 1, tag + "E")
    refused = await join(api, demo, token, early, group_id)
    assert refused.status_code == 409 and refused.json()["code"] == "GROUP_NOT_OPEN", refused.text

    await pay_when_payable(temporal_env, sandbox, sessions, opened.json()["order_no"])
    await wait_status(temporal_env.client, opened.json()["order_no"], OrderStatus.GROUPING)
    return opened.json()["order_no"], group_id


async def test_a_group_that_fills_sends_every_order_into_fulfilment(api, sandbox, demo, token, temporal_env, sessions):
    first, group_id = await started_group(api, sandbox, demo, token, temporal_env, sessions, size=3, tag="F")
    shown = (await api.get(f"/groups/{group_id}", headers=token(demo.buyer_user_id, "buyer"))).json()
    assert shown["status"] == "forming" and shown["paid"] == 1 and shown["places_left"] == 2
    assert shown["joined"] is False and "members" not in shown  # a shared link never lists who is in it
    assert pending_commission(sessions, first) == 0  # paid, but nothing earned before the group forms

    shipped = await api.post(f"/orders/{first}/shipments", headers=token(demo.supplier_user_id, "supplier"),
                             json={"carrier": "shunfeng", "waybill_no": "SFGROUP0001"})
    assert shipped.status_code == 409, shipped.text  # nothing leaves before the group forms

    others = buyers(sessions, 2, "FJ")
    joined = [await join(api, demo, token, b, group_id) for b in others]
    assert [r.status_code for r in joined] == [202, 202], [r.text for r in joined]
    again = await join(api, demo, token, others[0], group_id)
    assert again.status_code == 409 and again.json()["code"] == "GROUP_ALREADY_JOINED"
    numbers = [first] + [r.json()["order_no"] for r in joined]
    for order_no in numbers[1:]:
        await pay_when_payable(temporal_env, sandbox, sessions, order_no)

    decision = await result_skipping_time(temporal_env, group_workflow_id(group_id), GroupDecision)
    assert decision.status == GroupStatus.FORMED and sorted(decision.members) == sorted(numbers)
    for order_no in numbers:
        await wait_status(temporal_env.client, order_no, OrderStatus.PAID)
    # commission of 15 % on what was paid (tier 1 by default), now pending for each order
    assert [pending_commission(sessions, n) for n in numbers] == [GROUP_PRICE * 1_500 // 10_000] * 3
    with sessions() as s:
        assert set(s.scalars(select(Order.total_fen).where(Order.order_no.in_(numbers)))) == {GROUP_PRICE}
        assert_books_balance(s)
    full = await join(api, demo, token, buyers(sessions, 1, "FL")[0], group_id)
    assert full.status_code == 409 and full.json()["code"] == "GROUP_ENDED"
    shipped = await api.post(f"/orders/{first}/shipments", headers=token(demo.supplier_user_id, "supplier"),
                             json={"carrier": "shunfeng", "waybill_no": "SFGROUP0001"})
    assert shipped.status_code == 200, shipped.text
    await keep_run_history(temporal_env, group_workflow_id(group_id), None, "group_buy_formed")
    await end_workflows(temporal_env.client, [order_workflow_id(n) for n in numbers])


async def test_a_group_that_does_not_fill_refunds_every_member(api, sandbox, demo, token, temporal_env, sessions):
    with sessions() as s:
        stock_before = s.get(Sku, demo.sku_ids[0]).stock
    first, group_id = await started_group(api, sandbox, demo, token, temporal_env, sessions, size=3, tag="X")
    (second, idle) = buyers(sessions, 2, "XJ")
    paid_join = await join(api, demo, token, second, group_id)
    idle_join = await join(api, demo, token, idle, group_id)  # takes a place but never pays
    assert paid_join.status_code == 202 and idle_join.status_code == 202
    paid_no, idle_no = paid_join.json()["order_no"], idle_join.json()["order_no"]
    await pay_when_payable(temporal_env, sandbox, sessions, paid_no)
    await wait_status(temporal_env.client, paid_no, OrderStatus.GROUPING)

    decision = await result_skipping_time(temporal_env, group_workflow_id(group_id), GroupDecision)
    assert decision.status == GroupStatus.FAILED and sorted(decision.members) == sorted([first, paid_no])
    for order_no in (first, paid_no):
        ended = await run_to_end(temporal_env, order_no)
        assert ended.status == OrderStatus.REFUNDED, ended
    idle_end = await run_to_end(temporal_env, idle_no)  # its payment window closed: cancelled, never charged
    assert idle_end.status == OrderStatus.CANCELLED

    with sessions() as s:
        assert s.get(Sku, demo.sku_ids[0]).stock == stock_before  # every unit back on sale
        refunds = dict(s.execute(select(Payment.order_no, Payment.status)
                                 .where(Payment.order_no.in_([first, paid_no, idle_no]))).all())
        assert refunds[idle_no] == "CLOSED"
        held = s.scalar(select(LedgerAccount.balance_fen).where(LedgerAccount.code == rules.ORDERS_HELD))
        assert held == 0
        assert s.scalar(select(func.count()).select_from(LedgerEntry).join(
            LedgerAccount, LedgerAccount.id == LedgerEntry.account_id).where(
            LedgerAccount.code.like("promoter:%"))) == 0  # nothing was ever earned
        clearing = s.scalar(select(LedgerAccount.balance_fen).where(LedgerAccount.code == rules.CLEARING))
        assert clearing == 0  # 2 × 15,900 in, 2 × 15,900 back
        assert_books_balance(s)
    await keep_history(temporal_env, first, "order_group_failed_refunded")
    await keep_run_history(temporal_env, group_workflow_id(group_id), None, "group_buy_failed")


async def test_a_burst_on_the_last_place_gives_it_to_exactly_one(api, sandbox, demo, token, temporal_env, sessions):
    first, group_id = await started_group(api, sandbox, demo, token, temporal_env, sessions, size=3, tag="B")
    (second,) = buyers(sessions, 1, "BS")
    assert (await join(api, demo, token, second, group_id)).status_code == 202

    crowd = buyers(sessions, 12, "BC")
    answers = await asyncio.gather(*(join(api, demo, token, b, group_id) for b in crowd))
    won = [r for r in answers if r.status_code == 202]
    assert len(won) == 1, sorted({r.text for r in answers})[:3]
    assert {r.json()["code"] for r in answers if r.status_code != 202} == {"GROUP_FULL"}
    with sessions() as s:
        seats = s.scalar(select(func.count()).select_from(GroupSeat).where(GroupSeat.group_id == group_id))
        assert seats == 3  # never N+1
        winners = {r.json()["order_no"] for r in won}
        assert set(s.scalars(select(Order.order_no))) <= {first} | winners | set(
            s.scalars(select(GroupSeat.order_no).where(GroupSeat.group_id == group_id)))
        # the refused buyers were never asked to pay: no order, no payment of theirs exists
        assert s.scalar(select(func.count()).select_from(Order).where(
            Order.buyer_user_id.in_([b for b, r in zip(crowd, answers) if r.status_code != 202]))) == 0
    shown = (await api.get(f"/groups/{group_id}", headers=token(crowd[0], "buyer"))).json()
    assert shown["places_left"] == 0
    with sessions() as s:
        numbers = list(s.scalars(select(Order.order_no)))
    await end_workflows(temporal_env.client, [order_workflow_id(n) for n in numbers] + [group_workflow_id(group_id)])


async def test_with_platform_fill_a_group_one_short_forms(api, sandbox, demo, token, temporal_env, sessions, settings,
                                                          monkeypatch):
    monkeypatch.setattr(settings, "group_platform_fill", True)
    first, group_id = await started_group(api, sandbox, demo, token, temporal_env, sessions, size=2, tag="P")
    decision = await result_skipping_time(temporal_env, group_workflow_id(group_id), GroupDecision)
    assert decision.status == GroupStatus.FORMED and decision.platform_filled and decision.members == [first]
    await wait_status(temporal_env.client, first, OrderStatus.PAID)
    assert pending_commission(sessions, first) == GROUP_PRICE * 1_500 // 10_000
    shown = (await api.get(f"/groups/{group_id}", headers=token(demo.buyer_user_id, "buyer"))).json()
    assert shown["status"] == "formed" and shown["platform_filled"] is True and shown["paid"] == 1
    await end_workflows(temporal_env.client, [order_workflow_id(first)])


def test_the_groups_fate_by_its_paid_members():
    from domain.group_buy import decide

    assert decide(paid=3, size=3, deadline_passed=False, platform_fill=False) == (GroupStatus.FORMED, False)
    assert decide(paid=2, size=3, deadline_passed=False, platform_fill=True) is None
    assert decide(paid=2, size=3, deadline_passed=True, platform_fill=False) == (GroupStatus.FAILED, False)
    assert decide(paid=2, size=3, deadline_passed=True, platform_fill=True) == (GroupStatus.FORMED, True)
    assert decide(paid=1, size=3, deadline_passed=True, platform_fill=True) == (GroupStatus.FAILED, False)


async def test_a_member_who_cancels_before_the_group_forms_is_refunded_and_the_place_reopens(
        api, sandbox, demo, token, temporal_env, sessions):
    first, group_id = await started_group(api, sandbox, demo, token, temporal_env, sessions, size=3, tag="C")
    (quitter, newcomer, last) = buyers(sessions, 3, "CQ")
    joined = await join(api, demo, token, quitter, group_id)
    quitter_no = joined.json()["order_no"]
    await pay_when_payable(temporal_env, sandbox, sessions, quitter_no)
    await wait_status(temporal_env.client, quitter_no, OrderStatus.GROUPING)

    # a paid order can always be cancelled before shipment, group or not; before its group forms, whole
    with sessions() as s:
        line = s.scalar(select(OrderLine.id).where(OrderLine.order_no == quitter_no))
    with sessions.begin() as s:  # two units, so that half of it could be asked for
        s.execute(update(OrderLine).where(OrderLine.id == line).values(quantity=2))
    half = await api.post(f"/orders/{quitter_no}/refunds", headers=token(quitter, "buyer"),
                          json={"kind": "cancel", "lines": [{"line_id": line, "quantity": 1}]})
    assert half.status_code == 409 and half.json()["code"] == "GROUP_ORDER_WHOLE", half.text
    with sessions.begin() as s:
        s.execute(update(OrderLine).where(OrderLine.id == line).values(quantity=1))
    asked = await api.post(f"/orders/{quitter_no}/refunds", headers=token(quitter, "buyer"), json={"kind": "cancel"})
    assert asked.status_code == 201, asked.text
    await wait_status(temporal_env.client, quitter_no, OrderStatus.REFUNDED)  # no time skipped: the group runs on
    shown = (await api.get(f"/groups/{group_id}", headers=token(newcomer, "buyer"))).json()
    assert (shown["paid"], shown["places_left"]) == (1, 2)  # the place is free again

    numbers = [first]
    for buyer in (newcomer, last):
        r = await join(api, demo, token, buyer, group_id)
        assert r.status_code == 202, r.text
        numbers.append(r.json()["order_no"])
        await pay_when_payable(temporal_env, sandbox, sessions, r.json()["order_no"])
    decision = await result_skipping_time(temporal_env, group_workflow_id(group_id), GroupDecision)
    assert decision.status == GroupStatus.FORMED and sorted(decision.members) == sorted(numbers)
    assert pending_commission(sessions, quitter_no) == 0  # the refunded member never earned anyone anything
    with sessions() as s:
        assert_books_balance(s)
    await end_workflows(temporal_env.client, [order_workflow_id(n) for n in numbers])


async def test_a_cancel_under_way_when_the_group_fails_is_the_only_refund(api, sandbox, demo, token, temporal_env,
                                                                          sessions):
    first, group_id = await started_group(api, sandbox, demo, token, temporal_env, sessions, size=3, tag="R")
    (quitter,) = buyers(sessions, 1, "RQ")
    quitter_no = (await join(api, demo, token, quitter, group_id)).json()["order_no"]
    await pay_when_payable(temporal_env, sandbox, sessions, quitter_no)
    await wait_status(temporal_env.client, quitter_no, OrderStatus.GROUPING)
    asked = await api.post(f"/orders/{quitter_no}/refunds", headers=token(quitter, "buyer"), json={"kind": "cancel"})
    assert asked.status_code == 201, asked.text

    # time skips past the group's deadline while the cancel may still be under way
    decision = await result_skipping_time(temporal_env, group_workflow_id(group_id), GroupDecision)
    assert decision.status == GroupStatus.FAILED
    for order_no in (quitter_no, first):
        ended = await run_to_end(temporal_env, order_no)
        assert ended.status == OrderStatus.REFUNDED and ended.failure is None, ended
    with sessions() as s:
        assert s.scalar(select(func.count()).select_from(Payment).where(Payment.order_no == quitter_no)) == 1
        assert s.scalar(select(LedgerAccount.balance_fen).where(LedgerAccount.code == rules.CLEARING)) == 0
        assert_books_balance(s)
