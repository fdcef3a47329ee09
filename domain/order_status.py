"""Order states as buyers, suppliers and operators know them, and the moves between them."""

from __future__ import annotations

from enum import StrEnum


class OrderStatus(StrEnum):
    PENDING_PAYMENT = "PENDING_PAYMENT"
    DEPOSIT_PAID = "DEPOSIT_PAID"  # pre-sale: deposit paid, balance not yet
    PAID = "PAID"
    GROUPING = "GROUPING"  # a group-buy order paid, its group not formed yet (shown by the workflow)
    SHIPPED = "SHIPPED"
    DELIVERED = "DELIVERED"
    RECEIVED = "RECEIVED"
    COMPLETED = "COMPLETED"
    AFTER_SALE = "AFTER_SALE"
    CANCELLED = "CANCELLED"
    REFUNDED = "REFUNDED"

    @property
    def label(self) -> str:
        return LABELS[self]


LABELS = {
    OrderStatus.PENDING_PAYMENT: "待支付",
    OrderStatus.DEPOSIT_PAID: "待付尾款",
    OrderStatus.PAID: "待发货",
    OrderStatus.GROUPING: "待成团",
    OrderStatus.SHIPPED: "待收货",
    OrderStatus.DELIVERED: "待收货",
    OrderStatus.RECEIVED: "已收货",
    OrderStatus.COMPLETED: "已完成",
    OrderStatus.AFTER_SALE: "售后中",
    OrderStatus.CANCELLED: "已取消",
    OrderStatus.REFUNDED: "已退款",
}

# AFTER_SALE is shown while a refund is open (orders.open_refunds > 0) on top of the order's
# own state, which it returns to; REFUNDED ends an order whose every unit was refunded.
# A pickup order goes from PAID straight to RECEIVED when its code is scanned.
TRANSITIONS: dict[OrderStatus, frozenset[OrderStatus]] = {
    OrderStatus.PENDING_PAYMENT: frozenset({OrderStatus.PAID, OrderStatus.DEPOSIT_PAID, OrderStatus.CANCELLED}),
    # pre-sale: the balance is paid, or it was not by the end of its window (deposit refunded)
    OrderStatus.DEPOSIT_PAID: frozenset({OrderStatus.PAID, OrderStatus.CANCELLED}),
    OrderStatus.PAID: frozenset({OrderStatus.SHIPPED, OrderStatus.RECEIVED, OrderStatus.REFUNDED}),
    OrderStatus.SHIPPED: frozenset({OrderStatus.DELIVERED, OrderStatus.RECEIVED, OrderStatus.REFUNDED}),
    OrderStatus.DELIVERED: frozenset({OrderStatus.RECEIVED, OrderStatus.REFUNDED}),
    OrderStatus.RECEIVED: frozenset({OrderStatus.COMPLETED, OrderStatus.REFUNDED}),
    OrderStatus.COMPLETED: frozenset({OrderStatus.REFUNDED}),
    OrderStatus.AFTER_SALE: frozenset(),
    OrderStatus.CANCELLED: frozenset(),
    OrderStatus.REFUNDED: frozenset(),
}


def can_move(current: OrderStatus, target: OrderStatus) -> bool:
    return target in TRANSITIONS[current]
