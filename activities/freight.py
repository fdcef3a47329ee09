"""Freight on our database (rules in domain/freight.py): the quote of a supplier's goods to an
address, the charge written with an order, the refund that gives it back, and the supplier's
share of it on the books. Used inside other activities' transactions (placement, completion,
refunds) and by the API's quote, so the buyer is shown exactly what placement charges."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from activities import ledger
from activities.errors import business_error
from db.models import LedgerTransaction, OrderLine, Shipment
from db.storefront_models import FreightTemplate, OrderFreight, SkuShipping
from domain import ledger as rules
from domain.freight import FreightItem, NotDeliverable, TemplateRules, freight_refund, order_freight
from domain.refunds import RefundKind

FREIGHT_RULE = "freight"


def settle_key(order_no: str) -> str:
    """The freight of an order fully refunded without its freight: to the supplier on its own."""
    return f"order:{order_no}:freight"


def quote(s: Session, lines: list[tuple[int, int, int]], region_code: str) -> int:
    """Freight of one supplier's lines, (sku id, quantity, goods fen) each, to an address code.
    Raises NotDeliverable."""
    shipping = {row.sku_id: row for row in s.scalars(
        select(SkuShipping).where(SkuShipping.sku_id.in_([sku for sku, _, _ in lines])))}
    template_ids = {row.template_id for row in shipping.values() if row.template_id is not None}
    templates = {t.id: TemplateRules.model_validate(t.rules) for t in s.scalars(
        select(FreightTemplate).where(FreightTemplate.id.in_(template_ids)))} if template_ids else {}
    items = [FreightItem(template_id=shipping[sku].template_id if sku in shipping else None, quantity=qty,
                         weight_g=shipping[sku].weight_g if sku in shipping else 0, goods_fen=goods)
             for sku, qty, goods in lines]
    return order_freight(templates, items, region_code)


def charge(s: Session, lines: list[OrderLine], region_code: str | None) -> int:
    """At placement: the freight the order's lines cost to `region_code` (0 with no code);
    a business error when the supplier does not deliver there."""
    if not region_code:
        return 0
    try:
        fen = quote(s, [(ln.sku_id, ln.quantity, ln.list_fen) for ln in lines], region_code)
    except NotDeliverable as err:
        raise business_error(err.code, err.message) from err
    if fen and len({ln.supplier_id for ln in lines}) != 1:
        raise business_error("FREIGHT_ONE_SUPPLIER", "an order with freight holds one supplier's goods")
    return fen


def record(s: Session, order_no: str, lines: list[OrderLine], region_code: str | None, freight_fen: int) -> None:
    if freight_fen > 0:
        s.add(OrderFreight(order_no=order_no, supplier_id=lines[0].supplier_id, region_code=region_code,
                           freight_fen=freight_fen))


def freight_of(s: Session, order_no: str) -> int:
    return s.scalar(select(OrderFreight.freight_fen).where(OrderFreight.order_no == order_no)) or 0


# --- refunds --------------------------------------------------------------------------------
def claim_for_refund(s: Session, order_no: str, refund_no: str, kind: RefundKind) -> int:
    """At a refund's request (its units claimed already): the freight it gives back by the rule
    (domain/freight.py), claimed for it so no other refund returns it too. 0 when none."""
    row = s.get(OrderFreight, order_no, with_for_update=True)
    if row is None or row.refund_no is not None:
        return 0
    nothing_kept = all(ln.refund_claimed_quantity == ln.quantity
                       for ln in s.scalars(select(OrderLine).where(OrderLine.order_no == order_no)))
    shipped = s.scalar(select(Shipment.id).where(Shipment.order_no == order_no).limit(1)) is not None
    back = freight_refund(row.freight_fen, kind=kind, shipped=shipped, nothing_kept=nothing_kept)
    if back:
        row.refund_no = refund_no
    return back


def release(s: Session, refund_no: str) -> None:
    """A refund closed without money: its freight claim goes with it."""
    for row in s.scalars(select(OrderFreight).where(OrderFreight.refund_no == refund_no).with_for_update()):
        row.refund_no = None


def returned_by(s: Session, refund_no: str) -> int:
    return s.scalar(select(OrderFreight.freight_fen).where(OrderFreight.refund_no == refund_no)) or 0


def _settled(s: Session, order_no: str) -> bool:
    keys = [f"order:{order_no}:settle", settle_key(order_no)]
    return s.scalar(select(LedgerTransaction.id).where(LedgerTransaction.idempotency_key.in_(keys))
                    .limit(1)) is not None


def reversal(s: Session, refund_no: str, order_no: str) -> list[rules.Posting]:
    """The refund's freight comes back out of what holds it: the order's held money, or the
    supplier's payable once it went there."""
    row = s.get(OrderFreight, order_no)
    if row is None or row.refund_no != refund_no:
        return []
    account = rules.supplier_payable(row.supplier_id) if _settled(s, order_no) else rules.ORDERS_HELD
    return [rules.Posting(account, row.freight_fen, rule="freight_refund")]


def kept(s: Session, order_no: str) -> tuple[int, int] | None:
    """(supplier id, freight) the supplier keeps, or None: no freight, or a refund returns it."""
    row = s.get(OrderFreight, order_no)
    if row is None or row.refund_no is not None:
        return None
    return row.supplier_id, row.freight_fen


def settlement_postings(s: Session, order_no: str) -> list[rules.Posting]:
    """For the order's completion: the kept freight from the held money to its supplier."""
    found = kept(s, order_no)
    if found is None:
        return []
    supplier_id, fen = found
    return [rules.Posting(rules.ORDERS_HELD, fen, rule=FREIGHT_RULE),
            rules.Posting(rules.supplier_payable(supplier_id), -fen, rule=FREIGHT_RULE)]


def settle_fully_refunded(s: Session, order_no: str) -> None:
    """Every unit refunded but the freight kept (a no-reason return after shipment): the order
    never completes, so its freight goes to the supplier now. Once."""
    found = kept(s, order_no)
    if found is None or _settled(s, order_no):
        return
    supplier_id, fen = found
    ledger.lock_accounts(s, {rules.ORDERS_HELD, rules.supplier_payable(supplier_id)})
    ledger.post(s, settle_key(order_no), "order_settlement",
                rules.transfer(rules.ORDERS_HELD, rules.supplier_payable(supplier_id), fen, rule=FREIGHT_RULE),
                order_no=order_no, memo="freight of a fully returned order, kept by the supplier")
