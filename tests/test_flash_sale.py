"""Flash sales (秒杀): a burst of buyers on a few units sells each unit exactly once and answers
everyone at once; limits and windows are clear answers; unpaid units go back to the sale and
unsold ones to the SKU when it ends; paid flash orders book money like any other order."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select

from db.flash_models import FlashSale, FlashSaleClaim
from db.models import Order, Sku, User
from domain.flash_sales import workflow_id as flash_workflow_id
from tests.helpers import (
    ADDRESS,
    result_skipping_time,
)


async def wait_payable(temporal_env, order_no: str) -> None:
    """Until the order's WeChat Pay order exists (a flash claim is answered before it does)."""
    from workflows.order import OrderWorkflow, workflow_id

    handle = temporal_env.client.get_workflow_handle(workflow_id(order_no))
    for _ in range(300):
        progress = await handle.query(OrderWorkflow.progress)
        if progress is not None and progress.prepay is not None:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"order {order_no} never became payable")


def buyers(sessions, n: int, tag: str) -> list[int]:
    with sessions.begin() as s:
        users = [User(role="buyer", openid=f"oFLASH{tag}{i:018d}") for i in range(n)]
        s.add_all(users)
        s.flush()
        return [u.id for u in users]


async def open_sale(api, demo, token, *, quantity: int, price_fen: int = 9_900, per_buyer_limit: int = 1,
                    starts_in: timedelta = timedelta(0), lasts: timedelta = timedelta(hours=1)) -> dict:
    now = datetime.now(UTC)
    r = await api.post("/flash-sales", headers=token(demo.supplier_user_id, "supplier"), json={
        "sku_id": demo.sku_ids[0], "price_fen": price_fen, "quantity": quantity,
        "per_buyer_limit": per_buyer_limit, "starts_at": (now + starts_in - timedelta(seconds=1)).isoformat(),
        "ends_at": (now + starts_in + lasts).isoformat()})
    assert r.status_code == 201, r.text
    return r.json()


async def buy(api, token, user_id: int, sale_id: int, demo, quantity: int = 1):
    return await api.post(f"/flash-sales/{sale_id}/orders", headers=token(user_id, "buyer"),
                          json={"quantity": quantity, "window_id": demo.window_id, "address": ADDRESS})


async def test_a_burst_of_buyers_on_a_few_units_sells_each_unit_once(api, demo, token, sessions, temporal_env):
    with sessions() as s:
        stock_before = s.get(Sku, demo.sku_ids[0]).stock
    sale = await open_sale(api, demo, token, quantity=20)
    with sessions() as s:
        assert s.get(Sku, demo.sku_ids[0]).stock == stock_before - 20  # set aside at creation

    crowd = buyers(sessions, 200, "B")
    answers = await asyncio.gather(*(buy(api, token, b, sale["id"], demo) for b in crowd))
    won = [r for r in answers if r.status_code == 202]
    assert len(won) == 20, sorted({r.text for r in answers})[:3]
    assert {r.json()["code"] for r in answers if r.status_code != 202} == {"FLASH_SALE_SOLD_OUT"}
    with sessions() as s:
        assert s.get(FlashSale, sale["id"]).sold == 20
        assert s.scalar(select(func.count()).select_from(FlashSaleClaim)) == 20
        assert s.get(Sku, demo.sku_ids[0]).stock == stock_before - 20  # claims never touch the SKU's stock
    got = await api.get(f"/flash-sales/{sale['id']}", headers=token(crowd[0], "buyer"))
    assert got.json()["left"] == 0 and got.json()["status"] == "running"

    with sessions() as s:  # each winner's order is placed at the flash price, nobody else's
        placed = dict(s.execute(select(Order.order_no, Order.total_fen)).all())
    assert set(placed) <= {r.json()["order_no"] for r in won}
    assert set(placed.values()) <= {9_900}
    await stop_orders(api, temporal_env, sessions, sale["id"])


async def stop_orders(api, temporal_env, sessions, *sale_ids: int) -> None:
    """End the orders (and sales) a test leaves running."""
    from tests.helpers import end_workflows
    from workflows.order import workflow_id

    with sessions() as s:
        numbers = list(s.scalars(select(Order.order_no)))
    await end_workflows(temporal_env.client, [workflow_id(n) for n in numbers] + [
        flash_workflow_id(i) for i in sale_ids])


