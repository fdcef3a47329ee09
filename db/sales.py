"""The one query for "sales" (the rule is domain/sales.py): used by the assessment and revival
(count_completed_sales), levels and the team bonus (activities/bonuses.py) and the team view
(GET /promoters/me/team), so all of them give the same figures for the same orders."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Select, and_, case, exists, func, or_, select
from sqlalchemy.orm import Session, aliased

from db.models import Order, Promoter
from db.order_models import Refund
from db.promoter_models import OrderCommissionPolicy
from db.risk_models import RiskFlag
from db.storefront_models import OrderFreight
from domain.order_status import OrderStatus
from domain.refunds import RefundStatus
from domain.risk import RiskStatus
from domain.sales import SELF_PURCHASE_DEPTH

# flags that keep an order out of sales: awaiting review, or confirmed (a real finding)
FLAGS_EXCLUDING = (RiskStatus.OPEN.value, RiskStatus.CONFIRMED.value)


def _not_self_purchased(seller):
    """The buyer is not the seller nor any upline within SELF_PURCHASE_DEPTH, and the order was
    not recorded as a self-purchase when it was paid (the chain as it was then)."""
    conditions = [Order.buyer_user_id != seller.user_id]
    below, joins = seller, []
    for _ in range(SELF_PURCHASE_DEPTH - 1):
        up = aliased(Promoter)
        joins.append((up, up.id == below.referrer_id))
        conditions.append(or_(up.user_id.is_(None), Order.buyer_user_id != up.user_id))
        below = up
    recorded = exists().where(OrderCommissionPolicy.order_no == Order.order_no, OrderCommissionPolicy.self_purchase)
    return joins, and_(*conditions, ~recorded)


def flagged():
    """An order-level risk flag on the order not cleared (open or confirmed)."""
    return exists().where(RiskFlag.order_no == Order.order_no, RiskFlag.subject_type == "order",
                          RiskFlag.status.in_(FLAGS_EXCLUDING))


def sales(start: datetime | None = None, end: datetime | None = None,
          promoter_ids: list[int] | None = None) -> Select:
    """(promoter_id, order_no, gmv) of each sale completed in [start, end) (open ends: all time)."""
    refunded = (select(Refund.order_no, func.sum(Refund.amount_fen).label("fen"))
                .where(Refund.status == RefundStatus.REFUNDED).group_by(Refund.order_no).subquery())
    # goods only: the freight the order kept is the supplier's delivery charge, no sale
    freight_refund = aliased(Refund)
    kept_freight = case((freight_refund.status == RefundStatus.REFUNDED, 0),
                        else_=func.coalesce(OrderFreight.freight_fen, 0))
    gmv = Order.total_fen - func.coalesce(refunded.c.fen, 0) - kept_freight
    seller = aliased(Promoter)
    joins, not_self = _not_self_purchased(seller)
    query = (select(Order.promoter_id.label("promoter_id"), Order.order_no.label("order_no"), gmv.label("gmv"))
             .join(seller, seller.id == Order.promoter_id))
    for up, on in joins:
        query = query.outerjoin(up, on)
    query = (query.outerjoin(refunded, refunded.c.order_no == Order.order_no)
             .outerjoin(OrderFreight, OrderFreight.order_no == Order.order_no)
             .outerjoin(freight_refund, freight_refund.refund_no == OrderFreight.refund_no)
             .where(Order.status == OrderStatus.COMPLETED, not_self, ~flagged(), gmv > 0))
    if start is not None:
        query = query.where(Order.completed_at >= start)
    if end is not None:
        query = query.where(Order.completed_at < end)
    if promoter_ids is not None:
        query = query.where(Order.promoter_id.in_(promoter_ids))
    return query


def sales_by_promoter(s: Session, promoter_ids: list[int] | None, start: datetime | None = None,
                      end: datetime | None = None) -> dict[int, tuple[int, int]]:
    """promoter id → (orders, GMV fen) of their sales completed in [start, end)."""
    if promoter_ids is not None and not promoter_ids:
        return {}
    rows = sales(start, end, promoter_ids).subquery()
    query = select(rows.c.promoter_id, func.count(), func.sum(rows.c.gmv)).group_by(rows.c.promoter_id)
    return {int(pid): (int(n), int(gmv)) for pid, n, gmv in s.execute(query).all()}


def sales_total(s: Session, promoter_ids: list[int], start: datetime | None = None,
                end: datetime | None = None) -> tuple[int, int]:
    """(orders, GMV fen) of these promoters' sales together."""
    found = sales_by_promoter(s, promoter_ids, start, end).values()
    return sum(n for n, _ in found), sum(g for _, g in found)


def order_sales(s: Session, promoter_ids: list[int], start: datetime | None = None,
                end: datetime | None = None) -> dict[str, int]:
    """order no → GMV of each sale of these promoters completed in [start, end)."""
    if not promoter_ids:
        return {}
    return {no: int(gmv) for _, no, gmv in s.execute(sales(start, end, promoter_ids)).all()}
