"""Order states as buyers, suppliers and operators know them, and the moves between them."""

from __future__ import annotations

from enum import StrEnum


class OrderStatus(StrEnum):
    PENDING_PAYMENT = "PENDING_PAYMENT"
    PAID = "PAID"
    SHIPPED = "SHIPPED"
    DELIVERED = "DELIVERED"
    RECEIVED = "RECEIVED"
    COMPLETED = "COMPLETED"
    CANCELLED = "CANCELLED"

    @property
    def label(self) -> str:
        return LABELS[self]


LABELS = {
    OrderStatus.PENDING_PAYMENT: "待支付",
    OrderStatus.PAID: "待发货",
    OrderStatus.SHIPPED: "待收货",
    OrderStatus.DELIVERED: "待收货",
    OrderStatus.RECEIVED: "已收货",
    OrderStatus.COMPLETED: "已完成",
    OrderStatus.CANCELLED: "已取消",
}

TRANSITIONS: dict[OrderStatus, frozenset[OrderStatus]] = {
    OrderStatus.PENDING_PAYMENT: frozenset({OrderStatus.PAID, OrderStatus.CANCELLED}),
    OrderStatus.PAID: frozenset({OrderStatus.SHIPPED}),
    OrderStatus.SHIPPED: frozenset({OrderStatus.DELIVERED, OrderStatus.RECEIVED}),
    OrderStatus.DELIVERED: frozenset({OrderStatus.RECEIVED}),
    OrderStatus.RECEIVED: frozenset({OrderStatus.COMPLETED}),
    OrderStatus.COMPLETED: frozenset(),
    OrderStatus.CANCELLED: frozenset(),
}


def can_move(current: OrderStatus, target: OrderStatus) -> bool:
    return target in TRANSITIONS[current]
