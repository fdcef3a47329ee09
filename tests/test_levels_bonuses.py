"""Levels, team and regional bonuses: all off by default; a level (reached by own sales only)
raises the seller's own rate; a month's team bonus is paid on tier 2-3 sales only, by the
platform, in the commission settlement run; a regional agent earns on goods shipped to their
region, reversed per line on refund and taken from the supplier's share; configs outside the
pay rules are refused. Every test ends with the books balanced."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import func, select

from activities.ledger import balance
from db.bonus_models import BonusPolicyRow, OrderLevel, TeamBonus
from db.models import LedgerAccount, LedgerEntry, LedgerTransaction, OrderLine, Promoter, User, Window
from db.settlement_models import CommissionStatement
from domain import ledger as rules
from domain.bonuses import REGION_LEVELS, Level, level_for, line_extras, team_bonus, validate
from domain.commission import PolicyRefused
from domain.money import BPS_WHOLE, apply_bps
from domain.order_status import OrderStatus
from domain.refunds import remaining_share, share_of
from domain.settlement import CommissionRunProgress
from tests.helpers import (
    assert_books_balance,
    keep_run_history,
    make_user,
    pay,
    place,
    result_skipping_time,
    return_one_unit,
    run_to_end,
    ship_and_deliver,
    wait_status,
)
from tests.promoter_helpers import become_promoter, completed_orders, eventually, stop_promoter_workflows  # noqa: F401

PRICE, FEE_BPS, SKU_BPS = 19_900, 300, 1_500   # the demo tea cake
_n = itertools.count(1)


# --- pure rules (hypothesis where rounding is involved) ------------------------------------------
def _validate(levels, regional=None, depth=3):
    return validate(levels, regional or {}, team_bonus_depth=depth, max_service_fee_bps=500, min_service_fee_bps=100)


@given(paid=st.integers(0, 10**9), fee_bps=st.integers(0, 500), sku_bps=st.integers(0, BPS_WHOLE),
       uplift=st.integers(0, BPS_WHOLE), rates=st.tuples(*[st.integers(0, BPS_WHOLE)] * 3),
       agents=st.sets(st.sampled_from(REGION_LEVELS)))
def test_a_line_never_pays_more_than_its_price_less_the_fee(paid, fee_bps, sku_bps, uplift, rates, agents):
    fee = apply_bps(paid, fee_bps)
    commission = min(apply_bps(paid, sku_bps), paid - fee)
    regional = dict(zip(REGION_LEVELS, rates, strict=True))
    extra = line_extras(paid_fen=paid, service_fee_fen=fee, commission_fen=commission, uplift_bps=uplift,
                        regional_bps=regional, agents=agents)
    assert commission + extra.total_fen <= paid - fee
    assert 0 <= extra.uplift_fen <= apply_bps(paid, uplift)           # rounded down, never up
    assert set(extra.regional_fen) <= agents                           # only appointed agents earn
    for level, amount in extra.regional_fen.items():
        assert 0 < amount <= apply_bps(paid, regional[level])
    if uplift + sum(rates) <= BPS_WHOLE - fee_bps - sku_bps:          # a valid config is never cut short
        assert extra.uplift_fen == apply_bps(paid, uplift)
        assert extra.regional_fen == {k: apply_bps(paid, regional[k]) for k in agents if apply_bps(paid, regional[k])}


@given(gmv=st.integers(0, 10**10), bps=st.integers(0, 50))
def test_team_bonus_rounds_down(gmv, bps):
    level = Level("团长", 1, team_bonus_bps=bps)
    assert team_bonus(gmv, level) == gmv * bps // BPS_WHOLE
    assert team_bonus(gmv, None) == 0


@given(thresholds=st.lists(st.integers(1, 10**9), min_size=1, max_size=5, unique=True), gmv=st.integers(0, 2 * 10**9))
def test_the_level_is_the_highest_threshold_own_sales_reach(thresholds, gmv):
    policy = _validate([Level(f"L{i}", t) for i, t in enumerate(sorted(thresholds))])
    reached = level_for(policy, gmv)
    below = [t for t in sorted(thresholds) if t <= gmv]
    assert (reached[1].min_gmv_fen if reached else None) == (below[-1] if below else None)


def test_configs_outside_the_pay_rules_are_refused():
    ok = _validate([Level("达人", 1_000, uplift_bps=100), Level("团长", 50_000, uplift_bps=200, team_bonus_bps=50)],
                   {"province": 50, "city": 50, "county": 100})
    assert not ok.is_off and _validate([]).is_off
    for levels, regional, depth in [
        ([Level("团长", 1_000)], {}, 4),                                           # deeper than 3 tiers
        ([Level("团长", 1_000, uplift_bps=9_000)], {"county": 600}, 3),           # beyond price less fee
        ([Level("团长", 1_000, team_bonus_bps=60)], {}, 3),                       # 2 × 60 bps > 1% fee
        ([Level("达人", 5_000), Level("团长", 5_000)], {}, 3),                     # thresholds must rise
        ([Level("达人", 0, uplift_bps=100)], {}, 3),                               # a level is earned by selling
        ([Level("达人", 1), Level("达人", 2)], {}, 3),                              # names are unique
        ([], {"street": 10}, 3),                                                   # no such region level
    ]:
        try:
            _validate(levels, regional, depth)
        except PolicyRefused:
            continue
        raise AssertionError(f"accepted {levels} {regional} depth {depth}")


# --- helpers ----------------------------------------------------------------------------------------
def promoter_with_window(sessions, name: str, referrer_id: int | None = None, status: str = "active") -> tuple[int, int, int]:
    """(promoter id, user id, window id)."""
    with sessions.begin() as s:
        user = User(role="promoter", openid=f"oLEVEL{next(_n):022d}", display_name=name)
        s.add(user)
        s.flush()
        promoter = Promoter(user_id=user.id, nickname=name, status=status, referrer_id=referrer_id)
        s.add(promoter)
        s.flush()
        window = Window(promoter_id=promoter.id, name=f"{name}的橱窗")
        s.add(window)
        s.flush()
        return promoter.id, user.id, window.id


async def set_bonus_policy(api, operator, **body):
    r = await api.put("/bonus-policy", headers=operator, json=body)
    assert r.status_code == 200, r.text
    return r.json()


async def complete(api, sandbox, env, buyer, supplier, demo, waybill: str, **extra) -> str:
    order_no = (await place(api, buyer, demo, **extra)).json()["order_no"]
    await pay(sandbox, order_no)
    await wait_status(env.client, order_no, OrderStatus.PAID)
    await ship_and_deliver(api, sandbox, env.client, supplier, order_no, waybill)
    assert (await run_to_end(env, order_no)).status == OrderStatus.COMPLETED
    return order_no


def commission_of(s, order_no: str, account: str) -> int:
    from db.models import LedgerAccount, LedgerEntry

    return -(s.scalar(select(func.coalesce(func.sum(LedgerEntry.amount_fen), 0))
                      .join(LedgerAccount, LedgerAccount.id == LedgerEntry.account_id)
                      .where(LedgerEntry.order_no == order_no, LedgerAccount.code == account)) or 0)


# --- end to end --------------------------------------------------------------------------------------
async def test_defaults_pay_nothing_extra(api, sandbox, demo, token, temporal_env, sessions):
    buyer, supplier = token(demo.buyer_user_id, "buyer"), token(demo.supplier_user_id, "supplier")
    operator = token(make_user(sessions, "operator", "ops-lv0"), "operator")
    agent, _, _ = promoter_with_window(sessions, "上海代理")
    # an agent appointed, the demo promoter with plenty of sales: with the default config, no extra
    appointed = await api.put("/regional-agents", headers=operator,
                              json={"level": "province", "province": "上海", "promoter_id": agent})
    assert appointed.status_code == 200, appointed.text
    completed_orders(sessions, demo.promoter_id, demo.window_id, datetime.now(UTC) - timedelta(days=1), 5,
                     total_fen=100_000)
    policy = (await api.get("/bonus-policy", headers=operator)).json()
    assert policy["current"]["version"] == 1 and policy["current"]["levels"] == []
    assert policy["current"]["regional_bps"] == {"province": 0, "city": 0, "county": 0}

    order_no = await complete(api, sandbox, temporal_env, buyer, supplier, demo, "SFLV000001")
    paid, fee = 2 * PRICE, apply_bps(2 * PRICE, FEE_BPS)
    sku_commission = apply_bps(2 * PRICE, SKU_BPS)
    with sessions() as s:
        level = s.get(OrderLevel, order_no)
        assert (level.bonus_version, level.level_name, level.uplift_fen, level.regional_fen) == (1, None, 0, 0)
        assert commission_of(s, order_no, rules.promoter_available(demo.promoter_id)) == sku_commission
        assert balance(s, rules.promoter_available(agent)) == 0 and balance(s, rules.promoter_pending(agent)) == 0
        assert balance(s, rules.supplier_payable(demo.supplier_id)) == paid - fee - sku_commission
        assert s.scalar(select(func.sum(OrderLine.commission_fen)).where(OrderLine.order_no == order_no)) \
            == sku_commission
        assert s.scalar(select(func.count()).select_from(LedgerTransaction).where(
            LedgerTransaction.kind.in_(["team_bonus", "regional_release"]))) == 0
        assert_books_balance(s)


async def test_a_level_reached_by_own_sales_raises_the_sellers_rate(api, sandbox, demo, token, temporal_env, sessions):
    buyer, supplier = token(demo.buyer_user_id, "buyer"), token(demo.supplier_user_id, "supplier")
    operator = token(make_user(sessions, "operator", "ops-lv1"), "operator")
    seller = token(demo.promoter_user_id, "promoter")
    await set_bonus_policy(api, operator, levels=[
        {"name": "达人", "min_gmv_fen": 10_000, "uplift_bps": 0},
        {"name": "团长", "min_gmv_fen": 300_000, "uplift_bps": 200},
        {"name": "联创", "min_gmv_fen": 3_000_000, "uplift_bps": 300}], note="levels on")
    # buying from one's own window never counts toward a level
    completed_orders(sessions, demo.promoter_id, demo.window_id, datetime.now(UTC) - timedelta(days=2), 10,
                     buyer_user_id=demo.promoter_user_id, total_fen=100_000)
    mine = (await api.get("/promoters/me/level", headers=seller)).json()
    assert (mine["own_gmv_fen"], mine["level"], mine["next_level"]) == (0, None, "达人"), mine
    # real sales within the level period do; older ones do not
    completed_orders(sessions, demo.promoter_id, demo.window_id, datetime.now(UTC) - timedelta(days=3), 4,
                     total_fen=100_000)
    completed_orders(sessions, demo.promoter_id, demo.window_id, datetime.now(UTC) - timedelta(days=200), 50,
                     total_fen=100_000)
    mine = (await api.get("/promoters/me/level", headers=seller)).json()
    assert (mine["own_gmv_fen"], mine["level"], mine["uplift_bps"], mine["next_min_gmv_fen"]) \
        == (400_000, "团长", 200, 3_000_000), mine

    order_no = await complete(api, sandbox, temporal_env, buyer, supplier, demo, "SFLV000002")
    paid, fee = 2 * PRICE, apply_bps(2 * PRICE, FEE_BPS)
    sku_commission, uplift = apply_bps(paid, SKU_BPS), apply_bps(paid, 200)
    with sessions() as s:
        level = s.get(OrderLevel, order_no)
        assert (level.bonus_version, level.level_name, level.level_rank, level.own_gmv_fen, level.uplift_fen) \
            == (2, "团长", 2, 400_000, uplift)
        assert commission_of(s, order_no, rules.promoter_available(demo.promoter_id)) == sku_commission + uplift
        assert balance(s, rules.supplier_payable(demo.supplier_id)) == paid - fee - sku_commission - uplift
        assert_books_balance(s)
    entries = (await api.get("/wallet/entries", params={"kind": "commission_pending"}, headers=seller)).json()
    assert sorted(e["amount_fen"] for e in entries) == sorted([sku_commission, uplift])
    assert any(e["rule"].startswith("level:2:团长:uplift:200bps") for e in entries)
    shown = (await api.get("/promoters/me/level/orders", headers=seller)).json()  # the recorded level, read
    assert [(o["order_no"], o["level"], o["uplift_fen"], o["own_gmv_fen"]) for o in shown] == [
        (order_no, "团长", uplift, 400_000)], shown


async def test_a_regional_agent_earns_on_goods_shipped_to_the_region_reversed_per_line_on_refund(
        api, sandbox, demo, token, temporal_env, sessions):
    buyer, supplier = token(demo.buyer_user_id, "buyer"), token(demo.supplier_user_id, "supplier")
    operator = token(make_user(sessions, "operator", "ops-lv2"), "operator")
    province_agent, province_user, _ = promoter_with_window(sessions, "上海代理")
    county_agent, _, _ = promoter_with_window(sessions, "浦东代理")
    other_agent, _, _ = promoter_with_window(sessions, "杭州代理")
    await set_bonus_policy(api, operator, regional_bps={"province": 100, "city": 0, "county": 200})
    for body in ({"level": "province", "province": "上海", "promoter_id": province_agent},
                 {"level": "county", "province": "上海", "city": "上海", "county": "浦东新区", "promoter_id": county_agent},
                 {"level": "city", "province": "浙江", "city": "杭州", "promoter_id": other_agent}):
        r = await api.put("/regional-agents", headers=operator, json=body)
        assert r.status_code == 200, r.text
    bad = await api.put("/regional-agents", headers=operator,
                        json={"level": "county", "province": "上海", "promoter_id": county_agent})
    assert (bad.status_code, bad.json()["code"]) == (422, "BAD_REGION")
    assert (await api.put("/regional-agents", headers=buyer, json={"level": "province", "province": "上海",
                                                                    "promoter_id": county_agent})).status_code == 403
    listed = (await api.get("/regional-agents", headers=operator)).json()
    assert sorted(a["region"] for a in listed) == ["上海", "上海/上海/浦东新区", "浙江/杭州"]

    order_no = (await place(api, buyer, demo)).json()["order_no"]  # 2 units shipped to 上海 浦东新区
    await pay(sandbox, order_no)
    await wait_status(temporal_env.client, order_no, OrderStatus.PAID)
    paid, fee = 2 * PRICE, apply_bps(2 * PRICE, FEE_BPS)
    sku_commission = apply_bps(paid, SKU_BPS)
    province_fen, county_fen = apply_bps(paid, 100), apply_bps(paid, 200)
    with sessions() as s:
        line = s.scalar(select(OrderLine).where(OrderLine.order_no == order_no))
        assert line.commission_fen == sku_commission + province_fen + county_fen
        assert balance(s, rules.promoter_pending(province_agent)) == province_fen
        assert balance(s, rules.promoter_pending(county_agent)) == county_fen
        assert balance(s, rules.promoter_pending(other_agent)) == 0
        assert s.get(OrderLevel, order_no).regional_fen == province_fen + county_fen
    await ship_and_deliver(api, sandbox, temporal_env.client, supplier, order_no, "SFLV000003")
    refund_no = await return_one_unit(api, temporal_env.client, buyer, supplier, order_no, line.id, "YTLV000003")
    assert (await run_to_end(temporal_env, order_no)).status == OrderStatus.COMPLETED

    kept = {who: posted - share_of(posted, 2, 0, 1) for who, posted in
            ((province_agent, province_fen), (county_agent, county_fen), (demo.promoter_id, sku_commission))}
    with sessions() as s:
        for who, fen in kept.items():
            assert balance(s, rules.promoter_available(who)) == fen, who
            assert balance(s, rules.promoter_pending(who)) == 0
        reversed_by = set(s.execute(
            select(LedgerAccount.code, LedgerEntry.tier).join(LedgerEntry, LedgerEntry.account_id == LedgerAccount.id)
            .join(LedgerTransaction, LedgerTransaction.id == LedgerEntry.transaction_id)
            .where(LedgerTransaction.idempotency_key == f"refund:{refund_no}",
                   LedgerEntry.rule == "commission_reversal")).all())
        assert reversed_by == {(rules.promoter_pending(province_agent), 0), (rules.promoter_pending(county_agent), 0),
                               (rules.promoter_pending(demo.promoter_id), 1)}
        # the supplier's share: paid − service fee − commission − regional bonus, for the unit kept
        total_commission = sku_commission + province_fen + county_fen
        assert balance(s, rules.supplier_payable(demo.supplier_id)) == (
            remaining_share(paid, 2, 1) - remaining_share(fee, 2, 1) - remaining_share(total_commission, 2, 1))
        assert_books_balance(s)
    agent_detail = (await api.get("/wallet/entries", headers=token(province_user, "promoter"))).json()
    assert [(e["kind"], e["account"]) for e in agent_detail] == [
        ("commission_pending", "pending"), ("refund", "pending"), ("regional_release", "pending"),
        ("regional_release", "available")]
    assert agent_detail[-1]["amount_fen"] == kept[province_agent]

    # a revoked agent earns nothing more; the region is free for another
    revoked = await api.delete(f"/regional-agents/{listed[0]['id']}", headers=operator)
    assert revoked.status_code == 200 and revoked.json()["active"] is False
    assert len((await api.get("/regional-agents", headers=operator)).json()) == 2


async def test_refused_configs_change_nothing(api, demo, token, sessions):
    operator = token(make_user(sessions, "operator", "ops-lv3"), "operator")
    for body, fragment in [
        ({"levels": [{"name": "团长", "min_gmv_fen": 1_000}], "team_bonus_depth": 4}, "never deeper than 3 tiers"),
        ({"levels": [{"name": "团长", "min_gmv_fen": 1_000, "uplift_bps": 9_000}],
          "regional_bps": {"county": 600}}, "price less the platform fee"),
        ({"levels": [{"name": "团长", "min_gmv_fen": 1_000, "team_bonus_bps": 60}]}, "minimum service fee"),
        ({"levels": [{"name": "达人", "min_gmv_fen": 0, "uplift_bps": 100}]}, "never given for joining"),
        ({"levels": [{"name": "达人", "min_gmv_fen": 9_000}, {"name": "团长", "min_gmv_fen": 5_000}]}, "rising"),
    ]:
        r = await api.put("/bonus-policy", headers=operator, json=body)
        assert (r.status_code, r.json()["code"]) == (422, "POLICY_REFUSED"), r.text
        assert fragment in r.json()["message"], r.json()
    more_tiers = await api.put("/commission-policy", headers=operator, json={"tiers": 4, "tier_rates_bps": [1] * 4})
    assert (more_tiers.status_code, more_tiers.json()["code"]) == (422, "POLICY_REFUSED")
    not_operator = await api.put("/bonus-policy", headers=token(make_user(sessions, "support", "kf-lv3"), "support"),
                                 json={"levels": []})
    assert not_operator.status_code == 403
    with sessions() as s:
        assert s.scalar(select(func.count()).select_from(BonusPolicyRow)) == 0  # nothing written
    shown = (await api.get("/bonus-policy", headers=operator)).json()
    assert [v["version"] for v in shown["versions"]] == [1] and shown["current"]["levels"] == []
    with sessions() as s:
        assert_books_balance(s)


async def test_the_team_bonus_is_paid_on_tier_2_and_3_sales_only(api, demo, token, temporal_env, sessions, settings,
                                                                 monkeypatch):
    monkeypatch.setattr(settings, "settlement_allow_open_periods", True)
    monkeypatch.setattr(settings, "commission_tiers", 3)  # the ceiling of all upline pay: 3 tiers
    operator = token(make_user(sessions, "operator", "ops-lv4"), "operator")
    await set_bonus_policy(api, operator, levels=[
        {"name": "团长", "min_gmv_fen": 10_000, "team_bonus_bps": 30},
        {"name": "运营中心", "min_gmv_fen": 150_000, "team_bonus_bps": 50}])
    top, top_user, top_window = promoter_with_window(sessions, "运营中心")
    a, _, a_window = promoter_with_window(sessions, "A", referrer_id=top)       # tier 2 from top
    b, _, b_window = promoter_with_window(sessions, "B", referrer_id=a)         # tier 3 from top
    c, _, c_window = promoter_with_window(sessions, "C", referrer_id=b)         # tier 4 from top: never
    paused, _, paused_window = promoter_with_window(sessions, "P", referrer_id=top, status="paused")
    now = datetime.now(UTC)
    completed_orders(sessions, top, top_window, now - timedelta(minutes=5), 1, total_fen=20_000)
    completed_orders(sessions, a, a_window, now - timedelta(minutes=5), 1, total_fen=100_000)
    completed_orders(sessions, a, a_window, now - timedelta(minutes=5), 3, total_fen=1_000_000,
                     buyer_user_id=s_user(sessions, a))                            # A buying: not a sale
    completed_orders(sessions, b, b_window, now - timedelta(minutes=5), 1, total_fen=200_000)
    completed_orders(sessions, c, c_window, now - timedelta(minutes=5), 1, total_fen=400_000)
    completed_orders(sessions, paused, paused_window, now - timedelta(minutes=5), 1, total_fen=50_000)
    month = now.astimezone(ZoneInfo(settings.settlement_timezone)).strftime("%Y-%m")

    started = await api.post("/settlements/runs", headers=operator, json={"kind": "commission", "period": month})
    assert started.status_code == 201, started.text
    run_id = started.json()["run_id"]
    result = await result_skipping_time(temporal_env, run_id, CommissionRunProgress)
    assert result.status == "final"
    # top (团长 by its own 20,000): 30 bps of A + P (its tier 2) + B (tier 3); C is tier 4: never.
    # A (团长, 100,000 sold; its own purchases do not count): 30 bps of B + C. B (运营中心, 200,000):
    # 50 bps of C. C: no downline. P: paused, earns no new bonus.
    expected = {top: apply_bps(100_000 + 50_000 + 200_000, 30), a: apply_bps(200_000 + 400_000, 30),
                b: apply_bps(400_000, 50)}
    with sessions() as s:
        paid = {t.promoter_id: t.amount_fen for t in s.scalars(select(TeamBonus).where(TeamBonus.month == month))}
        assert paid == expected
        for pid, fen in expected.items():
            assert balance(s, rules.promoter_available(pid)) == fen
            statement = s.scalar(select(CommissionStatement).where(CommissionStatement.month == month,
                                                                   CommissionStatement.promoter_id == pid))
            assert (statement.team_bonus_fen, statement.released_fen, statement.closing_fen) == (fen, 0, fen)
        assert balance(s, rules.PLATFORM_REVENUE) == -sum(expected.values())  # paid by the platform
        assert_books_balance(s)
    assert result.totals.team_bonus_fen == sum(expected.values())
    detail = (await api.get("/wallet/entries", params={"kind": "team_bonus"}, headers=token(top_user, "promoter"))).json()
    assert [(e["kind"], e["amount_fen"]) for e in detail] == [("team_bonus", expected[top])]
    shown = (await api.get("/settlements/statements", params={"month": month}, headers=token(top_user, "promoter")))
    assert shown.json()[0]["team_bonus_fen"] == expected[top], shown.text
    bonus = (await api.get("/promoters/me/team-bonuses", headers=token(top_user, "promoter"))).json()
    assert [(b["month"], b["level"], b["downline_gmv_fen"], b["amount_fen"], b["orders"]) for b in bonus] == [
        (month, "团长", 350_000, expected[top], 3)], bonus
    await keep_run_history(temporal_env, run_id, None, "settlement_commission_team_bonus")

    # the team view: tier 1 is me, tiers 2-3 below, never deeper
    team = (await api.get("/promoters/me/team", headers=token(top_user, "promoter"))).json()
    assert [(t["tier"], t["members"], t["gmv_fen"]) for t in team["tiers"]] == [
        (1, 1, 20_000), (2, 2, 150_000), (3, 1, 200_000)]


async def test_the_team_bonus_with_one_tier_pays_nothing(api, demo, token, temporal_env, sessions, settings,
                                                        monkeypatch):
    """COMMISSION_TIERS is the one ceiling of all upline pay: with 1 tier (the default) a team
    bonus is refused, and one stored while the ceiling was higher pays nothing once it is 1."""
    monkeypatch.setattr(settings, "settlement_allow_open_periods", True)
    operator = token(make_user(sessions, "operator", "ops-lv6"), "operator")
    team_levels = [{"name": "团长", "min_gmv_fen": 10_000, "team_bonus_bps": 30}]
    refused = await api.put("/bonus-policy", headers=operator, json={"levels": team_levels})
    assert (refused.status_code, refused.json()["code"]) == (422, "POLICY_REFUSED"), refused.text
    assert "COMMISSION_TIERS is 1" in refused.json()["message"]
    monkeypatch.setattr(settings, "commission_tiers", 2)
    too_deep = await api.put("/bonus-policy", headers=operator, json={"levels": team_levels, "team_bonus_depth": 3})
    assert (too_deep.status_code, too_deep.json()["code"]) == (422, "POLICY_REFUSED"), too_deep.text
    assert "COMMISSION_TIERS caps every upline pay at 2 tiers" in too_deep.json()["message"]
    with sessions() as s:
        assert s.scalar(select(func.count()).select_from(BonusPolicyRow)) == 0  # nothing written
    monkeypatch.setattr(settings, "commission_tiers", 3)
    await set_bonus_policy(api, operator, levels=team_levels)                  # stored at depth 3
    monkeypatch.setattr(settings, "commission_tiers", 1)                       # the ceiling lowered

    top, top_user, top_window = promoter_with_window(sessions, "团长1")
    a, _, a_window = promoter_with_window(sessions, "A1", referrer_id=top)
    then = datetime.now(UTC) - timedelta(days=40)  # a month of its own: runs are one per month
    completed_orders(sessions, top, top_window, then, 1, total_fen=20_000)
    completed_orders(sessions, a, a_window, then, 2, total_fen=100_000)
    month = then.astimezone(ZoneInfo(settings.settlement_timezone)).strftime("%Y-%m")
    started = await api.post("/settlements/runs", headers=operator, json={"kind": "commission", "period": month})
    assert started.status_code == 201, started.text
    result = await result_skipping_time(temporal_env, started.json()["run_id"], CommissionRunProgress)
    assert result.status == "final" and result.totals.team_bonus_fen == 0
    with sessions() as s:
        assert s.scalar(select(func.count()).select_from(TeamBonus)) == 0
        assert s.scalar(select(func.count()).select_from(LedgerTransaction).where(
            LedgerTransaction.kind == "team_bonus")) == 0
        assert balance(s, rules.promoter_available(top)) == 0
        assert_books_balance(s)


def s_user(sessions, promoter_id: int) -> int:
    with sessions() as s:
        return s.scalar(select(Promoter.user_id).where(Promoter.id == promoter_id))


async def test_a_promoter_can_leave_and_keeps_what_was_earned(api, token, sessions, temporal_env,
                                                             stop_promoter_workflows):
    me = await become_promoter(api, token, sessions, 701)
    left = await api.post("/promoters/me/leave", headers=me["headers"])
    assert left.status_code == 202, left.text

    async def gone():
        with sessions() as s:
            return s.scalar(select(Promoter.status).where(Promoter.id == me["promoter_id"])) == "left"

    await eventually(gone, what="promoter left")
    again = await api.post("/promoters/me/leave", headers=me["headers"])
    assert (again.status_code, again.json()["code"]) == (409, "ALREADY_LEFT")
    with sessions() as s:
        assert_books_balance(s)
