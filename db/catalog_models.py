"""Suppliers' onboarding records, product details and listings, window statistics and
notifications (issue: suppliers and catalog). Tables live in Base.metadata via all_models."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from db.models import Base, created_at_column


class SupplierProfile(Base):
    """The application a supplier made (and resubmitted), and how it was reviewed."""

    __tablename__ = "supplier_profiles"
    supplier_id: Mapped[int] = mapped_column(ForeignKey("suppliers.id"), primary_key=True)
    kind: Mapped[str] = mapped_column(String(12))
    licence_no: Mapped[str] = mapped_column(String(18))
    contact_name: Mapped[str] = mapped_column(String(32))
    contact_phone: Mapped[str] = mapped_column(String(16))
    categories: Mapped[list] = mapped_column(JSONB, default=list)
    documents: Mapped[list] = mapped_column(JSONB, default=list)
    wechatpay_mchid: Mapped[str | None] = mapped_column(String(16))
    # False once rejected or expired: the licence may then apply again.
    open: Mapped[bool] = mapped_column(Boolean, default=True, server_default=text("true"))
    resubmissions: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    escalations: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    review_note: Mapped[str] = mapped_column(Text, default="", server_default="")
    reviewed_by_user_id: Mapped[int | None] = mapped_column(BigInteger)
    reviewed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    suspended_reason: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = created_at_column()
    updated_at: Mapped[datetime] = created_at_column()
    __table_args__ = (
        Index("uq_supplier_profiles_open_licence", "licence_no", unique=True,
              postgresql_where=text("open")),
    )


class ProfitSharingReceiver(Base):
    """A supplier as a WeChat Pay profit-sharing (分账) receiver: intent first, then the call."""

    __tablename__ = "profit_sharing_receivers"
    supplier_id: Mapped[int] = mapped_column(ForeignKey("suppliers.id"), primary_key=True)
    receiver_type: Mapped[str] = mapped_column(String(20))
    account: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(128))
    relation_type: Mapped[str] = mapped_column(String(20), default="SUPPLIER")
    status: Mapped[str] = mapped_column(String(24))
    created_at: Mapped[datetime] = created_at_column()


class ProductDetail(Base):
    __tablename__ = "product_details"
    product_id: Mapped[int] = mapped_column(ForeignKey("products.id"), primary_key=True)
    description: Mapped[str] = mapped_column(Text, default="")
    images: Mapped[list] = mapped_column(JSONB, default=list)
    video_url: Mapped[str | None] = mapped_column(String(520))
    materials: Mapped[list] = mapped_column(JSONB, default=list)
    newbie_pick: Mapped[bool] = mapped_column(Boolean, default=False, server_default=text("false"))
    escalations: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    review_note: Mapped[str] = mapped_column(Text, default="", server_default="")
    reviewed_by_user_id: Mapped[int | None] = mapped_column(BigInteger)
    reviewed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    submitted_at: Mapped[datetime] = created_at_column()
    __table_args__ = (Index("ix_product_details_newbie_pick", "newbie_pick"),)


class ChannelsListing(Base):
    """Our intent to list a product in the Channels (视频号) shop, keyed by out_product_id."""

    __tablename__ = "channels_listings"
    product_id: Mapped[int] = mapped_column(ForeignKey("products.id"), primary_key=True)
    out_product_id: Mapped[str] = mapped_column(String(64), unique=True)
    status: Mapped[str] = mapped_column(String(24))
    channels_product_id: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = created_at_column()


class WindowProductStat(Base):
    """Exposures and clicks per product per window; orders are counted from orders."""

    __tablename__ = "window_product_stats"
    window_id: Mapped[int] = mapped_column(ForeignKey("windows.id"), primary_key=True)
    product_id: Mapped[int] = mapped_column(ForeignKey("products.id"), primary_key=True)
    exposures: Mapped[int] = mapped_column(BigInteger, default=0, server_default=text("0"))
    clicks: Mapped[int] = mapped_column(BigInteger, default=0, server_default=text("0"))


class Notification(Base):
    """Something a user (or everyone with a role, e.g. support) should know. Written in the
    same transaction as the change it reports; `idempotency_key` makes retried activities safe."""

    __tablename__ = "notifications"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    recipient_user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), index=True)
    recipient_role: Mapped[str | None] = mapped_column(String(20), index=True)
    kind: Mapped[str] = mapped_column(String(40))
    subject_type: Mapped[str] = mapped_column(String(20))
    subject_id: Mapped[str] = mapped_column(String(40))
    message: Mapped[str] = mapped_column(Text)
    idempotency_key: Mapped[str | None] = mapped_column(String(160), unique=True)
    created_at: Mapped[datetime] = created_at_column()
    read_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # the subscribe-message outbox: pending → sent | skipped (no openid, refused, no template)
    delivery_status: Mapped[str] = mapped_column(String(10), default="pending", server_default="pending")
    delivery_note: Mapped[str | None] = mapped_column(String(120))
    sent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    __table_args__ = (Index("ix_notifications_pending", "id", postgresql_where=text("delivery_status = 'pending'")),
                      Index("ix_notifications_sending", "sent_at", postgresql_where=text("delivery_status = 'sending'")))
