"""SQLAlchemy 2 models: the system of record. Money columns are integer fen (BigInteger)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Index,
    DateTime,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
    false,
    func,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


class Base(DeclarativeBase):
    pass


def created_at_column() -> Mapped[datetime]:
    return mapped_column(DateTime(timezone=True), server_default=func.now(), nullable=False)


class User(Base):
    __tablename__ = "users"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    role: Mapped[str] = mapped_column(String(20), index=True)
    openid: Mapped[str | None] = mapped_column(String(64), unique=True)
    username: Mapped[str | None] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str | None] = mapped_column(String(255))
    display_name: Mapped[str] = mapped_column(String(64), default="")
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = created_at_column()
    __table_args__ = (
        CheckConstraint(
            "role IN ('buyer','promoter','supplier','outlet_staff','support','operator')",
            name="ck_users_role",
        ),
    )


class AuthSession(Base):
    """One login: its bearer token names it (`sid`). Every request looks it up with its user, so
    logging out, disabling the user or changing their role ends it at once."""

    __tablename__ = "auth_sessions"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    role: Mapped[str] = mapped_column(String(20))
    created_at: Mapped[datetime] = created_at_column()
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class Supplier(Base):
    __tablename__ = "suppliers"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    owner_user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), unique=True)
    name: Mapped[str] = mapped_column(String(128))
    status: Mapped[str] = mapped_column(String(20), default="active")
    service_fee_bps: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = created_at_column()
    __table_args__ = (
        CheckConstraint("service_fee_bps BETWEEN 0 AND 10000", name="ck_suppliers_fee"),
    )


class Product(Base):
    __tablename__ = "products"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    supplier_id: Mapped[int] = mapped_column(ForeignKey("suppliers.id"), index=True)
    title: Mapped[str] = mapped_column(String(200))
    category: Mapped[str] = mapped_column(String(40), default="general")
    status: Mapped[str] = mapped_column(String(20), default="listed")
    suspended_reason: Mapped[str | None] = mapped_column(Text)  # why support suspended this product
    created_at: Mapped[datetime] = created_at_column()
    skus: Mapped[list[Sku]] = relationship(back_populates="product", order_by="Sku.id")


class Sku(Base):
    __tablename__ = "skus"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    product_id: Mapped[int] = mapped_column(ForeignKey("products.id"), index=True)
    spec: Mapped[str] = mapped_column(String(120), default="")
    price_fen: Mapped[int] = mapped_column(BigInteger)
    stock: Mapped[int] = mapped_column(Integer)
    commission_bps: Mapped[int | None] = mapped_column(Integer)
    commission_fixed_fen: Mapped[int | None] = mapped_column(BigInteger)
    product: Mapped[Product] = relationship(back_populates="skus")
    __table_args__ = (
        CheckConstraint("stock >= 0", name="ck_skus_stock_non_negative"),
        CheckConstraint("price_fen > 0", name="ck_skus_price_positive"),
        CheckConstraint(
            "commission_bps IS NULL OR commission_bps BETWEEN 0 AND 10000", name="ck_skus_bps"
        ),
        CheckConstraint(
            "commission_fixed_fen IS NULL OR commission_fixed_fen >= 0", name="ck_skus_fixed"
        ),
    )


class Promoter(Base):
    __tablename__ = "promoters"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), unique=True)
    nickname: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(20), default="active")
    referrer_id: Mapped[int | None] = mapped_column(ForeignKey("promoters.id"))
    # the promoter's choice: after each monthly statement, pay the available balance out
    auto_payout: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    created_at: Mapped[datetime] = created_at_column()


class Window(Base):
    """A promoter's Channels window (橱窗)."""

    __tablename__ = "windows"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    promoter_id: Mapped[int] = mapped_column(ForeignKey("promoters.id"), unique=True)
    name: Mapped[str] = mapped_column(String(64))
    channels_finder_id: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = created_at_column()


