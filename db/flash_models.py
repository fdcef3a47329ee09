"""Flash sales (domain/flash_sales.py): the sale, each buyer's count, and each order's claim."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, CheckConstraint, DateTime, ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from db.models import Base, created_at_column


class FlashSale(Base):
    __tablename__ = "flash_sales"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    sku_id: Mapped[int] = mapped_column(ForeignKey("skus.id"), index=True)
    supplier_id: Mapped[int] = mapped_column(ForeignKey("suppliers.id"), index=True)
    price_fen: Mapped[int] = mapped_column(BigInteger)
    quantity: Mapped[int] = mapped_column(Integer)  # set aside from the SKU's stock at creation
    sold: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    per_buyer_limit: Mapped[int] = mapped_column(Integer)
    starts_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    ends_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    status: Mapped[str] = mapped_column(String(10), default="active", server_default="active")  # active|ended
    returned: Mapped[int] = mapped_column(Integer, default=0, server_default="0")  # back to the SKU at the end
    created_at: Mapped[datetime] = created_at_column()
    __table_args__ = (
        CheckConstraint("sold >= 0 AND sold <= quantity", name="ck_flash_sales_sold"),
        CheckConstraint("price_fen > 0 AND per_buyer_limit > 0 AND quantity > 0", name="ck_flash_sales_positive"),
    )


class FlashSaleBuyer(Base):
    __tablename__ = "flash_sale_buyers"
    flash_sale_id: Mapped[int] = mapped_column(ForeignKey("flash_sales.id"), primary_key=True)
    buyer_user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), primary_key=True)
    quantity: Mapped[int] = mapped_column(Integer)
    __table_args__ = (CheckConstraint("quantity >= 0", name="ck_flash_sale_buyers_quantity"),)


class FlashSaleClaim(Base):
    """One order's units of a sale; `released` when the order was cancelled unpaid."""
    __tablename__ = "flash_sale_claims"
    order_no: Mapped[str] = mapped_column(String(32), primary_key=True)
    flash_sale_id: Mapped[int] = mapped_column(ForeignKey("flash_sales.id"), index=True)
    buyer_user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    quantity: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(10), default="held", server_default="held")  # held|released
    created_at: Mapped[datetime] = created_at_column()
