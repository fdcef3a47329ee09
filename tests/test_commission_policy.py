"""Commission policy versions: deeper than the ceiling COMMISSION_TIERS (itself at most 3) or a
tier without a rate refused, each order paid under the version in force and never deeper than
the ceiling now, nobody earns on a purchase made inside the seller's chain (not even an upline
buying through a downline's window), paused promoters accrue no new commission."""

from __future__ import annotations

from sqlalchemy import func, select, update

from activities.ledger import balance
from db.models import Promoter, User
from db.promoter_models import CommissionPolicyRow, OrderCommissionPolicy
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


async def test_operator_policy_changes_are_versioned_and_capped_at_three_tiers(api, token, sessions, demo,
                                                                             settings, monkeypatch):
    monkeypatch.setattr(settings, "commission_tiers", 3)
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


async def test_each_order_is_paid_under_the_policy_in_force(api, sandbox, token, sessions, demo, temporal_env,
                                                            settings, monkeypatch):
    monkeypatch.setattr(settings, "commission_tiers", 2)
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


async def test_self_purchase_earns_nothing_and_cannot_be_switched_on(api, sandbox, token, sessions, demo,
                                                                     temporal_env):
    me = token(demo.promoter_user_id, "promoter")
    own = await _paid_order(api, sandbox, temporal_env, me, demo)
    assert _version_of(sessions, own).self_purchase is True
    with sessions() as s:
        assert balance(s, rules.promoter_pending(demo.promoter_id)) == 0
    op = token(_operator(sessions), "operator")
    r = await api.put("/commission-policy", headers=op,
                      json={"tiers": 1, "tier_rates_bps": [10_000], "self_purchase_commission": True})
    assert (r.status_code, r.json()["code"]) == (422, "POLICY_REFUSED"), r.text
    assert "nobody earns on a purchase they made themselves" in r.json()["message"]
    assert [v["version"] for v in (await api.get("/commission-policy", headers=op)).json()["versions"]] == [1]
    await _paid_order(api, sandbox, temporal_env, me, demo)
    with sessions() as s:
        assert balance(s, rules.promoter_pending(demo.promoter_id)) == 0
        assert_books_balance(s)


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
        api, sandbox, token, sessions, demo, temporal_env, settings, monkeypatch):
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
    monkeypatch.setattr(settings, "commission_tiers", 3)
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


# --- pay rules airtight (issue 15) ------------------------------------------------------------
def _chain_above(sessions, demo, n: int, tag: str) -> list[tuple[int, int]]:
    """n uplines above the demo promoter, nearest first: [(promoter id, user id)]."""
    with sessions.begin() as s:
        below, chain = demo.promoter_id, []
        for i in range(n):
            user = User(role="promoter", openid=f"o{tag}{i:012d}")
            s.add(user)
            s.flush()
            up = Promoter(user_id=user.id, nickname=f"{tag}{i + 1}")
            s.add(up)
            s.flush()
            s.execute(update(Promoter).where(Promoter.id == below).values(referrer_id=up.id))
            chain.append((up.id, user.id))
            below = up.id
    return chain


