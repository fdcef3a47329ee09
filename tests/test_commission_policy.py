"""Commission policy versions: >3 tiers refused, each order paid under the version in force,
self-purchases earn nothing by default, paused promoters accrue no new commission."""

from __future__ import annotations

from sqlalchemy import select, update

from activities.ledger import balance
from db.models import Promoter, User
from db.promoter_models import OrderCommissionPolicy
from domain import ledger as rules
from domain.order_status import OrderStatus
from tests.helpers import assert_books_balance, place, wait_status

POOL = 2 * 19_900 * 1_500 // 10_000  # SKU 0, quantity 2, 15% commission


def _operator(sessions) -> int:
    with sessions.begin() as s:
        user = User(role="operator", username="op", display_name="op")
        s.add(user)
        s.flush()
        return user.id


async def _paid_order(api, sandbox, temporal_env, headers, demo) -> str:
    placed = await place(api, headers, demo)
    assert placed.status_code == 201, placed.text
    order_no = placed.json()["order_no"]
    await sandbox.post(f"/sandbox/pay/{order_no}")
    await wait_status(temporal_env.client, order_no, OrderStatus.PAID)
    return order_no


def _version_of(sessions, order_no: str) -> OrderCommissionPolicy:
    with sessions() as s:
        return s.get(OrderCommissionPolicy, order_no)


async def test_operator_policy_changes_are_versioned_and_capped_at_three_tiers(api, token, sessions, demo):
    op = token(_operator(sessions), "operator")
    refused = await api.put("/commission-policy", headers=op, json={"tiers": 4, "tier_rates_bps": [2500] * 4})
    assert refused.status_code == 422 and refused.json()["code"] == "POLICY_REFUSED", refused.text
    over = await api.put("/commission-policy", headers=op, json={"tiers": 2, "tier_rates_bps": [9000, 2000]})
    assert over.status_code == 422 and over.json()["code"] == "POLICY_REFUSED"
    ok = await api.put("/commission-policy", headers=op,
                       json={"tiers": 2, "tier_rates_bps": [8000, 2000], "note": "two tiers"})
    assert ok.status_code == 200 and ok.json()["version"] == 2, ok.text
    history = (await api.get("/commission-policy", headers=op)).json()
    assert [v["version"] for v in history["versions"]] == [1, 2]
    assert history["versions"][0]["tiers"] == 1 and history["versions"][0]["tier_rates_bps"] == [10_000]
    assert history["current"]["version"] == 2
    promoter = await api.put("/commission-policy", headers=token(demo.promoter_user_id, "promoter"),
                             json={"tiers": 1, "tier_rates_bps": [10_000]})
    assert promoter.status_code == 403


async def test_each_order_is_paid_under_the_policy_in_force(api, sandbox, token, sessions, demo, temporal_env):
    with sessions.begin() as s:
        upline_user = User(role="promoter", openid="oUPLINE000000000000000000001")
        s.add(upline_user)
        s.flush()
        upline = Promoter(user_id=upline_user.id, nickname="upline")
        s.add(upline)
        s.flush()
        s.execute(update(Promoter).where(Promoter.id == demo.promoter_id).values(referrer_id=upline.id))
        upline_id = upline.id
    buyer, op = token(demo.buyer_user_id, "buyer"), token(_operator(sessions), "operator")

    first = await _paid_order(api, sandbox, temporal_env, buyer, demo)  # default: 1 tier, 100%
    assert _version_of(sessions, first).policy_version == 1
    with sessions() as s:
        assert balance(s, rules.promoter_pending(demo.promoter_id)) == POOL
        assert balance(s, rules.promoter_pending(upline_id)) == 0

    await api.put("/commission-policy", headers=op, json={"tiers": 2, "tier_rates_bps": [8000, 2000]})
    second = await _paid_order(api, sandbox, temporal_env, buyer, demo)
    assert _version_of(sessions, second).policy_version == 2
    with sessions() as s:
        assert balance(s, rules.promoter_pending(demo.promoter_id)) == POOL + POOL * 8000 // 10_000
        assert balance(s, rules.promoter_pending(upline_id)) == POOL * 2000 // 10_000
        assert_books_balance(s)
    assert _version_of(sessions, first).policy_version == 1  # earlier orders keep theirs


