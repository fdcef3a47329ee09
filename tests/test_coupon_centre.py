"""The coupon centre (issue 19): a supplier puts a coupon in it, buyers claim it (one each, the
total limit exactly, under a burst), see it in "my coupons", and only a claim lets an order use
it; deactivating stops claims and uses. The discount is the supplier's; commission is on what
was paid (tests/test_pickup_coupons.py shows the spread)."""

from __future__ import annotations

import asyncio

from sqlalchemy import func, select

from db.models import LedgerAccount, LedgerEntry
from db.order_models import Coupon, CouponClaim
from domain.order_status import OrderStatus
from tests.helpers import make_user, pay, place, run_to_end, ship_and_deliver, wait_status


def owed_on(sessions, order_no: str) -> dict[str, int]:
    """account → what the order's entries left owed on it (credits positive)."""
    with sessions() as s:
        return {code: -amount for code, amount in s.execute(
            select(LedgerAccount.code, func.sum(LedgerEntry.amount_fen))
            .join(LedgerEntry, LedgerEntry.account_id == LedgerAccount.id)
            .where(LedgerEntry.order_no == order_no).group_by(LedgerAccount.code))}


async def complete(api, sandbox, temporal_env, supplier, order_no: str, waybill: str) -> None:
    """Pay, ship, deliver and let the order complete (time skipped)."""
    await pay(sandbox, order_no)
    await wait_status(temporal_env.client, order_no, OrderStatus.PAID)
    await ship_and_deliver(api, sandbox, temporal_env.client, supplier, order_no, waybill)
    assert (await run_to_end(temporal_env, order_no)).status == OrderStatus.COMPLETED


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



async def test_a_platform_coupon_is_the_platforms_cost_and_claims_follow_the_per_buyer_limit(
        api, sandbox, demo, token, sessions, temporal_env):
    from db.models import OrderLine
    from domain import ledger as rules
    from tests.helpers import assert_books_balance

    operator = token(make_user(sessions, "operator", "coupon-operator"), "operator")
    buyer, supplier = token(demo.buyer_user_id, "buyer"), token(demo.supplier_user_id, "supplier")
    refused = await api.post("/coupons", headers=supplier, json={
        "code": "PLAT2000", "kind": "fixed", "amount_fen": 2_000, "total_limit": 50, "funded_by": "platform"})
    assert refused.status_code == 403 and refused.json()["code"] == "PLATFORM_COUPON_BY_OPERATORS"
    made = await api.post("/coupons", headers=operator, json={
        "code": "PLAT2000", "kind": "fixed", "amount_fen": 2_000, "total_limit": 50, "claimable": True,
        "per_buyer_limit": 2, "funded_by": "platform"})
    assert made.status_code == 201, made.text
    assert (made.json()["funded_by"], made.json()["supplier_id"]) == ("platform", None)
    # listed with the supplier's own coupons when buyers browse that supplier
    listed = await api.get("/coupons/centre", headers=buyer, params={"supplier_id": demo.supplier_id})
    assert [c["code"] for c in listed.json()] == ["PLAT2000"]

    answers = [await api.post("/coupons/PLAT2000/claim", headers=buyer) for _ in range(3)]
    assert [a.status_code for a in answers] == [201, 201, 409] and answers[2].json()["code"] == "ALREADY_CLAIMED"

    placed = await place(api, buyer, demo, quantity=1, coupon_code="PLAT2000")
    assert placed.status_code == 201, placed.text
    order_no = placed.json()["order_no"]
    assert placed.json()["total_fen"] == 19_900 - 2_000
    mine = (await api.get("/coupons/mine", headers=buyer)).json()
    assert sorted(c["state"] for c in mine) == ["unused", "used"]  # one claim used, one left

    await complete(api, sandbox, temporal_env, supplier, order_no, "SFPLATFORM01")

    with sessions() as s:
        line = s.scalar(select(OrderLine).where(OrderLine.order_no == order_no))
        assert (line.list_fen, line.paid_fen, line.subsidy_fen) == (19_900, 17_900, 2_000)
        assert line.commission_fen == 17_900 * 1_500 // 10_000  # commission stays on what was paid
        owed = owed_on(sessions, order_no)
        # the supplier is paid as if the buyer had paid the list price; the platform bears the 2,000
        assert owed[rules.supplier_payable(demo.supplier_id)] == 17_900 - line.service_fee_fen - line.commission_fen + 2_000
        assert owed[rules.PLATFORM_REVENUE] == line.service_fee_fen - 2_000
        assert owed[rules.promoter_available(demo.promoter_id)] == line.commission_fen
        assert_books_balance(s)


async def test_a_return_after_completion_gives_the_platform_its_subsidy_back(
        api, sandbox, demo, token, sessions, temporal_env):
    from db.models import OrderLine
    from domain import ledger as rules
    from domain.refunds import share_of
    from tests.helpers import assert_books_balance, return_one_unit

    operator = token(make_user(sessions, "operator", "subsidy-operator"), "operator")
    buyer, supplier = token(demo.buyer_user_id, "buyer"), token(demo.supplier_user_id, "supplier")
    made = await api.post("/coupons", headers=operator, json={
        "code": "PLAT2001", "kind": "fixed", "amount_fen": 2_001, "total_limit": 5, "funded_by": "platform"})
    assert made.status_code == 201, made.text
    placed = await place(api, buyer, demo, quantity=2, coupon_code="PLAT2001")
    assert placed.status_code == 201, placed.text
    order_no = placed.json()["order_no"]
    await complete(api, sandbox, temporal_env, supplier, order_no, "SFSUBSIDY001")

    with sessions() as s:
        line = s.scalar(select(OrderLine).where(OrderLine.order_no == order_no))
    assert (line.paid_fen, line.subsidy_fen) == (2 * 19_900 - 2_001, 2_001)
    payable, revenue = rules.supplier_payable(demo.supplier_id), rules.PLATFORM_REVENUE
    before = owed_on(sessions, order_no)
    assert before[payable] == line.paid_fen - line.service_fee_fen - line.commission_fen + 2_001
    assert before[revenue] == line.service_fee_fen - 2_001

    await return_one_unit(api, temporal_env.client, buyer, supplier, order_no, line.id, "YTSUBSIDY001")
    after = owed_on(sessions, order_no)

    def part(total: int) -> int:
        return share_of(total, 2, 0, 1)

    # the returned unit takes its part of everything back: 1,000 of the odd 2,001 subsidy (floors)
    assert part(2_001) == 1_000
    assert after[payable] == before[payable] - (part(line.paid_fen) - part(line.service_fee_fen)
                                                - part(line.commission_fen) + part(2_001))
    assert after[revenue] == before[revenue] - part(line.service_fee_fen) + part(2_001)
    with sessions() as s:
        assert_books_balance(s)
