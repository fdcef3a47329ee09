"""The cart (购物车): goods of many suppliers, each line remembering the promoter window the
buyer added it from, checked out into orders.

An order has one supplier's goods and one attribution (the window whose promoter sold them,
`orders.window_id`; commission is booked per order for that window's promoter), so checkout
makes one order per (supplier, window): lines of one supplier added from two windows become two
orders, each paying its own promoter. Each order pays its own freight. A coupon applies to one
supplier's goods, once per buyer: it goes to that supplier's largest order."""

from __future__ import annotations

from pydantic import BaseModel, Field


class CartLine(BaseModel):
    item_id: int
    sku_id: int
    supplier_id: int
    window_id: int | None
    quantity: int = Field(gt=0)
    unit_price_fen: int = Field(ge=0)

    @property
    def goods_fen(self) -> int:
        return self.unit_price_fen * self.quantity


class OrderGroup(BaseModel):
    supplier_id: int
    window_id: int | None
    lines: list[CartLine]
    coupon_code: str | None = None

    @property
    def goods_fen(self) -> int:
        return sum(line.goods_fen for line in self.lines)

    @property
    def key(self) -> str:
        """Stable within one checkout: names the order made for the group (order number from
        the request's Idempotency-Key)."""
        return f"{self.supplier_id}:{self.window_id or 0}"


def split_into_orders(lines: list[CartLine], coupons: dict[int, str] | None = None) -> list[OrderGroup]:
    """One group per (supplier, window), in a stable order (supplier, then window, no window
    last); `coupons` (supplier id → code) go to each supplier's largest group (the first on a tie)."""
    groups: dict[tuple[int, int | None], list[CartLine]] = {}
    for line in sorted(lines, key=lambda ln: ln.item_id):
        groups.setdefault((line.supplier_id, line.window_id), []).append(line)
    ordered = [OrderGroup(supplier_id=sid, window_id=wid, lines=group) for (sid, wid), group in
               sorted(groups.items(), key=lambda kv: (kv[0][0], kv[0][1] is None, kv[0][1] or 0))]
    for supplier_id, code in (coupons or {}).items():
        own = [g for g in ordered if g.supplier_id == supplier_id]
        if own:
            max(own, key=lambda g: g.goods_fen).coupon_code = code  # max keeps the first on a tie
    return ordered
