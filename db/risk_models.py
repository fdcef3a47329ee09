"""Risk findings and the fingerprints they are found from (keyed hashes only)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, DateTime, ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from db.models import Base, created_at_column


class OrderFingerprint(Base):
    __tablename__ = "order_fingerprints"
    order_no: Mapped[str] = mapped_column(ForeignKey("orders.order_no"), primary_key=True)
    buyer_user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    device_fp: Mapped[str | None] = mapped_column(String(64))
    ip_fp: Mapped[str | None] = mapped_column(String(64))
    address_fp: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = created_at_column()
    __table_args__ = (
        Index("ix_order_fp_device", "device_fp", "created_at"),
        Index("ix_order_fp_ip", "ip_fp", "created_at"),
        Index("ix_order_fp_address", "address_fp", "created_at"),
    )


class RiskFlag(Base):
    """One finding per kind and subject (an order, or a buyer for returns), for support."""

    __tablename__ = "risk_flags"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    kind: Mapped[str] = mapped_column(String(24), index=True)
    subject_type: Mapped[str] = mapped_column(String(12))
    subject_id: Mapped[str] = mapped_column(String(40))
    buyer_user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), index=True)
    order_no: Mapped[str | None] = mapped_column(String(32), index=True)
    detail: Mapped[str] = mapped_column(Text)
    related: Mapped[dict] = mapped_column(JSONB, default=dict)
    status: Mapped[str] = mapped_column(String(12), default="open", index=True)
    reviewed_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    review_note: Mapped[str | None] = mapped_column(Text)
    reviewed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = created_at_column()
    __table_args__ = (UniqueConstraint("kind", "subject_type", "subject_id", name="uq_risk_flag_subject"),)
