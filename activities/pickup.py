"""Pickup (O2O 核销) side effects: issuing the code on payment and recording the scan.
The code itself never enters workflow history: it is derived from the order number with a
server key, and only its keyed hash is stored for the outlet's lookup."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker
from temporalio import activity

from activities.catalog import notify
from activities.order_events import record_event
from db.models import Order
from db.order_models import Outlet, PickupCode
from domain.keys import KeyRing
from domain.order_status import OrderStatus
from domain.pickup import code_hash, pickup_code


class PickupActivities:
    def __init__(self, sessions: sessionmaker[Session], code_key: str):
        self.sessions = sessions
        self.key = code_key

    @activity.defn
    def issue_pickup_code(self, order_no: str, expires_at: datetime) -> int:
        """Issue the order's code once; returns the outlet. A collision with another order's
        code (one in 10^12) moves to the next derived code."""
        for attempt in range(5):
            try:
                with self.sessions.begin() as s:
                    existing = s.get(PickupCode, order_no)
                    if existing is not None:
                        return existing.outlet_id
                    order = s.get(Order, order_no)
                    code = pickup_code(self.key, order_no, attempt)
                    s.add(PickupCode(order_no=order_no, outlet_id=order.outlet_id, attempt=attempt,
                                     code_hash=code_hash(self.key, code), code_tail=code[-4:],
                                     expires_at=expires_at))
                    s.flush()
                    outlet = s.get(Outlet, order.outlet_id)
                    notify(s, user_id=order.buyer_user_id, kind="pickup_code", subject_type="order",
                           subject_id=order_no, key=f"order:{order_no}:pickup_code",
                           message=f"请凭取货码到「{outlet.name}」自提（{outlet.address}），"
                                   f"有效期至 {expires_at:%Y-%m-%d %H:%M}")
                    record_event(s, order_no, OrderStatus.PAID, f"pickup code …{code[-4:]} issued",
                                 f"order:{order_no}:pickup_code")
                    return order.outlet_id
            except IntegrityError:
                continue
        raise RuntimeError(f"could not issue a unique pickup code for {order_no}")

    @activity.defn
    def record_pickup(self, order_no: str, staff_user_id: int) -> None:
        with self.sessions.begin() as s:
            pickup = s.get(PickupCode, order_no, with_for_update=True)
            order = s.get(Order, order_no, with_for_update=True)
            if pickup.status == "picked_up":
                return
            pickup.status, pickup.picked_up_at = "picked_up", datetime.now(UTC)
            pickup.verified_by_user_id = staff_user_id
            if order.status == OrderStatus.PAID:
                order.status = OrderStatus.RECEIVED
            record_event(s, order_no, OrderStatus.RECEIVED, f"picked up at outlet {pickup.outlet_id}",
                         f"order:{order_no}:received")


def code_for_buyer(s: Session, keys: KeyRing, order_no: str) -> tuple[PickupCode, str] | None:
    """The code the buyer was given: made with the pickup-code key in force, or with one rotated
    out but still in its grace period (the stored hash tells which)."""
    pickup = s.scalar(select(PickupCode).where(PickupCode.order_no == order_no))
    if pickup is None:
        return None
    for key in keys.all:
        code = pickup_code(key, order_no, pickup.attempt)
        if code_hash(key, code) == pickup.code_hash:
            return pickup, code
    return None  # made with a key no longer kept


def order_of_code(s: Session, keys: KeyRing, code: str) -> str | None:
    """The order a scanned code belongs to, under any key of the ring."""
    return s.scalar(select(PickupCode.order_no).where(
        PickupCode.code_hash.in_([code_hash(key, code) for key in keys.all])))
