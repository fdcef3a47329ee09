"""Pickup orders (核销) and coupons through the API, time skipped: outlets by distance, codes
only the buyer sees, the outlet's scan with its checks, unclaimed codes refunded; coupons
spread over lines so commission is on what was paid; a late supplier is reported."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from activities.ledger import balance
from db.catalog_models import Notification
from db.models import OrderLine, Sku
from db.order_models import Coupon, PickupCode
from domain import ledger as rules
from domain.order_status import OrderStatus
from tests.helpers import assert_books_balance, keep_history, make_user, pay, place, run_to_end, wait_status

PRICE = 19_900


async def _outlets(api, supplier, sessions) -> tuple[int, int, dict, dict]:
    near = await api.post("/outlets", headers=supplier, json={
        "name": "人民广场店", "address": "上海市黄浦区人民大道 1 号", "latitude": 31.2304, "longitude": 121.4737})
    far = await api.post("/outlets", headers=supplier, json={
        "name": "虹桥店", "address": "上海市闵行区申虹路 1 号", "latitude": 31.1940, "longitude": 121.3200})
    assert near.status_code == 201 and far.status_code == 201, near.text
    staff_near, staff_far = make_user(sessions, "outlet_staff", "dianyuan-1"), make_user(sessions, "outlet_staff", "dianyuan-2")
    for outlet, staff in ((near.json()["id"], staff_near), (far.json()["id"], staff_far)):
        added = await api.post(f"/outlets/{outlet}/staff", headers=supplier, json={"user_id": staff})
        assert added.status_code == 204, added.text
    return near.json()["id"], far.json()["id"], {"id": staff_near}, {"id": staff_far}


async def test_pickup_code_is_scanned_at_the_right_outlet_and_the_order_completes(
        api, sandbox, demo, token, temporal_env, sessions):
    buyer, supplier = token(demo.buyer_user_id, "buyer"), token(demo.supplier_user_id, "supplier")
    near, far, staff_near, staff_far = await _outlets(api, supplier, sessions)
    listed = (await api.get("/outlets", params={"lat": 31.2250, "lng": 121.4700})).json()
    assert [o["id"] for o in listed] == [near, far] and listed[0]["distance_km"] < 1 < listed[1]["distance_km"]
    half = await api.get("/outlets", params={"lat": 31.2})
    assert half.status_code == 422 and half.json()["code"] == "POSITION_INCOMPLETE"

    no_outlet = await api.post("/orders", headers=buyer, json={
        "window_id": demo.window_id, "fulfilment": "pickup", "lines": [{"sku_id": demo.sku_ids[0], "quantity": 1}]})
    assert no_outlet.status_code == 422 and no_outlet.json()["code"] == "VALIDATION_ERROR"
    placed = await api.post("/orders", headers=buyer, json={
        "window_id": demo.window_id, "fulfilment": "pickup", "outlet_id": near,
        "lines": [{"sku_id": demo.sku_ids[0], "quantity": 1}]})
    assert placed.status_code == 201, placed.text
    order_no = placed.json()["order_no"]
    await pay(sandbox, order_no)
    await wait_status(temporal_env.client, order_no, OrderStatus.PAID)

    mine = await api.get(f"/orders/{order_no}/pickup", headers=buyer)
    assert mine.status_code == 200, mine.text
    code = mine.json()["code"]
    assert len(code) == 12 and mine.json()["qr_payload"].endswith(code) and mine.json()["outlet"]["id"] == near
    stranger = await api.get(f"/orders/{order_no}/pickup", headers=token(demo.promoter_user_id, "promoter"))
    assert stranger.status_code == 404
    with sessions() as s:
        assert code not in s.get(PickupCode, order_no).code_hash  # only a keyed hash is stored

    wrong_outlet = await api.post("/pickups/verify", headers=token(staff_far["id"], "outlet_staff"), json={"code": code})
    assert wrong_outlet.status_code == 409 and wrong_outlet.json()["code"] == "WRONG_OUTLET"
    unknown = await api.post("/pickups/verify", headers=token(staff_near["id"], "outlet_staff"),
                             json={"code": "000000000000"})
    assert unknown.status_code == 404 and unknown.json()["code"] == "PICKUP_CODE_NOT_FOUND"
    buyer_scan = await api.post("/pickups/verify", headers=buyer, json={"code": code})
    assert buyer_scan.status_code == 403
    scanned = await api.post("/pickups/verify", headers=token(staff_near["id"], "outlet_staff"),
                             json={"code": mine.json()["qr_payload"]})
    assert scanned.status_code == 200, scanned.text
    assert scanned.json()["status"] == "RECEIVED"
    # what the scan needs, nothing about the buyer (api/views.py)
    assert scanned.json() == {"order_no": order_no, "status": "RECEIVED", "outlet_id": near,
                              "hand_over": [{"title": scanned.json()["hand_over"][0]["title"], "quantity": 1}]}
    twice = await api.post("/pickups/verify", headers=token(staff_near["id"], "outlet_staff"), json={"code": code})
    assert twice.status_code == 409 and twice.json()["code"] == "CODE_NOT_USABLE"

    assert (await run_to_end(temporal_env, order_no)).status == OrderStatus.COMPLETED
    with sessions() as s:
        pickup = s.get(PickupCode, order_no)
        assert (pickup.status, pickup.verified_by_user_id) == ("picked_up", staff_near["id"])
        assert balance(s, rules.promoter_available(demo.promoter_id)) == PRICE * 1_500 // 10_000
        assert_books_balance(s)
    await keep_history(temporal_env, order_no, "order_picked_up")


async def test_unclaimed_pickup_code_expires_and_is_refunded(api, sandbox, demo, token, temporal_env, sessions):
    buyer, supplier = token(demo.buyer_user_id, "buyer"), token(demo.supplier_user_id, "supplier")
    near, _, staff_near, _ = await _outlets(api, supplier, sessions)
    order_no = (await api.post("/orders", headers=buyer, json={
        "window_id": demo.window_id, "fulfilment": "pickup", "outlet_id": near,
        "lines": [{"sku_id": demo.sku_ids[0], "quantity": 2}]})).json()["order_no"]
    await pay(sandbox, order_no)
    await wait_status(temporal_env.client, order_no, OrderStatus.PAID)
    code = (await api.get(f"/orders/{order_no}/pickup", headers=buyer)).json()["code"]

    assert (await run_to_end(temporal_env, order_no)).status == OrderStatus.REFUNDED
    late = await api.post("/pickups/verify", headers=token(staff_near["id"], "outlet_staff"), json={"code": code})
    assert late.status_code == 409
    with sessions() as s:
        assert s.get(PickupCode, order_no).status == "expired"
        assert s.get(Sku, demo.sku_ids[0]).stock == 100
        assert balance(s, rules.CLEARING) == 0
        assert balance(s, rules.promoter_pending(demo.promoter_id)) == 0
        assert_books_balance(s)
    await keep_history(temporal_env, order_no, "order_pickup_expired")


async def test_coupon_discount_is_spread_and_commission_is_on_what_was_paid(
        api, sandbox, demo, token, temporal_env, sessions):
    buyer, supplier = token(demo.buyer_user_id, "buyer"), token(demo.supplier_user_id, "supplier")
    bad = await api.post("/coupons", headers=supplier, json={
        "code": "BAD1", "kind": "threshold", "amount_fen": 5_000, "threshold_fen": 4_000, "total_limit": 1})
    assert bad.status_code == 422
    made = await api.post("/coupons", headers=supplier, json={
        "code": "SAVE50", "kind": "threshold", "amount_fen": 5_000, "threshold_fen": 30_000, "total_limit": 100})
    assert made.status_code == 201, made.text

    lines = [{"sku_id": demo.sku_ids[0], "quantity": 1}, {"sku_id": demo.sku_ids[1], "quantity": 2}]
    from tests.helpers import ADDRESS
    placed = await api.post("/orders", headers=buyer, json={
        "window_id": demo.window_id, "lines": lines, "address": ADDRESS, "coupon_code": "SAVE50"})
    assert placed.status_code == 201, placed.text
    listed = PRICE + 2 * 6_800
    assert placed.json()["total_fen"] == listed - 5_000
    order_no = placed.json()["order_no"]
    with sessions() as s:
        rows = s.scalars(select(OrderLine).where(OrderLine.order_no == order_no).order_by(OrderLine.id)).all()
        assert [r.list_fen - r.paid_fen for r in rows] == [2_970, 2_030]  # largest remainder: .15 vs .85
        assert sum(r.paid_fen for r in rows) == listed - 5_000
        assert rows[0].commission_fen == rows[0].paid_fen * 1_500 // 10_000   # on the discounted amount
        assert s.get(Coupon, "SAVE50").used_count == 1
    again = await api.post("/orders", headers=buyer, json={
        "window_id": demo.window_id, "lines": lines, "address": ADDRESS, "coupon_code": "SAVE50"})
    assert again.status_code == 409 and again.json()["code"] == "COUPON_ALREADY_USED"
    with sessions() as s:  # the refused order gave its stock and coupon use back
        assert s.get(Coupon, "SAVE50").used_count == 1

    await pay(sandbox, order_no)
    await wait_status(temporal_env.client, order_no, OrderStatus.PAID)
    with sessions() as s:
        assert balance(s, rules.CLEARING) == listed - 5_000
        assert_books_balance(s)


async def test_unpaid_order_gives_its_coupon_back(api, demo, token, temporal_env, sessions):
    buyer, supplier = token(demo.buyer_user_id, "buyer"), token(demo.supplier_user_id, "supplier")
    await api.post("/coupons", headers=supplier, json={
        "code": "TAKE10", "kind": "fixed", "amount_fen": 1_000, "total_limit": 1})
    order_no = (await place(api, buyer, demo, quantity=1, coupon_code="TAKE10")).json()["order_no"]
    with sessions() as s:
        assert s.get(Coupon, "TAKE10").used_count == 1
    assert (await run_to_end(temporal_env, order_no)).status == OrderStatus.CANCELLED
    with sessions() as s:
        assert s.get(Coupon, "TAKE10").used_count == 0


async def test_a_supplier_late_to_ship_is_reported_once(api, sandbox, demo, token, temporal_env, sessions):
    order_no = (await place(api, token(demo.buyer_user_id, "buyer"), demo, quantity=1)).json()["order_no"]
    await pay(sandbox, order_no)
    await wait_status(temporal_env.client, order_no, OrderStatus.PAID)
    await temporal_env.sleep(timedelta(hours=49))
    for _ in range(100):
        with sessions() as s:
            alerts = s.scalars(select(Notification).where(Notification.kind == "shipment_overdue")).all()
        if alerts:
            break
        await temporal_env.sleep(timedelta(seconds=1))
    assert {(a.recipient_user_id, a.recipient_role) for a in alerts} == {
        (demo.supplier_user_id, None), (None, "support")}
