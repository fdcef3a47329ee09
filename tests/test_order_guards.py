"""What must never happen: forged payments, oversold stock, peeking at other buyers' orders,
bad input getting past the front door."""

from __future__ import annotations

import asyncio

from sqlalchemy import func, select, update

from db.models import LedgerTransaction, Order, Sku, User
from domain.order_status import OrderStatus
from tests.helpers import ADDRESS, assert_books_balance, place, wait_status


async def test_stock_never_goes_below_zero_under_concurrent_orders(api, demo, token, sessions):
    """A flash sale: 200 buyers at once on the last 5 units sell exactly 5."""
    with sessions.begin() as s:
        s.execute(update(Sku).where(Sku.id == demo.sku_ids[0]).values(stock=5))
        buyers = [User(role="buyer", openid=f"oBUYER{i:022d}") for i in range(200)]
        s.add_all(buyers)
    results = await asyncio.gather(*[
        place(api, token(b.id, "buyer"), demo, quantity=1) for b in buyers])
    # under load some answers come before the WeChat Pay order (202): their outcome is fetched
    # where the buyer's app fetches it, GET /orders/{no}/payment (200 placed, 409 OUT_OF_STOCK)
    results = await asyncio.gather(*[
        _settled(api, token(b.id, "buyer"), r) for b, r in zip(buyers, results, strict=True)])
    codes = sorted(r.status_code for r in results)
    assert codes.count(201) == 5, [r.text for r in results if r.status_code != 409][:5]
    assert all(r.json()["code"] == "OUT_OF_STOCK" for r in results if r.status_code != 201)
    with sessions() as s:
        assert s.get(Sku, demo.sku_ids[0]).stock == 0
        # orders that did not get stock left nothing behind
        assert s.scalar(select(func.count()).select_from(Order)) == 5


async def _settled(api, headers, placed):
    if placed.status_code != 202:
        return placed
    while True:
        fetched = await api.get(placed.json()["payment_url"], headers=headers)
        if fetched.status_code == 200:
            fetched.status_code = 201  # placed, as a 201 would have said
            return fetched
        if fetched.status_code != 503:
            return fetched
        await asyncio.sleep(0.5)


async def test_forged_payment_notification_is_refused(api, demo, token, temporal_env, sessions, settings):
    from sandbox.credentials import load_or_create
    from tests.forgery import forged_notification

    order_no = (await place(api, token(demo.buyer_user_id, "buyer"), demo)).json()["order_no"]
    genuine = load_or_create(settings.sandbox_dir)
    for variant in ("wrong_key", "tampered_body", "stale_timestamp", "unsigned"):
        headers, body = forged_notification(genuine, order_no, 2 * 19_900, variant)
        r = await api.post("/webhooks/wechatpay", content=body, headers=headers)
        assert r.status_code == 401, (variant, r.text)
        assert r.json()["code"] == "FAIL"
    progress = await wait_status(temporal_env.client, order_no, OrderStatus.PENDING_PAYMENT)
    assert progress.status == OrderStatus.PENDING_PAYMENT
    with sessions() as s:
        assert s.scalar(select(func.count()).select_from(LedgerTransaction)) == 0
        assert s.get(Order, order_no).status == OrderStatus.PENDING_PAYMENT


async def test_a_buyer_cannot_read_another_buyers_order(api, demo, token, sessions):
    order_no = (await place(api, token(demo.buyer_user_id, "buyer"), demo)).json()["order_no"]
    with sessions.begin() as s:
        other = User(role="buyer", openid="oOTHERbuyer00000000000000001")
        s.add(other)
    other_headers = token(other.id, "buyer")
    r = await api.get(f"/orders/{order_no}", headers=other_headers)
    assert r.status_code == 404 and r.json()["code"] == "NOT_FOUND"
    assert (await api.get("/orders", headers=other_headers)).json() == []
    assert (await api.get(f"/orders/{order_no}", headers=token(demo.buyer_user_id, "buyer"))).status_code == 200
    assert (await api.get(f"/orders/{order_no}", headers=token(demo.promoter_user_id, "promoter"))).status_code == 200
    r = await api.post(f"/orders/{order_no}/confirm-receipt", headers=other_headers)
    assert r.status_code == 404


