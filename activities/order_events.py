"""An order's history (order_events), written once per business key."""

from __future__ import annotations

from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from activities.messages import tell_buyer_of_order_change
from db.models import OrderEvent


def record_event(session: Session, order_no: str, status: str, note: str, key: str) -> bool:
    """Append to the order's history once per `key`; False if it was already there. A change
    of the order's state the buyer follows also goes into the notification outbox (sent as a
    subscribe message by activities.messages)."""
    done = session.execute(
        insert(OrderEvent).values(order_no=order_no, status=status, note=note, idempotency_key=key)
        .on_conflict_do_nothing(index_elements=["idempotency_key"]).returning(OrderEvent.id)
    ).scalar()
    if done is not None:
        tell_buyer_of_order_change(session, order_no, status, key)
    return done is not None
