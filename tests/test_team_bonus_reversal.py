"""A team bonus already paid is taken back, in the refund's own ledger transaction, when the
sales it was paid on are refunded: exactly the order's share, never more, carried as a negative
balance if the earner has spent it. Its own module: a fresh time-skipping server (see conftest)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from activities.ledger import balance
from db.bonus_models import TeamBonus, TeamBonusSale
from db.models import Promoter
from domain import ledger as rules
from domain.bonuses import team_bonus_taken_back
from domain.money import apply_bps
from domain.settlement import CommissionRunProgress
from tests.helpers import assert_books_balance, make_user, result_skipping_time, return_one_unit
from tests.promoter_helpers import completed_orders
from tests.test_levels_bonuses import PRICE, complete, promoter_with_window, set_bonus_policy


def test_all_refunds_of_an_order_take_back_at_most_its_share():
    for bps in (1, 30, 50, 99):
        for gmv in (1, 333, 19_900, 39_800, 1_000_001):
            taken, refunded_before = 0, 0
            for part in (gmv // 3, gmv // 3, gmv, 7):     # the last ones are capped at what is left
                refunded, back = team_bonus_taken_back(bps=bps, gmv_fen=gmv, refunded_before_fen=refunded_before,
                                                       refund_fen=part)
                refunded_before += refunded
                taken += back
                assert 0 <= back and refunded_before <= gmv
            assert (refunded_before, taken) == (gmv, apply_bps(gmv, bps))


async def test_a_refund_after_the_team_bonus_was_paid_takes_its_share_back(
        api, sandbox, demo, token, temporal_env, sessions, settings, monkeypatch):
    monkeypatch.setattr(settings, "settlement_allow_open_periods", True)
    monkeypatch.setattr(settings, "commission_tiers", 3)  # the ceiling of all upline pay
    buyer, supplier = token(demo.buyer_user_id, "buyer"), token(demo.supplier_user_id, "supplier")
    operator = token(make_user(sessions, "operator", "ops-lv5"), "operator")
    await set_bonus_policy(api, operator, levels=[{"name": "团长", "min_gmv_fen": 10_000, "team_bonus_bps": 30}])
    top, top_user, top_window = promoter_with_window(sessions, "团长")
    with sessions.begin() as s:   # the demo promoter, who sells the order below, is tier 2 from top
        s.get(Promoter, demo.promoter_id).referrer_id = top
    completed_orders(sessions, top, top_window, datetime.now(UTC) - timedelta(minutes=5), 1, total_fen=20_000)
    order_no = await complete(api, sandbox, temporal_env, buyer, supplier, demo, "SFLV000005")
    month = datetime.now(UTC).astimezone(ZoneInfo(settings.settlement_timezone)).strftime("%Y-%m")
    started = await api.post("/settlements/runs", headers=operator, json={"kind": "commission", "period": month})
    assert started.status_code == 201, started.text
    assert (await result_skipping_time(temporal_env, started.json()["run_id"], CommissionRunProgress)).status == "final"
    bonus = apply_bps(2 * PRICE, 30)
    with sessions() as s:
        assert s.get(TeamBonus, (month, top)).amount_fen == bonus
        assert s.get(TeamBonusSale, (month, top, order_no)).gmv_fen == 2 * PRICE
        assert balance(s, rules.promoter_available(top)) == bonus

    line_id = (await api.get(f"/orders/{order_no}", headers=buyer)).json()["lines"][0]["id"]
    await return_one_unit(api, temporal_env.client, buyer, supplier, order_no, line_id, "YTLV000005")
    first_back = apply_bps(PRICE, 30)
    with sessions() as s:
        assert balance(s, rules.promoter_available(top)) == bonus - first_back
        assert s.get(TeamBonusSale, (month, top, order_no)).refunded_fen == PRICE
        assert_books_balance(s)
    await return_one_unit(api, temporal_env.client, buyer, supplier, order_no, line_id, "YTLV000006")
    with sessions() as s:   # both refunds together take back exactly the order's share, no more
        assert balance(s, rules.promoter_available(top)) == 0
        assert s.get(TeamBonusSale, (month, top, order_no)).refunded_fen == 2 * PRICE
        assert balance(s, rules.promoter_available(demo.promoter_id)) == 0
        assert_books_balance(s)
    entries = (await api.get("/wallet/entries", params={"kind": "refund"}, headers=token(top_user, "promoter"))).json()
    assert sorted((e["amount_fen"], e["rule"]) for e in entries) == sorted([
        (-first_back, f"team_bonus_reversal:{month}"), (-(bonus - first_back), f"team_bonus_reversal:{month}")])
