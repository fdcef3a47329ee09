"""拼团 group buying (domain/group_buy.py): the supplier's deal, each group, and each member's place."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Boolean, CheckConstraint, DateTime, ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from db.models import Base, created_at_column


class GroupDeal(Base):
    __tablename__ = "group_deals"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    sku_id: Mapped[int] = mapped_column(ForeignKey("skus.id"), index=True)
    supplier_id: Mapped[int] = mapped_column(ForeignKey("suppliers.id"), index=True)
    group_price_fen: Mapped[int] = mapped_column(BigInteger)
    group_size: Mapped[int] = mapped_column(Integer)
    time_limit_seconds: Mapped[int] = mapped_column(Integer)
    starts_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    ends_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    active: Mapped[bool] = mapped_column(Boolean, default=True, server_default="true")
    created_at: Mapped[datetime] = created_at_column()
    __table_args__ = (
        CheckConstraint("group_price_fen > 0 AND group_size BETWEEN 2 AND 50 AND time_limit_seconds > 0",
                        name="ck_group_deals_positive"),
    )


class GroupBuy(Base):
    __tablename__ = "group_buys"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    deal_id: Mapped[int] = mapped_column(ForeignKey("group_deals.id"), index=True)
    opener_order_no: Mapped[str] = mapped_column(String(32), unique=True)
    size: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(10), default="opening", server_default="opening")
    deadline: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)  # set when it opens
    platform_fill: Mapped[bool] = mapped_column(Boolean, default=False, server_default="false")  # GROUP_PLATFORM_FILL then
    platform_filled: Mapped[bool] = mapped_column(Boolean, default=False, server_default="false")
    created_at: Mapped[datetime] = created_at_column()
    decided_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class GroupSeat(Base):
    """One member's place, held by their order; `left` when that order was cancelled unpaid."""
    __tablename__ = "group_seats"
    order_no: Mapped[str] = mapped_column(String(32), primary_key=True)
    group_id: Mapped[int] = mapped_column(ForeignKey("group_buys.id"), index=True)
    buyer_user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    status: Mapped[str] = mapped_column(String(10), default="held", server_default="held")  # held|paid|left
    created_at: Mapped[datetime] = created_at_column()
