"""拼团 group buying (rules in domain/group_buy.py): deals, places taken under a burst, and the
group's decision.

`open_group` and `join_group` run in the API's request, in one short transaction each: a join
locks the group's row, so concurrent joins on the last place queue on it and exactly one takes
it; a refused join writes nothing and no payment is ever asked of that buyer. The member's
order then runs like any other until it is paid (OrderWorkflow's group path), and the group's
fate is decided under the same lock (`decide_group`), so a payment is either counted in the
decision or sees it."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker
from temporalio import activity

from activities.catalog import notify
from activities.errors import business_error
from db.group_models import GroupBuy, GroupDeal, GroupSeat
from db.models import Order, Product, Sku, Supplier
from db.presale_models import SkuPresale
from domain.group_buy import (
    TAKEN,
    GroupDecision,
    GroupJoined,
    GroupRefused,
    GroupStatus,
    SeatStatus,
    check_new_deal,
    decide,
    why_not_join,
)
from domain.order_status import OrderStatus

GONE = (OrderStatus.CANCELLED, OrderStatus.REFUNDED)  # orders that hold no place any more


def create_deal(s: Session, *, supplier_id: int, sku_id: int, group_price_fen: int, group_size: int,
                time_limit: timedelta, starts_at: datetime, ends_at: datetime, now: datetime) -> GroupDeal:
    row = s.execute(select(Sku, Product).join(Product, Sku.product_id == Product.id).where(Sku.id == sku_id)).first()
    if row is None:
        raise GroupRefused("SKU_NOT_FOUND", f"SKU {sku_id} does not exist")
    sku, product = row
    if product.supplier_id != supplier_id:
        raise GroupRefused("NOT_YOUR_SKU", f"SKU {sku_id} is not one of yours")
    if product.status != "listed":
        raise GroupRefused("NOT_ON_SALE", f"SKU {sku_id} is not on sale")
    if s.scalar(select(SkuPresale.sku_id).where(SkuPresale.sku_id == sku_id, SkuPresale.active)) is not None:
        raise GroupRefused("PRESALE_SKU", f"SKU {sku_id} is on pre-sale: it cannot be sold in groups too")
    check_new_deal(group_price_fen=group_price_fen, list_price_fen=sku.price_fen, group_size=group_size,
                   time_limit=time_limit, starts_at=starts_at, ends_at=ends_at, now=now)
    deal = GroupDeal(sku_id=sku_id, supplier_id=supplier_id, group_price_fen=group_price_fen, group_size=group_size,
                     time_limit_seconds=int(time_limit.total_seconds()), starts_at=starts_at, ends_at=ends_at)
    s.add(deal)
    s.flush()
    return deal


def open_group(s: Session, *, deal_id: int, buyer_user_id: int, order_no: str, now: datetime) -> tuple[GroupDeal, GroupBuy]:
    """A new group with the buyer's place in it, held by `order_no`. Idempotent by order number."""
    found = _seat_again(s, order_no, buyer_user_id)
    if found is not None:
        return found
    deal = s.get(GroupDeal, deal_id)
    if deal is None:
        raise GroupRefused("GROUP_DEAL_NOT_FOUND", f"group deal {deal_id} does not exist")
    if not deal.active or now >= deal.ends_at:
        raise GroupRefused("GROUP_DEAL_ENDED", "this group deal has ended")
    if now < deal.starts_at:
        raise GroupRefused("GROUP_DEAL_NOT_STARTED", f"this group deal starts at {deal.starts_at:%Y-%m-%d %H:%M:%S} UTC")
    group = GroupBuy(deal_id=deal.id, opener_order_no=order_no, size=deal.group_size, status=GroupStatus.OPENING)
    s.add(group)
    s.flush()
    s.add(GroupSeat(order_no=order_no, group_id=group.id, buyer_user_id=buyer_user_id))
    s.flush()
    return deal, group


def join_group(s: Session, *, group_id: int, buyer_user_id: int, order_no: str, now: datetime) -> tuple[GroupDeal, GroupBuy]:
    """A place in the group for `order_no`, or GroupRefused. Idempotent by order number."""
    found = _seat_again(s, order_no, buyer_user_id)
    if found is not None:
        return found
    group = s.get(GroupBuy, group_id, with_for_update=True)  # the queue for the last place
    if group is None:
        raise GroupRefused("GROUP_NOT_FOUND", f"group {group_id} does not exist")
    taken = taken_places(s, group.id)
    member = buyer_user_id in taken.values()
    refused = why_not_join(status=group.status, deadline=group.deadline, now=now, taken=len(taken), size=group.size,
                           member=member)
    if refused is not None:
        raise refused
    s.add(GroupSeat(order_no=order_no, group_id=group.id, buyer_user_id=buyer_user_id))
    s.flush()
    return s.get(GroupDeal, group.deal_id), group


def _seat_again(s: Session, order_no: str, buyer_user_id: int) -> tuple[GroupDeal, GroupBuy] | None:
    seat = s.get(GroupSeat, order_no)
    if seat is None:
        return None
    if seat.buyer_user_id != buyer_user_id:
        raise GroupRefused("ORDER_NO_TAKEN", "that Idempotency-Key was used for another purchase")
    group = s.get(GroupBuy, seat.group_id)
    return s.get(GroupDeal, group.deal_id), group


def taken_places(s: Session, group_id: int) -> dict[str, int]:
    """order_no → buyer of every place still taken: held or paid, by an order not cancelled or refunded."""
    rows = s.execute(select(GroupSeat.order_no, GroupSeat.buyer_user_id)
                     .outerjoin(Order, Order.order_no == GroupSeat.order_no)
                     .where(GroupSeat.group_id == group_id, GroupSeat.status.in_(TAKEN),
                            func.coalesce(Order.status, OrderStatus.PENDING_PAYMENT).not_in(GONE))).all()
    return dict(rows)