async def test_an_upline_buying_through_its_downlines_window_earns_nothing(
        api, sandbox, token, sessions, demo, temporal_env, settings, monkeypatch):
    """seller ← up1 ← up2, 3 tiers: up1 buys through the seller's window. Before, up1 was paid
    tier 2 on its own purchase; now the order is a self-purchase: nobody in the chain earns on
    it, and the whole pool stays with the platform, recorded with the order."""
    from db.models import OrderEvent
    from tests.helpers import run_to_end, ship_and_deliver

    monkeypatch.setattr(settings, "commission_tiers", 3)
    (up1, up1_user), (up2, _) = _chain_above(sessions, demo, 2, "UPBUY")
    op, supplier = token(_operator(sessions), "operator"), token(demo.supplier_user_id, "supplier")
    set_ = await api.put("/commission-policy", headers=op, json={"tiers": 3, "tier_rates_bps": [6000, 2500, 1500]})
    assert set_.status_code == 200, set_.text

    order_no = await _paid_order(api, sandbox, temporal_env, token(up1_user, "promoter"), demo)
    assert _version_of(sessions, order_no).self_purchase is True
    await ship_and_deliver(api, sandbox, temporal_env.client, supplier, order_no, "SF7000000091")
    assert (await run_to_end(temporal_env, order_no)).status == OrderStatus.COMPLETED
    with sessions() as s:
        for p in (demo.promoter_id, up1, up2):
            assert balance(s, rules.promoter_pending(p)) == 0 and balance(s, rules.promoter_available(p)) == 0
        events = list(s.scalars(select(OrderEvent.note).where(OrderEvent.order_no == order_no)))
        assert any("self-purchase: the buyer is the seller's tier-2 upline" in e for e in events), events
        # the platform kept the pool: revenue is the service fee plus the whole commission pool
        from db.models import OrderLine

        fee, pool = s.execute(select(func.sum(OrderLine.service_fee_fen), func.sum(OrderLine.commission_fen))
                              .where(OrderLine.order_no == order_no)).one()
        assert pool == POOL and balance(s, rules.PLATFORM_REVENUE) == fee + pool
        assert_books_balance(s)
    # a real buyer through the same window still pays all three tiers
    other = await _paid_order(api, sandbox, temporal_env, token(demo.buyer_user_id, "buyer"), demo)
    assert _version_of(sessions, other).self_purchase is False
    with sessions() as s:
        assert [balance(s, rules.promoter_pending(p)) for p in (demo.promoter_id, up1, up2)] == [
            POOL * 6000 // 10_000, POOL * 2500 // 10_000, POOL * 1500 // 10_000]
        assert_books_balance(s)


async def test_a_policy_above_the_ceiling_or_without_rates_is_refused_and_a_lowered_ceiling_binds_old_versions(
        api, sandbox, token, sessions, demo, temporal_env, settings, monkeypatch):
    (up1, _), = _chain_above(sessions, demo, 1, "CEIL")
    op = token(_operator(sessions), "operator")
    # the default ceiling (COMMISSION_TIERS=1) refuses a second tier
    deeper = await api.put("/commission-policy", headers=op, json={"tiers": 2, "tier_rates_bps": [8000, 2000]})
    assert (deeper.status_code, deeper.json()["code"]) == (422, "POLICY_REFUSED"), deeper.text
    assert "COMMISSION_TIERS caps every policy at 1 tier" in deeper.json()["message"]
    monkeypatch.setattr(settings, "commission_tiers", 3)
    for rates, fragment in [([10_000], "give exactly one rate per tier: 2 tiers, 1 rate given"),
                            ([10_000, 0], "tier 2 has no rate"), ([7000, 0, -1], "tier 2, 3 has no rate")]:
        r = await api.put("/commission-policy", headers=op, json={"tiers": len(rates) if len(rates) > 1 else 2,
                                                                   "tier_rates_bps": rates})
        assert (r.status_code, r.json()["code"]) == (422, "POLICY_REFUSED"), r.text
        assert fragment in r.json()["message"], r.json()
    with sessions() as s:
        assert s.scalar(select(func.count()).select_from(CommissionPolicyRow)) <= 1  # nothing written
    ok = await api.put("/commission-policy", headers=op, json={"tiers": 2, "tier_rates_bps": [8000, 2000]})
    assert ok.status_code == 200 and ok.json()["paid_tiers"] == 2, ok.text

    # the ceiling is lowered after the version was stored: it pays only down to the ceiling
    monkeypatch.setattr(settings, "commission_tiers", 1)
    shown = (await api.get("/commission-policy", headers=op)).json()
    assert (shown["current"]["tiers"], shown["current"]["paid_tiers"]) == (2, 1)
    order_no = await _paid_order(api, sandbox, temporal_env, token(demo.buyer_user_id, "buyer"), demo)
    assert _version_of(sessions, order_no).policy_version == shown["current"]["version"]
    with sessions() as s:
        assert balance(s, rules.promoter_pending(demo.promoter_id)) == POOL * 8000 // 10_000
        assert balance(s, rules.promoter_pending(up1)) == 0  # tier 2 is beyond the ceiling: the platform's
        assert_books_balance(s)
