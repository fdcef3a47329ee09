"""The storefront's tables: WeChat identities (mini program and official account, joined by
unionid), bound phone numbers (masked and keyed hash only), the address book, the cart, and
suppliers' freight templates with what each order charged for freight, and each parcel's tracking trace."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from db.models import Base, created_at_column


class WechatAccount(Base):
    """One WeChat app's openid of a user (`mini_program` or `official_account`). A user's
    accounts in several apps share WeChat's unionid, which is how a buyer arriving by the
    mini program and by the official account lands on one user. The mini program's session_key
    is never stored (nothing here needs it: phone numbers come by code)."""

    __tablename__ = "wechat_accounts"
    app: Mapped[str] = mapped_column(String(20), primary_key=True)
    openid: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    unionid: Mapped[str | None] = mapped_column(String(64), index=True)
    created_at: Mapped[datetime] = created_at_column()
    last_login_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    __table_args__ = (CheckConstraint("app IN ('mini_program','official_account')", name="ck_wechat_accounts_app"),)


class UserPhone(Base):
    """A buyer's phone number bound through the mini program: masked for display and a keyed
    hash (domain/privacy.py `phone_hash`), never the number itself."""

    __tablename__ = "user_phones"
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), primary_key=True)
    phone_masked: Mapped[str] = mapped_column(String(24))
    phone_hash: Mapped[str] = mapped_column(String(64), unique=True)
    country_code: Mapped[str] = mapped_column(String(8))
    bound_at: Mapped[datetime] = created_at_column()


class Address(Base):
    """An address book entry: kept like an order's shipping address (the receiver's name, phone
    and street are for the supplier who ships, shown masked to everyone else, never logged);
    region_code is the GB/T 2260 code of the county (or city) freight is charged by."""

    __tablename__ = "addresses"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    receiver: Mapped[str] = mapped_column(String(32))
    phone: Mapped[str] = mapped_column(String(16))
    province: Mapped[str] = mapped_column(String(16))
    city: Mapped[str] = mapped_column(String(16))
    district: Mapped[str] = mapped_column(String(16), default="")
    detail: Mapped[str] = mapped_column(String(120))
    region_code: Mapped[str] = mapped_column(String(6))
    is_default: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = created_at_column()
    updated_at: Mapped[datetime] = created_at_column()
    __table_args__ = (
        Index("uq_addresses_one_default", "user_id", unique=True, postgresql_where=text("is_default")),
    )


class CartItem(Base):
    """A SKU in a buyer's cart, with the window it was first added from (its attribution)."""

    __tablename__ = "cart_items"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    sku_id: Mapped[int] = mapped_column(ForeignKey("skus.id"))
    window_id: Mapped[int | None] = mapped_column(ForeignKey("windows.id"))
    quantity: Mapped[int] = mapped_column(Integer)
    added_at: Mapped[datetime] = created_at_column()
    __table_args__ = (
        UniqueConstraint("user_id", "sku_id", name="uq_cart_items_sku"),
        CheckConstraint("quantity > 0", name="ck_cart_items_quantity"),
    )


class FreightTemplate(Base):
    """A supplier's 运费模板; `rules` is domain/freight.py TemplateRules as JSON."""

    __tablename__ = "freight_templates"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    supplier_id: Mapped[int] = mapped_column(ForeignKey("suppliers.id"), index=True)
    name: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(8))
    rules: Mapped[dict] = mapped_column(JSONB)
    created_at: Mapped[datetime] = created_at_column()
    updated_at: Mapped[datetime] = created_at_column()
    __table_args__ = (CheckConstraint("kind IN ('piece','weight')", name="ck_freight_templates_kind"),)


class SkuShipping(Base):
    """How a SKU ships: its product's freight template and the SKU's weight (by-weight templates)."""

    __tablename__ = "sku_shipping"
    sku_id: Mapped[int] = mapped_column(ForeignKey("skus.id"), primary_key=True)
    template_id: Mapped[int | None] = mapped_column(ForeignKey("freight_templates.id"), index=True)
    weight_g: Mapped[int] = mapped_column(Integer, default=0)
    __table_args__ = (CheckConstraint("weight_g >= 0", name="ck_sku_shipping_weight"),)


class OrderFreight(Base):
    """The freight an order charged (part of orders.total_fen, not of any line): the supplier's,
    never commissionable. `refund_no` is the refund that gives it back, if one does."""

    __tablename__ = "order_freight"
    order_no: Mapped[str] = mapped_column(ForeignKey("orders.order_no"), primary_key=True)
    supplier_id: Mapped[int] = mapped_column(ForeignKey("suppliers.id"), index=True)
    region_code: Mapped[str] = mapped_column(String(6))
    freight_fen: Mapped[int] = mapped_column(BigInteger)
    refund_no: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[datetime] = created_at_column()
    __table_args__ = (CheckConstraint("freight_fen > 0", name="ck_order_freight_positive"),)


class TrackingEvent(Base):
    """One carrier event of a parcel (快递100's `data` steps), kept once by `event_key` whichever
    push or poll brought it: the buyer's full tracking trace."""

    __tablename__ = "tracking_events"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    carrier: Mapped[str] = mapped_column(String(32))
    waybill_no: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    context: Mapped[str] = mapped_column(Text)
    location: Mapped[str] = mapped_column(String(200), default="", server_default="")
    event_key: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = created_at_column()
    __table_args__ = (Index("ix_tracking_events_waybill", "carrier", "waybill_no", "at"),)