class WindowProduct(Base):
    __tablename__ = "window_products"
    window_id: Mapped[int] = mapped_column(ForeignKey("windows.id"), primary_key=True)
    product_id: Mapped[int] = mapped_column(ForeignKey("products.id"), primary_key=True)
    status: Mapped[str] = mapped_column(String(20), default="mounted")
    mounted_at: Mapped[datetime] = created_at_column()
    position: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    off_reason: Mapped[str | None] = mapped_column(String(20))


class Order(Base):
    __tablename__ = "orders"
    order_no: Mapped[str] = mapped_column(String(32), primary_key=True)
    buyer_user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    window_id: Mapped[int | None] = mapped_column(ForeignKey("windows.id"))
    promoter_id: Mapped[int | None] = mapped_column(ForeignKey("promoters.id"), index=True)
    source: Mapped[str] = mapped_column(String(20), default="window")
    status: Mapped[str] = mapped_column(String(20), index=True)
    total_fen: Mapped[int] = mapped_column(BigInteger)
    discount_fen: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    open_refunds: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    fulfilment: Mapped[str] = mapped_column(String(10), default="delivery", server_default="delivery")
    outlet_id: Mapped[int | None] = mapped_column(ForeignKey("outlets.id", use_alter=True, name="fk_orders_outlet"))
    shipping_address: Mapped[dict | None] = mapped_column(JSONB)
    transaction_id: Mapped[str | None] = mapped_column(String(64))
    # source "channels": the WeChat Channels shop order this order is fulfilled for
    channels_order_id: Mapped[str | None] = mapped_column(String(32), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now(),
                                                 nullable=False, index=True)
    paid_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    completed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), index=True)
    lines: Mapped[list[OrderLine]] = relationship(back_populates="order", order_by="OrderLine.id")
    events: Mapped[list[OrderEvent]] = relationship(order_by="OrderEvent.id")
    __table_args__ = (
        CheckConstraint("total_fen > 0", name="ck_orders_total_positive"),
        CheckConstraint("open_refunds >= 0", name="ck_orders_open_refunds"),
        CheckConstraint("fulfilment IN ('delivery','pickup') AND (fulfilment = 'pickup') = (outlet_id IS NOT NULL)",
                        name="ck_orders_fulfilment"),
    )


class OrderLine(Base):
    __tablename__ = "order_lines"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    order_no: Mapped[str] = mapped_column(ForeignKey("orders.order_no"), index=True)
    sku_id: Mapped[int] = mapped_column(ForeignKey("skus.id"))
    product_id: Mapped[int] = mapped_column(ForeignKey("products.id"))
    supplier_id: Mapped[int] = mapped_column(ForeignKey("suppliers.id"), index=True)
    title: Mapped[str] = mapped_column(String(200))
    unit_price_fen: Mapped[int] = mapped_column(BigInteger)
    quantity: Mapped[int] = mapped_column(Integer)
    paid_fen: Mapped[int] = mapped_column(BigInteger)
    commission_fen: Mapped[int] = mapped_column(BigInteger)
    service_fee_fen: Mapped[int] = mapped_column(BigInteger)
    list_fen: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    # the part of the discount a platform coupon gave: the platform's cost, paid to the supplier
    # at completion on top of its share of what the buyer paid
    subsidy_fen: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    # units (and their money) held by refunds that are open or done; never above the line
    refund_claimed_quantity: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    order: Mapped[Order] = relationship(back_populates="lines")
    __table_args__ = (
        CheckConstraint("quantity > 0", name="ck_order_lines_quantity"),
        CheckConstraint("refund_claimed_quantity BETWEEN 0 AND quantity", name="ck_order_lines_refund_claimed"),
        CheckConstraint("subsidy_fen >= 0", name="ck_order_lines_subsidy"),
    )


