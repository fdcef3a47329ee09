"""Which subscribe message (订阅消息) template a stored notification is sent with, and its data.

Template ids are settings (`MESSAGE_TEMPLATE_*`); an empty id means that kind is not sent
(the notification is marked skipped). Values keep WeChat's limits per key type: thing ≤ 20
characters, character_string ≤ 32, phrase ≤ 5, amount / time in their formats.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from domain.order_status import OrderStatus

# Order events the buyer is told of: the suffix of the event's key (order:{no}:{suffix}).
ORDER_CHANGES = {
    "deposit_paid": OrderStatus.DEPOSIT_PAID, "paid": OrderStatus.PAID, "delivered": OrderStatus.DELIVERED,
    "received": OrderStatus.RECEIVED, "completed": OrderStatus.COMPLETED, "cancelled": OrderStatus.CANCELLED,
}


def order_change(order_no: str, status: str, key: str) -> OrderStatus | None:
    """The state change an order event tells the buyer of, or None (not one they follow)."""
    prefix = f"order:{order_no}:"
    if not key.startswith(prefix):
        return None
    suffix = key[len(prefix):]
    if suffix.startswith("shipped:"):
        return OrderStatus.SHIPPED
    found = ORDER_CHANGES.get(suffix)
    return found if found is not None and found.value == status else None


@dataclass(frozen=True)
class MessageTemplates:
    order_status: str
    presale_balance: str
    refund: str
    general: str


def _thing(text: str) -> str:
    return text[:20]


def subscribe_message(kind: str, subject_id: str, message: str, at: datetime, templates: MessageTemplates,
                      tz: str = "Asia/Shanghai") -> tuple[str, dict[str, str]] | None:
    """(template id, data) for a notification, or None when no template is configured for it."""
    when = at.astimezone(ZoneInfo(tz)).strftime("%Y-%m-%d %H:%M")
    if kind == "presale_balance_due":
        template, data = templates.presale_balance, {
            "character_string1": subject_id[:32], "thing2": _thing(message), "time3": when}
    elif kind.startswith("order_"):
        status = kind.removeprefix("order_").upper()
        label = OrderStatus(status).label if status in OrderStatus.__members__ else status
        template, data = templates.order_status, {
            "character_string1": subject_id[:32], "phrase2": label[:5], "thing3": _thing(message), "time4": when}
    elif kind.startswith("refund_"):
        template, data = templates.refund, {
            "character_string1": subject_id[:32], "thing2": _thing(message), "time3": when}
    else:
        template, data = templates.general, {"thing1": _thing(message), "time2": when}
    return (template, data) if template else None
