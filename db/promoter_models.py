"""Promoters and commission policy: onboarding record, referral binding, policy versions,
the policy each order was paid under, assessment cycles, reminders and revivals."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from db.models import Base, created_at_column


class PromoterProfile(Base):
    """What onboarding recorded. Personal data is the minimum: a masked ID number and a keyed
    hash (to refuse a second account for the same person), a masked name and a keyed hash of
    the full name (what a withdrawal's real name is compared with)."""

    __tablename__ = "promoter_profiles"
    promoter_id: Mapped[int] = mapped_column(ForeignKey("promoters.id"), primary_key=True)
    referral_code: Mapped[str] = mapped_column(String(16), unique=True)
    agreement_version: Mapped[str] = mapped_column(String(32))
    agreement_accepted_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    real_name_masked: Mapped[str] = mapped_column(String(32))
    real_name_hash: Mapped[str | None] = mapped_column(String(64))
    id_number_masked: Mapped[str] = mapped_column(String(18))
    id_number_hash: Mapped[str] = mapped_column(String(64), unique=True)
    real_name_verified_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    status_changed_at: Mapped[datetime] = created_at_column()
    created_at: Mapped[datetime] = created_at_column()


class ReferralBinding(Base):
    """First-touch and permanent (a trigger refuses updates and deletes); mirrors
    promoters.referrer_id, which the commission chain walks."""

    __tablename__ = "referral_bindings"
    promoter_id: Mapped[int] = mapped_column(ForeignKey("promoters.id"), primary_key=True)
    referrer_id: Mapped[int] = mapped_column(ForeignKey("promoters.id"), index=True)
    code: Mapped[str] = mapped_column(String(16))
    source: Mapped[str] = mapped_column(String(20))
    bound_at: Mapped[datetime] = created_at_column()
    __table_args__ = (CheckConstraint("promoter_id <> referrer_id", name="ck_referral_not_self"),)


class CommissionPolicyRow(Base):
    __tablename__ = "commission_policies"
    version: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    tiers: Mapped[int] = mapped_column(Integer)
    tier_rates_bps: Mapped[list] = mapped_column(JSONB)
    self_purchase_commission: Mapped[bool] = mapped_column(Boolean, default=False)  # old versions only: never read
    set_by_user_id: Mapped[int | None] = mapped_column(BigInteger)
    note: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = created_at_column()
    __table_args__ = (CheckConstraint("tiers BETWEEN 1 AND 3", name="ck_commission_policies_tiers"),)


class OrderCommissionPolicy(Base):
    """The policy version in force when the order was paid; the order is settled by it."""

    __tablename__ = "order_commission_policies"
    order_no: Mapped[str] = mapped_column(ForeignKey("orders.order_no"), primary_key=True)
    policy_version: Mapped[int] = mapped_column(ForeignKey("commission_policies.version"))
    self_purchase: Mapped[bool] = mapped_column(Boolean, default=False)
    recorded_at: Mapped[datetime] = created_at_column()


class AssessmentCycle(Base):
    __tablename__ = "assessment_cycles"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    promoter_id: Mapped[int] = mapped_column(ForeignKey("promoters.id"), index=True)
    cycle_no: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    ends_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    target_orders: Mapped[int] = mapped_column(Integer)
    completed_orders: Mapped[int] = mapped_column(Integer)
    passed: Mapped[bool] = mapped_column(Boolean)
    status_after: Mapped[str] = mapped_column(String(20))
    failed_in_row: Mapped[int] = mapped_column(Integer)
    assessed_at: Mapped[datetime] = created_at_column()
    __table_args__ = (UniqueConstraint("promoter_id", "cycle_no", name="uq_assessment_cycle"),)


class Revival(Base):
    __tablename__ = "revivals"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    promoter_id: Mapped[int] = mapped_column(ForeignKey("promoters.id"), index=True)
    n: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(20), default="open")
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    deadline: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    target_orders: Mapped[int] = mapped_column(Integer)
    completed_orders: Mapped[int] = mapped_column(Integer, default=0)
    how: Mapped[str | None] = mapped_column(String(200))
    approved_by_user_id: Mapped[int | None] = mapped_column(BigInteger)
    resolved_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    __table_args__ = (
        UniqueConstraint("promoter_id", "n", name="uq_revivals_promoter_n"),
        CheckConstraint("status IN ('open','revived','expired')", name="ck_revivals_status"),
    )