async def end_sale(temporal_env, sale_id: int) -> int:
    return await result_skipping_time(temporal_env, flash_workflow_id(sale_id), int)


async def test_limits_and_windows_are_clear_answers_and_write_nothing(api, demo, token, sessions, temporal_env):
    early = await open_sale(api, demo, token, quantity=5, starts_in=timedelta(hours=2))
    (buyer,) = buyers(sessions, 1, "L")
    r = await buy(api, token, buyer, early["id"], demo)
    assert r.status_code == 409 and r.json()["code"] == "FLASH_SALE_NOT_STARTED"

    sale = await open_sale(api, demo, token, quantity=5, per_buyer_limit=2)
    first = await buy(api, token, buyer, sale["id"], demo, quantity=2)
    assert first.status_code == 202, first.text
    r = await buy(api, token, buyer, sale["id"], demo)
    assert r.status_code == 409 and r.json()["code"] == "FLASH_SALE_LIMIT_REACHED"
    r = await buy(api, token, buyer, sale["id"], demo, quantity=3)
    assert r.status_code == 409 and r.json()["code"] == "FLASH_SALE_LIMIT_REACHED"
    with sessions() as s:
        assert s.get(FlashSale, sale["id"]).sold == 2  # the refused claims took nothing
    r = await api.post("/flash-sales", headers=token(demo.supplier_user_id, "supplier"), json={
        "sku_id": demo.sku_ids[0], "price_fen": 19_900, "quantity": 1, "starts_at": datetime.now(UTC).isoformat(),
        "ends_at": (datetime.now(UTC) + timedelta(hours=1)).isoformat()})
    assert r.status_code == 422 and r.json()["code"] == "PRICE_NOT_LOWER"
    r = await api.post("/flash-sales", headers=token(demo.buyer_user_id, "buyer"), json={
        "sku_id": demo.sku_ids[0], "price_fen": 100, "quantity": 1, "starts_at": datetime.now(UTC).isoformat(),
        "ends_at": (datetime.now(UTC) + timedelta(hours=1)).isoformat()})
    assert r.status_code == 403
    assert (await api.get("/flash-sales/999999", headers=token(buyer, "buyer"))).status_code == 404
    await stop_orders(api, temporal_env, sessions, early["id"], sale["id"])


async def test_refusals_come_from_the_sale_row_and_a_winners_retry_still_gets_its_claim(
        api, demo, token, sessions, temporal_env):
    """Once sold out, a claim is refused from the sale's own row, before the order's other checks
    (here: a window that does not exist would be a 404 otherwise); the winner retrying with the
    same Idempotency-Key still gets its claim back, not a refusal."""
    sale = await open_sale(api, demo, token, quantity=1)
    winner, late = buyers(sessions, 2, "R")
    headers = {**token(winner, "buyer"), "Idempotency-Key": "flash-retry-0001"}
    body = {"quantity": 1, "window_id": demo.window_id, "address": ADDRESS}
    first = await api.post(f"/flash-sales/{sale['id']}/orders", headers=headers, json=body)
    assert first.status_code == 202, first.text
    again = await api.post(f"/flash-sales/{sale['id']}/orders", headers=headers, json=body)
    assert again.status_code == 202 and again.json()["order_no"] == first.json()["order_no"]
    r = await api.post(f"/flash-sales/{sale['id']}/orders", headers=token(late, "buyer"),
                       json={**body, "window_id": 987_654_321})
    assert r.status_code == 409 and r.json()["code"] == "FLASH_SALE_SOLD_OUT"
    r = await api.post(f"/flash-sales/{sale['id']}/orders", headers=token(winner, "buyer"), json=body)
    assert r.status_code == 409 and r.json()["code"] in {"FLASH_SALE_SOLD_OUT", "FLASH_SALE_LIMIT_REACHED"}
    with sessions() as s:
        assert s.get(FlashSale, sale["id"]).sold == 1
        assert s.scalar(select(func.count()).select_from(FlashSaleClaim)
                        .where(FlashSaleClaim.flash_sale_id == sale["id"])) == 1
    await stop_orders(api, temporal_env, sessions, sale["id"])
