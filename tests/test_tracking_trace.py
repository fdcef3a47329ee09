"""The buyer's full tracking trace (issue 19): every carrier event a push or a poll brings is kept
once and shown on the order, newest first, to the buyer and the shipping supplier only."""

from __future__ import annotations

from sqlalchemy import func, select

from db.storefront_models import TrackingEvent
from domain.order_status import OrderStatus
from tests.helpers import pay, place, wait_status


async def test_every_carrier_event_is_kept_once_and_shown_to_the_buyer(api, sandbox, demo, token, temporal_env,
                                                                       sessions):
    buyer, supplier = token(demo.buyer_user_id, "buyer"), token(demo.supplier_user_id, "supplier")
    promoter = token(demo.promoter_user_id, "promoter")
    order_no = (await place(api, buyer, demo, quantity=1)).json()["order_no"]
    await pay(sandbox, order_no)
    await wait_status(temporal_env.client, order_no, OrderStatus.PAID)
    shipped = await api.post(f"/orders/{order_no}/shipments", headers=supplier,
                             json={"carrier": "zhongtong", "waybill_no": "ZT7000000001"})
    assert shipped.status_code == 200, shipped.text
    assert (await api.get(f"/orders/{order_no}/tracking", headers=buyer)).json()[0]["events"] == []

    for state, location in (("0", "杭州转运中心"), ("5", "上海浦东"), ("3", "上海浦东")):
        pushed = await sandbox.post("/sandbox/logistics/advance", json={
            "company": "zhongtong", "number": "ZT7000000001", "state": state, "location": location})
        assert pushed.json()["delivered"] is True, pushed.text
    await wait_status(temporal_env.client, order_no, OrderStatus.DELIVERED)

    parcels = (await api.get(f"/orders/{order_no}/tracking", headers=buyer)).json()
    assert [(p["carrier"], p["waybill_no"], p["tracking_state"]) for p in parcels] == [
        ("zhongtong", "ZT7000000001", "3")]
    events = parcels[0]["events"]
    assert [e["location"] for e in events] == ["上海浦东", "上海浦东", "杭州转运中心"]  # newest first
    assert parcels[0]["delivered_at"] is not None
    with sessions() as s:  # each push carried the whole trace so far: 1 + 2 + 3 steps, 3 kept
        assert s.scalar(select(func.count()).select_from(TrackingEvent)) == 3

    assert (await api.get(f"/orders/{order_no}/tracking", headers=supplier)).json() == parcels
    hidden = await api.get(f"/orders/{order_no}/tracking", headers=promoter)
    assert hidden.status_code == 404  # the promoter follows the status, not the courier's trace
    stranger = await api.get(f"/orders/{order_no}/tracking", headers=token(999_001, "buyer"))
    assert stranger.status_code == 404
