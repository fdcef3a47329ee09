"""One rule for "sales" (domain/sales.py, queried by db/sales.py): the assessment, the levels,
the team bonus and the team view give the same figures for the same orders — completed, not
self-purchased (by the seller or an upline), net of refunds, flagged orders left out until
support clears the flag."""

from __future__ import annotations

import itertools
import os
from datetime import UTC, datetime, timedelta

from activities import bonuses
from activities.promoters import PromoterActivities
from db.models import Order, Promoter, User, Window
from db.order_models import Refund
from db.risk_models import RiskFlag
from db.sales import order_sales
from domain.assessment import SalesWindow
from domain.sales import is_self_purchase, net_sale_fen
from tests.helpers import ADDRESS, assert_books_balance

_n = itertools.count(1)
PRICE = 10_000


def test_the_rule_in_words():
    assert is_self_purchase(7, [7, 8, 9]) and is_self_purchase(9, [7, 8, 9])
    assert not is_self_purchase(5, [7, 8, 9]) and not is_self_purchase(10, [7, 8, 9, 10])  # beyond 3 tiers
    assert net_sale_fen(10_000, 4_000) == 6_000 and net_sale_fen(10_000, 10_000) == 0


def _promoter(s, name: str, referrer_id: int | None = None) -> tuple[int, int, int]:
    user = User(role="promoter", openid=f"oSALES{os.getpid()}x{next(_n):08d}", display_name=name)
    s.add(user)
    s.flush()
    promoter = Promoter(user_id=user.id, nickname=name, referrer_id=referrer_id)
    s.add(promoter)
    s.flush()
    window = Window(promoter_id=promoter.id, name=f"{name}的橱窗")
    s.add(window)
    s.flush()
    return promoter.id, user.id, window.id


def _order(s, promoter_id: int, window_id: int, buyer_user_id: int, at: datetime) -> str:
    no = f"S{os.getpid() % 10_000:04d}{next(_n):012d}"
    s.add(Order(order_no=no, buyer_user_id=buyer_user_id, window_id=window_id, promoter_id=promoter_id,
                status="COMPLETED", total_fen=PRICE, shipping_address=ADDRESS, paid_at=at, completed_at=at))
    s.flush()
    return no


def _refund(s, order_no: str, buyer_user_id: int, fen: int) -> None:
    s.add(Refund(refund_no=f"R{order_no[1:]}", order_no=order_no, buyer_user_id=buyer_user_id, kind="return",
                 status="REFUNDED", amount_fen=fen))


def _flag(s, order_no: str, status: str) -> None:
    s.add(RiskFlag(kind="shared_device", subject_type="order", subject_id=order_no, order_no=order_no,
                   detail="test", status=status))


async def test_assessment_levels_and_team_view_count_the_same_sales(api, token, sessions, temporal_env):
    at = datetime.now(UTC) - timedelta(days=1)
    with sessions.begin() as s:
        up, up_user, _ = _promoter(s, "上级")
        seller, seller_user, window = _promoter(s, "推客", referrer_id=up)
        shopper = User(role="buyer", openid=f"oSHOP{os.getpid()}x{next(_n):08d}")
        s.add(shopper)
        s.flush()
        b = shopper.id
        real = [_order(s, seller, window, b, at) for _ in range(3)]          # 3 sales: 30,000
        for _ in range(2):
            _order(s, seller, window, seller_user, at)                       # the seller buying: no sale
        _order(s, seller, window, up_user, at)                               # the upline buying: no sale
        part = _order(s, seller, window, b, at)
        _refund(s, part, b, 4_000)                                           # counts for 6,000
        whole = _order(s, seller, window, b, at)
        _refund(s, whole, b, PRICE)                                          # refunded in full: no sale
        _flag(s, _order(s, seller, window, b, at), "open")                   # flagged: not until cleared
        _flag(s, _order(s, seller, window, b, at), "confirmed")              # a real finding: never
        cleared = _order(s, seller, window, b, at)
        _flag(s, cleared, "cleared")                                         # cleared: counts, 10,000
        s.add(Order(order_no=f"X{next(_n):015d}", buyer_user_id=b, window_id=window, promoter_id=seller,
                    status="RECEIVED", total_fen=PRICE, shipping_address=ADDRESS, paid_at=at))  # not completed
    orders, gmv = 5, 3 * PRICE + 6_000 + PRICE

    # the assessment (and revival) count: the activity the promoter's cycle calls
    counted = PromoterActivities(sessions).count_sales(
        SalesWindow(promoter_id=seller, start=at - timedelta(days=1), end=datetime.now(UTC)))
    assert counted == orders
    # levels (and the team bonus, on the same orders)
    level = (await api.get("/promoters/me/level", headers=token(seller_user, "promoter"))).json()
    assert level["own_gmv_fen"] == gmv, level
    with sessions() as s:
        assert bonuses.sales_gmv(s, [seller], at - timedelta(days=1), datetime.now(UTC)) == {seller: gmv}
        by_order = order_sales(s, [seller], at - timedelta(days=1), datetime.now(UTC))
        assert len(by_order) == orders and sum(by_order.values()) == gmv
        assert set(real) | {part, cleared} == set(by_order)
    # the team view: the seller's own tier, and the upline's tier 2
    mine = (await api.get("/promoters/me/team", headers=token(seller_user, "promoter"))).json()
    assert (mine["tiers"][0]["completed_orders"], mine["tiers"][0]["gmv_fen"]) == (orders, gmv), mine
    theirs = (await api.get("/promoters/me/team", headers=token(up_user, "promoter"))).json()
    assert [(t["tier"], t["completed_orders"], t["gmv_fen"]) for t in theirs["tiers"]][:2] == [
        (1, 0, 0), (2, orders, gmv)], theirs
    with sessions() as s:
        assert_books_balance(s)