async def test_roles_and_tokens_are_checked(api, demo, token):
    assert (await api.get("/orders")).status_code == 401
    r = await api.get("/orders", headers={"Authorization": "Bearer not-a-jwt"})
    assert r.status_code == 401 and r.json()["code"] == "INVALID_TOKEN"
    r = await place(api, token(demo.supplier_user_id, "supplier"), demo)
    assert r.status_code == 403 and r.json()["code"] == "FORBIDDEN"
    r = await api.get("/wallet", headers=token(demo.buyer_user_id, "buyer"))
    assert r.status_code == 403


async def test_bad_orders_get_a_clear_4xx_and_write_nothing(api, demo, token, sessions):
    buyer = token(demo.buyer_user_id, "buyer")
    cases = [
        ({"lines": [{"sku_id": demo.sku_ids[0], "quantity": 0}]}, 422, "VALIDATION_ERROR"),
        ({"lines": []}, 422, "VALIDATION_ERROR"),
        ({"address": ADDRESS | {"phone": "12345"}}, 422, "VALIDATION_ERROR"),
        ({"lines": [{"sku_id": 999_999, "quantity": 1}]}, 422, "SKU_NOT_FOUND"),
        ({"window_id": 999_999}, 422, "WINDOW_NOT_FOUND"),
        ({"lines": [{"sku_id": demo.sku_ids[0], "quantity": 101}]}, 409, "OUT_OF_STOCK"),
    ]
    for override, status, code in cases:
        body = {"window_id": demo.window_id, "lines": [{"sku_id": demo.sku_ids[0], "quantity": 1}],
                "address": ADDRESS} | override
        r = await api.post("/orders", json=body, headers=buyer)
        assert (r.status_code, r.json()["code"]) == (status, code), (override, r.text)
        assert r.json()["message"]
    with sessions() as s:
        assert s.scalar(select(func.count()).select_from(Order)) == 0
        assert s.get(Sku, demo.sku_ids[0]).stock == 100
        assert_books_balance(s)


async def test_same_idempotency_key_places_one_order(api, demo, token, sessions):
    buyer = token(demo.buyer_user_id, "buyer") | {"Idempotency-Key": "cart-42"}
    first, second = await place(api, buyer, demo), await place(api, buyer, demo)
    assert first.status_code == second.status_code == 201
    assert first.json()["order_no"] == second.json()["order_no"]
    with sessions() as s:
        assert s.scalar(select(func.count()).select_from(Order)) == 1
        assert s.get(Sku, demo.sku_ids[0]).stock == 98


def test_orders_for_the_same_skus_in_any_line_order_reserve_exactly_and_never_deadlock(demo, sessions, settings):
    """Stock is decremented last and in SKU order: buyers of A+B and of B+A at once all get
    their units, none waits on the other (a deadlock would fail a placement), and stock is exact."""
    from concurrent.futures import ThreadPoolExecutor

    from activities.orders import OrderActivities
    from domain.orders import LineRequest, PlaceOrderInput, ShippingAddress

    orders = OrderActivities(sessions, settings.commission_policy(), settings.risk_rules,
                             level_period=settings.level_period, tier_ceiling=lambda: settings.commission_tiers)
    a, b = demo.sku_ids[0], demo.sku_ids[1]
    with sessions() as s:
        before = {k: s.get(Sku, k).stock for k in (a, b)}

    def place(i: int):
        first, second = (a, b) if i % 2 else (b, a)
        return orders.place_order(PlaceOrderInput(
            order_no=f"CCLOCK{i:08d}", buyer_user_id=demo.buyer_user_id, buyer_openid=demo.buyer_openid,
            window_id=demo.window_id, lines=[LineRequest(sku_id=first, quantity=1), LineRequest(sku_id=second, quantity=1)],
            address=ShippingAddress(**ADDRESS)))

    with ThreadPoolExecutor(max_workers=8) as pool:
        placed = list(pool.map(place, range(24)))
    assert len({p.order_no for p in placed}) == 24
    with sessions() as s:
        assert {k: s.get(Sku, k).stock for k in (a, b)} == {a: before[a] - 24, b: before[b] - 24}
        assert s.scalar(select(func.count()).select_from(Order).where(Order.order_no.like("CCLOCK%"))) == 24