async def test_self_purchase_earns_nothing_unless_switched_on(api, sandbox, token, sessions, demo, temporal_env):
    me = token(demo.promoter_user_id, "promoter")
    own = await _paid_order(api, sandbox, temporal_env, me, demo)
    assert _version_of(sessions, own).self_purchase is True
    with sessions() as s:
        assert balance(s, rules.promoter_pending(demo.promoter_id)) == 0
    op = token(_operator(sessions), "operator")
    r = await api.put("/commission-policy", headers=op,
                      json={"tiers": 1, "tier_rates_bps": [10_000], "self_purchase_commission": True})
    assert r.status_code == 200, r.text
    await _paid_order(api, sandbox, temporal_env, me, demo)
    with sessions() as s:
        assert balance(s, rules.promoter_pending(demo.promoter_id)) == POOL


async def test_a_paused_promoter_accrues_no_new_commission(api, sandbox, token, sessions, demo, temporal_env):
    buyer = token(demo.buyer_user_id, "buyer")
    await _paid_order(api, sandbox, temporal_env, buyer, demo)
    with sessions.begin() as s:
        s.execute(update(Promoter).where(Promoter.id == demo.promoter_id).values(status="paused"))
    await _paid_order(api, sandbox, temporal_env, buyer, demo)
    with sessions() as s:
        # what was earned before the pause is still there; the paused order's share is the platform's
        assert balance(s, rules.promoter_pending(demo.promoter_id)) == POOL
        assert_books_balance(s)


async def test_three_tiers_pay_a_four_level_chain_down_to_tier_three_and_a_refund_reverses_all_three(
        api, sandbox, token, sessions, demo, temporal_env):
    """seller ← up1 ← up2 ← up3: with 3 tiers a sale pays the seller, up1 and up2 and nobody
    beyond; a refund after release takes back each one's share of the refunded unit."""
    from tests.helpers import return_one_unit, run_to_end, ship_and_deliver

    with sessions.begin() as s:
        below, chain = demo.promoter_id, []
        for n in range(3):
            user = User(role="promoter", openid=f"oCHAIN{n:022d}")
            s.add(user)
            s.flush()
            up = Promoter(user_id=user.id, nickname=f"up{n + 1}")
            s.add(up)
            s.flush()
            s.execute(update(Promoter).where(Promoter.id == below).values(referrer_id=up.id))
            chain.append(up.id)
            below = up.id
    seller, up1, up2, up3 = demo.promoter_id, *chain
    buyer, supplier = token(demo.buyer_user_id, "buyer"), token(demo.supplier_user_id, "supplier")
    op = token(_operator(sessions), "operator")
    set_ = await api.put("/commission-policy", headers=op, json={"tiers": 3, "tier_rates_bps": [6000, 2500, 1500]})
    assert set_.status_code == 200, set_.text

    order_no = await _paid_order(api, sandbox, temporal_env, buyer, demo)
    shares = {seller: POOL * 6000 // 10_000, up1: POOL * 2500 // 10_000, up2: POOL * 1500 // 10_000, up3: 0}
    assert sum(shares.values()) == POOL - 1  # 3582 + 1492 + 895: the rounding fen stays with the platform
    with sessions() as s:
        assert {p: balance(s, rules.promoter_pending(p)) for p in shares} == shares
    await ship_and_deliver(api, sandbox, temporal_env.client, supplier, order_no, "SF7000000001")
    assert (await run_to_end(temporal_env, order_no)).status == OrderStatus.COMPLETED
    with sessions() as s:
        assert {p: balance(s, rules.promoter_available(p)) for p in shares} == shares
        assert all(balance(s, rules.promoter_pending(p)) == 0 for p in shares)

    with sessions() as s:
        from db.models import OrderLine

        line = s.scalar(select(OrderLine.id).where(OrderLine.order_no == order_no))
    await return_one_unit(api, temporal_env.client, buyer, supplier, order_no, line, "YTBACK000007")
    with sessions() as s:
        # one unit of two: each tier keeps the other unit's share (cumulative floors, exact)
        assert {p: balance(s, rules.promoter_available(p)) for p in shares} == {
            p: amount - amount // 2 for p, amount in shares.items()}
        assert_books_balance(s)
