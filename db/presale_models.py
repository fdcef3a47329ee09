"""Pre-sale (预售): SKUs sold on a deposit, the deposit/balance state of each pre-sale order, and
the parts of a refund when an order was paid by more than one WeChat Pay payment."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Boolean, CheckConstraint, DateTime, ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from db.models import Base, created_at_column


class SkuPresale(Base):
    """A SKU on pre-sale: the buyer pays `deposit_fen` a unit now and the rest of the price
    between `balance_starts_at` and `balance_ends_at`."""

    __tablename__ = "sku_presales"
    sku_id: Mapped[int] = mapped_column(ForeignKey("skus.id"), primary_key=True)
    deposit_fen: Mapped[int] = mapped_column(BigInteger)
    balance_starts_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    balance_ends_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    active: Mapped[bool] = mapped_column(Boolean, default=True, server_default="true")
    created_at: Mapped[datetime] = created_at_column()
    __table_args__ = (
        CheckConstraint("deposit_fen > 0", name="ck_sku_presales_deposit"),
        CheckConstraint("balance_ends_at > balance_starts_at", name="ck_sku_presales_window"),
    )


class PresaleOrder(Base):
    """The two payments of a pre-sale order (`{order_no}D`, `{order_no}B`) and where it stands:
    DEPOSIT_PENDING → DEPOSIT_PAID → BALANCE_DUE → BALANCE_PAID, or CANCELLED (deposit never
    paid) / LAPSED (balance not paid by the end of the window; the deposit is refunded)."""

    __tablename__ = "presale_orders"
    order_no: Mapped[str] = mapped_column(ForeignKey("orders.order_no"), primary_key=True)
    deposit_fen: Mapped[int] = mapped_column(BigInteger)
    balance_fen: Mapped[int] = mapped_column(BigInteger)
    balance_starts_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    balance_ends_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    status: Mapped[str] = mapped_column(String(16), default="DEPOSIT_PENDING")
    deposit_paid_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    reminded_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    balance_paid_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = created_at_column()
    __table_args__ = (
        CheckConstraint("deposit_fen > 0 AND balance_fen > 0", name="ck_presale_orders_amounts"),
    )


class RefundPayment(Base):
    """One WeChat Pay refund of a refund that spans payments (a pre-sale order's balance and
    deposit): `out_refund_no` is the refund number, suffixed B / D when there are two parts."""

    __tablename__ = "refund_payments"
    out_refund_no: Mapped[str] = mapped_column(String(40), primary_key=True)
    refund_no: Mapped[str] = mapped_column(ForeignKey("refunds.refund_no"), index=True)
    out_trade_no: Mapped[str] = mapped_column(ForeignKey("payments.out_trade_no"))
    amount_fen: Mapped[int] = mapped_column(BigInteger)
    status: Mapped[str] = mapped_column(String(12), default="CREATED")
    wechat_refund_id: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = created_at_column()
    __table_args__ = (CheckConstraint("amount_fen > 0", name="ck_refund_payments_amount"),)