def seat_of(s: Session, order_no: str) -> tuple[GroupSeat, GroupBuy, GroupDeal] | None:
    row = s.execute(select(GroupSeat, GroupBuy, GroupDeal).join(GroupBuy, GroupBuy.id == GroupSeat.group_id)
                    .join(GroupDeal, GroupDeal.id == GroupBuy.deal_id).where(GroupSeat.order_no == order_no)).first()
    return None if row is None else (row[0], row[1], row[2])


def is_group_order(s: Session, order_no: str) -> bool:
    return s.get(GroupSeat, order_no) is not None


def in_undecided_group(s: Session, order_no: str) -> bool:
    """The order holds a place in a group not formed or failed yet."""
    return s.scalar(select(GroupBuy.id).join(GroupSeat, GroupSeat.group_id == GroupBuy.id).where(
        GroupSeat.order_no == order_no, GroupBuy.status.in_((GroupStatus.OPENING, GroupStatus.FORMING)))) is not None


def release(s: Session, order_no: str) -> None:
    """An order cancelled unpaid gives its place back; an opener who never paid ends the group."""
    seat = s.get(GroupSeat, order_no, with_for_update=True)
    if seat is None or seat.status != SeatStatus.HELD:
        return
    seat.status = SeatStatus.LEFT
    group = s.get(GroupBuy, seat.group_id, with_for_update=True)
    if group.status == GroupStatus.OPENING and group.opener_order_no == order_no:
        group.status, group.decided_at = GroupStatus.ABANDONED, datetime.now(UTC)


def paid_members(s: Session, group_id: int) -> list[str]:
    """Members whose payment stands: paid, and their order neither refunded nor being refunded."""
    return list(s.scalars(select(GroupSeat.order_no).join(Order, Order.order_no == GroupSeat.order_no)
                          .where(GroupSeat.group_id == group_id, GroupSeat.status == SeatStatus.PAID,
                                 Order.status == OrderStatus.PAID, Order.open_refunds == 0)
                          .order_by(GroupSeat.created_at, GroupSeat.order_no)))


class GroupActivities:
    def __init__(self, sessions: sessionmaker[Session], platform_fill: Callable[[], bool] = lambda: False):
        self.sessions = sessions
        self.platform_fill = platform_fill  # GROUP_PLATFORM_FILL, read when a group opens

    @activity.defn
    def member_paid(self, order_no: str, counted_at: datetime) -> GroupJoined:
        """Count the member's payment. The opener's payment opens the group to others (its time
        limit starts at `counted_at`, the workflow's clock); a late payer into a group the platform filled takes the platform's place."""
        with self.sessions.begin() as s:
            seat = s.get(GroupSeat, order_no)
            if seat is None:
                raise business_error("NOT_A_GROUP_ORDER", f"order {order_no} holds no place in a group")
            group = s.get(GroupBuy, seat.group_id, with_for_update=True)
            deal = s.get(GroupDeal, group.deal_id)
            opener = group.opener_order_no == order_no
            if seat.status == SeatStatus.HELD:
                seat.status = SeatStatus.PAID
                if opener and group.status == GroupStatus.OPENING:
                    group.status = GroupStatus.FORMING
                    group.deadline = counted_at + timedelta(seconds=deal.time_limit_seconds)
                    group.platform_fill = self.platform_fill()  # the setting when it opened decides its end
                elif group.status == GroupStatus.FORMED and group.platform_filled:
                    group.platform_filled = False
                    _notify_supplier(s, deal, group, f"拼团 {group.id}：平台补位的名额已由买家付款占用")
            return GroupJoined(group_id=group.id, status=group.status, deadline=group.deadline or counted_at,
                               opener=opener)

    @activity.defn
    def decide_group(self, group_id: int, deadline_passed: bool) -> GroupDecision | None:
        """Formed once every place is paid; failed (or filled by the platform, one short) once
        time is up; None while it may still fill. Idempotent: a decided group answers the same."""
        with self.sessions.begin() as s:
            group = s.get(GroupBuy, group_id, with_for_update=True)
            members = paid_members(s, group.id)
            if group.status != GroupStatus.FORMING:
                return GroupDecision(group_id=group.id, status=group.status, members=members,
                                     platform_filled=group.platform_filled)
            fate = decide(paid=len(members), size=group.size, deadline_passed=deadline_passed,
                          platform_fill=group.platform_fill)
            if fate is None:
                return None
            group.status, group.platform_filled = fate
            group.decided_at = datetime.now(UTC)
            deal = s.get(GroupDeal, group.deal_id)
            if group.status == GroupStatus.FORMED:
                _notify_supplier(s, deal, group, f"拼团 {group.id} 已成团（{len(members)} 人付款"
                                 + ("，平台补位 1 人）" if group.platform_filled else "）") + "，请按订单发货")
            return GroupDecision(group_id=group.id, status=group.status, members=members,
                                 platform_filled=group.platform_filled)

    @activity.defn
    def group_status(self, group_id: int) -> GroupStatus:
        with self.sessions() as s:
            return GroupStatus(s.get(GroupBuy, group_id).status)

    def all(self) -> list:
        return [self.member_paid, self.decide_group, self.group_status]


def _notify_supplier(s: Session, deal: GroupDeal, group: GroupBuy, message: str) -> None:
    owner = s.scalar(select(Supplier.owner_user_id).where(Supplier.id == deal.supplier_id))
    notify(s, user_id=owner, kind="group_buy", subject_type="group", subject_id=group.id, message=message,
           key=f"group:{group.id}:{group.status}:{group.platform_filled}")
