"""Levels, team and regional bonuses, fake-trade findings and closed windows.

Bonus config is versioned like the commission policy (operators add versions, never edit one);
each paid order records the seller's level and the config version it was paid under. Frozen
commission needs no table: an open risk flag on an order is the freeze (see activities.bonuses).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, CheckConstraint, DateTime, ForeignKey, Index, Integer, String, Text, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from db.models import Base, created_at_column


class BonusPolicyRow(Base):
    __tablename__ = "bonus_policies"
    version: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    levels: Mapped[list] = mapped_column(JSONB)
    team_bonus_depth: Mapped[int] = mapped_column(Integer)
    regional_bps: Mapped[dict] = mapped_column(JSONB)
    set_by_user_id: Mapped[int | None] = mapped_column(BigInteger)
    note: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = created_at_column()
    __table_args__ = (CheckConstraint("team_bonus_depth BETWEEN 2 AND 3", name="ck_bonus_policies_depth"),)


class OrderLevel(Base):
    """The seller's level when the order was paid (by own completed sales) and what it added."""

    __tablename__ = "order_levels"
    order_no: Mapped[str] = mapped_column(ForeignKey("orders.order_no"), primary_key=True)
    bonus_version: Mapped[int] = mapped_column(ForeignKey("bonus_policies.version"))
    promoter_id: Mapped[int | None] = mapped_column(ForeignKey("promoters.id"), index=True)
    level_rank: Mapped[int | None] = mapped_column(Integer)
    level_name: Mapped[str | None] = mapped_column(String(20))
    uplift_bps: Mapped[int] = mapped_column(Integer, default=0)
    own_gmv_fen: Mapped[int] = mapped_column(BigInteger, default=0)
    uplift_fen: Mapped[int] = mapped_column(BigInteger, default=0)
    regional_fen: Mapped[int] = mapped_column(BigInteger, default=0)
    recorded_at: Mapped[datetime] = created_at_column()


class RegionalAgent(Base):
    """An operator's appointment: one active agent per province, city or county."""

    __tablename__ = "regional_agents"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    level: Mapped[str] = mapped_column(String(10))
    region_key: Mapped[str] = mapped_column(String(200))
    promoter_id: Mapped[int] = mapped_column(ForeignKey("promoters.id"), index=True)
    active: Mapped[bool] = mapped_column(default=True)
    appointed_by_user_id: Mapped[int | None] = mapped_column(BigInteger)
    appointed_at: Mapped[datetime] = created_at_column()
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    __table_args__ = (
        CheckConstraint("level IN ('province','city','county')", name="ck_regional_agents_level"),
        Index("uq_regional_agents_active_region", "region_key", unique=True, postgresql_where=text("active")),
    )


class TeamBonus(Base):
    """One promoter's team bonus of one month, as the commission settlement run computed it."""

    __tablename__ = "team_bonuses"
    month: Mapped[str] = mapped_column(String(7), primary_key=True)
    promoter_id: Mapped[int] = mapped_column(ForeignKey("promoters.id"), primary_key=True)
    bonus_version: Mapped[int] = mapped_column(ForeignKey("bonus_policies.version"))
    level_name: Mapped[str] = mapped_column(String(20))
    team_bonus_bps: Mapped[int] = mapped_column(Integer)
    own_gmv_fen: Mapped[int] = mapped_column(BigInteger)
    downline_gmv_fen: Mapped[int] = mapped_column(BigInteger)
    amount_fen: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = created_at_column()


class TeamBonusSale(Base):
    """One completed order a team bonus was paid on, and how much of it was refunded since: a
    refund after the bonus was posted takes back the bonus's share of it from the earner."""

    __tablename__ = "team_bonus_sales"
    month: Mapped[str] = mapped_column(String(7), primary_key=True)
    promoter_id: Mapped[int] = mapped_column(ForeignKey("promoters.id"), primary_key=True)
    order_no: Mapped[str] = mapped_column(ForeignKey("orders.order_no"), primary_key=True, index=True)
    team_bonus_bps: Mapped[int] = mapped_column(Integer)
    gmv_fen: Mapped[int] = mapped_column(BigInteger)
    refunded_fen: Mapped[int] = mapped_column(BigInteger, default=0, server_default=text("0"))

    __table_args__ = (
        CheckConstraint("refunded_fen >= 0 AND refunded_fen <= gmv_fen", name="ck_team_bonus_sales_refunded"),
    )


class FakeTradeFinding(Base):
    """Support's finding that a promoter faked trades; confirmed findings count toward closing
    the promoter's window."""

    __tablename__ = "fake_trade_findings"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    promoter_id: Mapped[int] = mapped_column(ForeignKey("promoters.id"), index=True)
    status: Mapped[str] = mapped_column(String(12), default="open")
    note: Mapped[str] = mapped_column(Text)
    order_nos: Mapped[list] = mapped_column(JSONB, default=list)
    recorded_by_user_id: Mapped[int | None] = mapped_column(BigInteger)
    reviewed_by_user_id: Mapped[int | None] = mapped_column(BigInteger)
    review_note: Mapped[str | None] = mapped_column(Text)
    reviewed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = created_at_column()
    __table_args__ = (CheckConstraint("status IN ('open','confirmed','dismissed')", name="ck_fake_trade_status"),)


class WindowClosure(Base):
    """A window closed by risk rules: its products were taken off and it takes no new orders."""

    __tablename__ = "window_closures"
    window_id: Mapped[int] = mapped_column(ForeignKey("windows.id"), primary_key=True)
    promoter_id: Mapped[int] = mapped_column(ForeignKey("promoters.id"), index=True)
    reason: Mapped[str] = mapped_column(Text)
    confirmed_findings: Mapped[int] = mapped_column(Integer)
    closed_at: Mapped[datetime] = created_at_column()
