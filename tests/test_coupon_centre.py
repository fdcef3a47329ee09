"""The coupon centre (issue 19): a supplier puts a coupon in it, buyers claim it (one each, the
total limit exactly, under a burst), see it in "my coupons", and only a claim lets an order use
it; deactivating stops claims and uses. The discount is the supplier's; commission is on what
was paid (tests/test_pickup_coupons.py shows the spread)."""

from __future__ import annotations

import asyncio

from sqlalchemy import func, select

from db.order_models import Coupon, CouponClaim
from tests.helpers import make_user, place


async def test_a_burst_of_claims_hands_out_exactly_the_limit_and_only_a_claim_is_usable(
        api, demo, token, sessions):
    supplier = token(demo.supplier_user_id, "supplier")
    made = await api.post("/coupons", headers=supplier, json={
        "code": "CENTRE10", "kind": "fixed", "amount_fen": 1_000, "total_limit": 5, "claimable": True})
    assert made.status_code == 201 and made.json()["claimable"] is True, made.text
    buyers = [make_user(sessions, "buyer", f"centre-buyer-{i}") for i in range(12)]

    centre = await api.get("/coupons/centre", headers=token(buyers[0], "buyer"))
    assert [c["code"] for c in centre.json()] == ["CENTRE10"]
    answers = await asyncio.gather(*(api.post("/coupons/CENTRE10/claim", headers=token(b, "buyer")) for b in buyers))
    codes = sorted(a.status_code for a in answers)
    assert codes == [201] * 5 + [409] * 7, [a.text for a in answers]
    assert {a.json()["code"] for a in answers if a.status_code == 409} == {"COUPON_CLAIMED_OUT"}
    with sessions() as s:
        assert s.get(Coupon, "CENTRE10").claimed_count == 5
        assert s.scalar(select(func.count()).select_from(CouponClaim)) == 5
    winner = next(b for b, a in zip(buyers, answers, strict=True) if a.status_code == 201)
    again = await api.post("/coupons/CENTRE10/claim", headers=token(winner, "buyer"))
    assert again.status_code == 409 and again.json()["code"] == "ALREADY_CLAIMED"
    assert (await api.get("/coupons/centre", headers=token(winner, "buyer"))).json() == []  # claimed out

    mine = (await api.get("/coupons/mine", headers=token(winner, "buyer"))).json()
    assert [(c["code"], c["state"], c["amount_fen"]) for c in mine] == [("CENTRE10", "unused", 1_000)]

    # the demo buyer never claimed it: the code alone is refused
    refused = await place(api, token(demo.buyer_user_id, "buyer"), demo, quantity=1, coupon_code="CENTRE10")
    assert refused.status_code == 409 and refused.json()["code"] == "COUPON_NOT_CLAIMED", refused.text

    off = await api.post("/coupons/CENTRE10/deactivate", headers=supplier)
    assert off.status_code == 200 and off.json()["active"] is False
    mine = (await api.get("/coupons/mine", headers=token(winner, "buyer"))).json()
    assert mine[0]["state"] == "ended"
    other_supplier = token(make_user(sessions, "supplier", "not-the-issuer"), "supplier")
    assert (await api.post("/coupons/CENTRE10/deactivate", headers=other_supplier)).status_code in (403, 404)


async def test_a_claimed_coupon_is_used_once_and_given_back_with_an_unpaid_order(
        api, demo, token, sessions, temporal_env):
    from domain.order_status import OrderStatus
    from tests.helpers import run_to_end

    supplier, buyer = token(demo.supplier_user_id, "supplier"), token(demo.buyer_user_id, "buyer")
    await api.post("/coupons", headers=supplier, json={
        "code": "CLAIM20", "kind": "fixed", "amount_fen": 2_000, "total_limit": 10, "claimable": True})
    assert (await api.post("/coupons/CLAIM20/claim", headers=buyer)).status_code == 201
    placed = await place(api, buyer, demo, quantity=1, coupon_code="CLAIM20")
    assert placed.status_code == 201, placed.text
    order_no = placed.json()["order_no"]
    mine = (await api.get("/coupons/mine", headers=buyer)).json()
    assert (mine[0]["state"], mine[0]["order_no"]) == ("used", order_no)

    assert (await run_to_end(temporal_env, order_no)).status == OrderStatus.CANCELLED  # never paid
    mine = (await api.get("/coupons/mine", headers=buyer)).json()
    assert (mine[0]["state"], mine[0]["order_no"]) == ("unused", None)  # the claim is the buyer's again


async def test_the_quote_suggests_the_claimed_coupon_that_takes_the_most_off(api, demo, token, sessions):
    supplier, buyer = token(demo.supplier_user_id, "supplier"), token(demo.buyer_user_id, "buyer")
    for body in ({"code": "FLAT500", "kind": "fixed", "amount_fen": 500},
                 {"code": "BIG3000", "kind": "threshold", "amount_fen": 3_000, "threshold_fen": 30_000},
                 {"code": "HUGE9000", "kind": "threshold", "amount_fen": 9_000, "threshold_fen": 90_000}):
        made = await api.post("/coupons", headers=supplier, json=body | {"total_limit": 10, "claimable": True})
        assert made.status_code == 201, made.text
        assert (await api.post(f"/coupons/{body['code']}/claim", headers=buyer)).status_code == 201
    home = await api.post("/addresses", headers=buyer, json={
        "receiver": "王小明", "phone": "13800138000", "province": "上海市", "city": "上海市", "district": "浦东新区",
        "detail": "世纪大道 100 号", "region_code": "310115"})
    assert home.status_code == 201, home.text

    async def suggested(quantity: int):
        quoted = await api.post("/cart/quote", headers=buyer, json={
            "address_id": home.json()["id"], "lines": [{"sku_id": demo.sku_ids[0], "quantity": quantity}]})
        assert quoted.status_code == 200, quoted.text
        return quoted.json()["orders"][0]["suggested_coupon"]

    assert await suggested(1) == {"coupon_code": "FLAT500", "discount_fen": 500}   # 19 900: below 30 000
    assert await suggested(2) == {"coupon_code": "BIG3000", "discount_fen": 3_000}  # 39 800 reaches it
    assert (await api.post("/coupons/BIG3000/deactivate", headers=supplier)).status_code == 200
    assert await suggested(2) == {"coupon_code": "FLAT500", "discount_fen": 500}   # a stopped coupon is not offered