class OrderEvent(Base):
    """What happened to an order, in order: the history shown by GET /orders/{no}."""

    __tablename__ = "order_events"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    order_no: Mapped[str] = mapped_column(ForeignKey("orders.order_no"), index=True)
    status: Mapped[str] = mapped_column(String(20))
    note: Mapped[str] = mapped_column(Text, default="")
    idempotency_key: Mapped[str] = mapped_column(String(120), unique=True)
    at: Mapped[datetime] = created_at_column()


class Payment(Base):
    """Our record of a WeChat Pay order, written before we call out (intent first)."""

    __tablename__ = "payments"
    out_trade_no: Mapped[str] = mapped_column(String(32), primary_key=True)
    # one per order, except pre-sale orders: deposit `{order_no}D` and balance `{order_no}B`
    order_no: Mapped[str] = mapped_column(ForeignKey("orders.order_no"), index=True)
    kind: Mapped[str] = mapped_column(String(10), default="full", server_default="full")
    amount_fen: Mapped[int] = mapped_column(BigInteger)
    status: Mapped[str] = mapped_column(String(20), default="CREATING")
    prepay_id: Mapped[str | None] = mapped_column(String(64))
    transaction_id: Mapped[str | None] = mapped_column(String(64), unique=True)
    paid_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = created_at_column()


class Shipment(Base):
    __tablename__ = "shipments"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    order_no: Mapped[str] = mapped_column(ForeignKey("orders.order_no"), index=True)
    supplier_id: Mapped[int] = mapped_column(ForeignKey("suppliers.id"))
    carrier: Mapped[str] = mapped_column(String(32))
    waybill_no: Mapped[str] = mapped_column(String(64))
    tracking_state: Mapped[str | None] = mapped_column(String(8))
    delivered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = created_at_column()
    __table_args__ = (UniqueConstraint("carrier", "waybill_no", name="uq_shipments_waybill"),)


class LedgerAccount(Base):
    """`balance_fen` is on the account's normal side and moves in the same database
    transaction as the entries that change it; `last_hash` is the head of its hash chain."""

    __tablename__ = "ledger_accounts"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    code: Mapped[str] = mapped_column(String(80), unique=True)
    normal_side: Mapped[str] = mapped_column(String(6))
    owner_type: Mapped[str] = mapped_column(String(20))
    owner_id: Mapped[int | None] = mapped_column(BigInteger)
    balance_fen: Mapped[int] = mapped_column(BigInteger, default=0)
    last_hash: Mapped[str] = mapped_column(String(64), default="0" * 64)
    __table_args__ = (
        CheckConstraint("normal_side IN ('debit','credit')", name="ck_ledger_accounts_side"),
        Index("ix_ledger_accounts_owner", "owner_type", "owner_id"),
    )


class LedgerTransaction(Base):
    __tablename__ = "ledger_transactions"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    idempotency_key: Mapped[str] = mapped_column(String(160), unique=True)
    kind: Mapped[str] = mapped_column(String(40))
    order_no: Mapped[str | None] = mapped_column(String(32), index=True)
    memo: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = created_at_column()
    entries: Mapped[list[LedgerEntry]] = relationship(order_by="LedgerEntry.id")


class LedgerEntry(Base):
    """Signed amount: debit > 0, credit < 0; each transaction's entries sum to zero.
    Never updated or deleted (a trigger refuses it)."""

    __tablename__ = "ledger_entries"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    transaction_id: Mapped[int] = mapped_column(ForeignKey("ledger_transactions.id"), index=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("ledger_accounts.id"), index=True)
    amount_fen: Mapped[int] = mapped_column(BigInteger)
    order_no: Mapped[str | None] = mapped_column(String(32))
    order_line_id: Mapped[int | None] = mapped_column(BigInteger)
    tier: Mapped[int | None] = mapped_column(Integer)
    rule: Mapped[str] = mapped_column(String(80), default="")
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = created_at_column()
    __table_args__ = (CheckConstraint("amount_fen <> 0", name="ck_ledger_entries_nonzero"),)
