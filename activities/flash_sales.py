"""Flash sales (rules in domain/flash_sales.py): setting stock aside, claiming it under a burst,
giving unpaid units back, and returning what was not sold when the sale ends.

`claim` runs in the API's request, in one short database transaction: the sale's row is
updated conditionally (enough left, running now), which queues concurrent claims on its row lock
in arrival order and can never sell a unit twice; the buyer's count is raised under the
per-buyer limit in the same transaction, so a refused claim writes nothing."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session, sessionmaker
from temporalio import activity

from activities.catalog import restock, stock_changed
from db.flash_models import FlashSale, FlashSaleBuyer, FlashSaleClaim
from db.models import Order, Product, Sku
from domain.flash_sales import FlashSaleRefused, check_new_sale, limit_reached, why_not


def create_sale(s: Session, *, supplier_id: int, sku_id: int, price_fen: int, quantity: int,
                per_buyer_limit: int, starts_at: datetime, ends_at: datetime, now: datetime) -> FlashSale:
    """Set `quantity` units of the SKU aside for the sale (taken from its stock now)."""
    row = s.execute(select(Sku, Product).join(Product, Sku.product_id == Product.id)
                    .where(Sku.id == sku_id).with_for_update(of=Sku)).first()
    if row is None:
        raise FlashSaleRefused("SKU_NOT_FOUND", f"SKU {sku_id} does not exist")
    sku, product = row
    if product.supplier_id != supplier_id:
        raise FlashSaleRefused("NOT_YOUR_SKU", f"SKU {sku_id} is not one of yours")
    if product.status != "listed":
        raise FlashSaleRefused("NOT_ON_SALE", f"SKU {sku_id} is not on sale")
    check_new_sale(price_fen=price_fen, list_price_fen=sku.price_fen, quantity=quantity, stock=sku.stock,
                   per_buyer_limit=per_buyer_limit, starts_at=starts_at, ends_at=ends_at, now=now)
    before = sku.stock
    sku.stock -= quantity
    s.flush()
    stock_changed(s, sku.id, before, sku.stock)
    sale = FlashSale(sku_id=sku.id, supplier_id=supplier_id, price_fen=price_fen, quantity=quantity,
                     per_buyer_limit=per_buyer_limit, starts_at=starts_at, ends_at=ends_at)
    s.add(sale)
    s.flush()
    return sale


def claim(s: Session, *, flash_sale_id: int, buyer_user_id: int, quantity: int, order_no: str,
          now: datetime) -> FlashSale:
    """The buyer's `quantity` units for order `order_no`, or FlashSaleRefused. Idempotent by
    order number."""
    held = s.get(FlashSaleClaim, order_no)
    if held is not None:
        if held.buyer_user_id != buyer_user_id or held.flash_sale_id != flash_sale_id:
            raise FlashSaleRefused("ORDER_NO_TAKEN", "that Idempotency-Key was used for another purchase")
        return s.get(FlashSale, flash_sale_id)
    taken = s.execute(
        update(FlashSale)
        .where(FlashSale.id == flash_sale_id, FlashSale.status == "active", FlashSale.starts_at <= now,
               FlashSale.ends_at > now, FlashSale.sold + quantity <= FlashSale.quantity)
        .values(sold=FlashSale.sold + quantity).returning(FlashSale.id)).scalar()
    sale = s.get(FlashSale, flash_sale_id)
    if sale is None:
        raise FlashSaleRefused("FLASH_SALE_NOT_FOUND", f"flash sale {flash_sale_id} does not exist")
    if taken is None:
        raise why_not(now=now, starts_at=sale.starts_at, ends_at=sale.ends_at, left=sale.quantity - sale.sold,
                      quantity=sale.quantity, status=sale.status)
    counted = s.execute(
        insert(FlashSaleBuyer).values(flash_sale_id=flash_sale_id, buyer_user_id=buyer_user_id, quantity=quantity)
        .on_conflict_do_update(index_elements=["flash_sale_id", "buyer_user_id"],
                               set_={"quantity": FlashSaleBuyer.quantity + quantity},
                               where=FlashSaleBuyer.quantity + quantity <= sale.per_buyer_limit)
        .returning(FlashSaleBuyer.quantity)).scalar()
    if counted is None or counted > sale.per_buyer_limit:
        raise limit_reached(sale.per_buyer_limit)
    s.add(FlashSaleClaim(order_no=order_no, flash_sale_id=flash_sale_id, buyer_user_id=buyer_user_id,
                         quantity=quantity))
    s.flush()
    return sale


def claim_of(s: Session, order_no: str) -> tuple[FlashSaleClaim, FlashSale] | None:
    row = s.execute(select(FlashSaleClaim, FlashSale).join(FlashSale, FlashSale.id == FlashSaleClaim.flash_sale_id)
                    .where(FlashSaleClaim.order_no == order_no)).first()
    return None if row is None else (row[0], row[1])


def release(s: Session, order_no: str) -> bool:
    """An order cancelled unpaid gives its units back: to the sale while it runs, to the SKU's
    stock once it has ended. False when the order held no (unreleased) claim."""
    held = s.get(FlashSaleClaim, order_no, with_for_update=True)
    if held is None or held.status != "held":
        return False
    _give_back(s, held)
    return True


def _give_back(s: Session, held: FlashSaleClaim) -> None:
    held.status = "released"
    sale = s.get(FlashSale, held.flash_sale_id, with_for_update=True)
    if sale.status == "active":
        sale.sold -= held.quantity
    else:
        restock(s, sale.sku_id, held.quantity)
    s.execute(update(FlashSaleBuyer).where(FlashSaleBuyer.flash_sale_id == sale.id,
                                           FlashSaleBuyer.buyer_user_id == held.buyer_user_id)
              .values(quantity=FlashSaleBuyer.quantity - held.quantity))


class FlashSaleActivities:
    def __init__(self, sessions: sessionmaker[Session]):
        self.sessions = sessions

    @activity.defn
    def end_flash_sale(self, flash_sale_id: int) -> int:
        """The sale is over: claims whose order was never placed are given back, and every unit
        not sold returns to the SKU's stock, once. How many units went back."""
        with self.sessions.begin() as s:
            sale = s.get(FlashSale, flash_sale_id, with_for_update=True)
            if sale is None or sale.status != "active":
                return 0 if sale is None else sale.returned
            orphans = s.scalars(select(FlashSaleClaim).where(
                FlashSaleClaim.flash_sale_id == sale.id, FlashSaleClaim.status == "held",
                ~select(Order.order_no).where(Order.order_no == FlashSaleClaim.order_no).exists())).all()
            for held in orphans:
                _give_back(s, held)
            sale.status = "ended"
            sale.returned = sale.quantity - sale.sold
            if sale.returned:
                restock(s, sale.sku_id, sale.returned)
            return sale.returned

    def all(self) -> list:
        return [self.end_flash_sale]


def sold_units(s: Session, flash_sale_id: int) -> int:
    """Units of the sale in orders that were not cancelled unpaid."""
    return s.scalar(select(func.coalesce(func.sum(FlashSaleClaim.quantity), 0)).where(
        FlashSaleClaim.flash_sale_id == flash_sale_id, FlashSaleClaim.status == "held")) or 0
