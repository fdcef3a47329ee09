"""Tables the complete order process adds: coupons, outlets and pickup codes (O2O 核销),
refunds with their lines. Money columns are integer fen."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from db.models import Base, created_at_column


class Coupon(Base):
    """A discount: `fixed` takes amount_fen off, `threshold` takes amount_fen off once the goods
    it applies to reach threshold_fen. A supplier's coupon applies to that supplier's lines and
    is its cost; a platform coupon (no supplier_id) applies to the whole order and is the
    platform's cost."""

    __tablename__ = "coupons"
    code: Mapped[str] = mapped_column(String(32), primary_key=True)
    supplier_id: Mapped[int | None] = mapped_column(ForeignKey("suppliers.id"), index=True, nullable=True)
    kind: Mapped[str] = mapped_column(String(12))
    amount_fen: Mapped[int] = mapped_column(BigInteger)
    threshold_fen: Mapped[int] = mapped_column(BigInteger, default=0)
    starts_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    ends_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    total_limit: Mapped[int] = mapped_column(Integer)
    used_count: Mapped[int] = mapped_column(Integer, default=0)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    # in the coupon centre: buyers claim it first (one each, `total_limit` claims at most), and
    # only a buyer holding an unused claim can use it
    claimable: Mapped[bool] = mapped_column(Boolean, default=False, server_default=text("false"))
    claimed_count: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    per_buyer_limit: Mapped[int] = mapped_column(Integer, default=1, server_default=text("1"))  # claims and uses
    created_at: Mapped[datetime] = created_at_column()
    __table_args__ = (
        CheckConstraint("kind IN ('fixed','threshold')", name="ck_coupons_kind"),
        CheckConstraint("claimed_count BETWEEN 0 AND total_limit", name="ck_coupons_claimed"),
        CheckConstraint("amount_fen > 0", name="ck_coupons_amount"),
        CheckConstraint("threshold_fen >= 0", name="ck_coupons_threshold"),
        CheckConstraint("used_count BETWEEN 0 AND total_limit", name="ck_coupons_used"),
        CheckConstraint("per_buyer_limit BETWEEN 1 AND total_limit", name="ck_coupons_per_buyer"),
    )


class CouponClaim(Base):
    """A buyer's claim of a coupon-centre coupon (up to its per_buyer_limit each); `order_no`
    once an order uses it."""

    __tablename__ = "coupon_claims"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    code: Mapped[str] = mapped_column(ForeignKey("coupons.code"), index=True)
    buyer_user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    order_no: Mapped[str | None] = mapped_column(String(32))
    claimed_at: Mapped[datetime] = created_at_column()


class CouponRedemption(Base):
    __tablename__ = "coupon_redemptions"
    order_no: Mapped[str] = mapped_column(ForeignKey("orders.order_no"), primary_key=True)
    code: Mapped[str] = mapped_column(ForeignKey("coupons.code"), index=True)
    buyer_user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    discount_fen: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = created_at_column()


class Outlet(Base):
    """A store where buyers pick up a supplier's goods."""

    __tablename__ = "outlets"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    supplier_id: Mapped[int] = mapped_column(ForeignKey("suppliers.id"), index=True)
    name: Mapped[str] = mapped_column(String(64))
    address: Mapped[str] = mapped_column(String(200))
    latitude: Mapped[float] = mapped_column(Float)
    longitude: Mapped[float] = mapped_column(Float)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = created_at_column()
    __table_args__ = (
        CheckConstraint("latitude BETWEEN -90 AND 90 AND longitude BETWEEN -180 AND 180",
                        name="ck_outlets_position"),
    )


class OutletStaff(Base):
    __tablename__ = "outlet_staff"
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), primary_key=True)
    outlet_id: Mapped[int] = mapped_column(ForeignKey("outlets.id"), index=True)
    active: Mapped[bool] = mapped_column(Boolean, default=True)


class PickupCode(Base):
    """Issued once per paid pickup order. Only a keyed hash of the code is stored, so the
    table does not leak codes; `code_tail` helps staff talk to a buyer about one."""

    __tablename__ = "pickup_codes"
    order_no: Mapped[str] = mapped_column(ForeignKey("orders.order_no"), primary_key=True)
    outlet_id: Mapped[int] = mapped_column(ForeignKey("outlets.id"), index=True)
    code_hash: Mapped[str] = mapped_column(String(64), unique=True)
    code_tail: Mapped[str] = mapped_column(String(4))
    attempt: Mapped[int] = mapped_column(Integer, default=0)
    status: Mapped[str] = mapped_column(String(12), default="issued")
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    picked_up_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    verified_by_user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = created_at_column()
    __table_args__ = (
        CheckConstraint("status IN ('issued','picked_up','expired','refunded')", name="ck_pickup_status"),
    )


class Refund(Base):
    """One refund request (`out_refund_no` = refund_no at WeChat Pay)."""

    __tablename__ = "refunds"
    refund_no: Mapped[str] = mapped_column(String(32), primary_key=True)
    order_no: Mapped[str] = mapped_column(ForeignKey("orders.order_no"), index=True)
    buyer_user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    kind: Mapped[str] = mapped_column(String(24))
    reason: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[str] = mapped_column(String(20), index=True)
    amount_fen: Mapped[int] = mapped_column(BigInteger)
    needs_return: Mapped[bool] = mapped_column(Boolean, default=False)
    review_reasons: Mapped[str] = mapped_column(Text, default="")
    review_note: Mapped[str] = mapped_column(Text, default="")
    return_carrier: Mapped[str | None] = mapped_column(String(32))
    return_waybill_no: Mapped[str | None] = mapped_column(String(64))
    wechat_refund_id: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = created_at_column()
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # set once its RefundWorkflow is known to run; a buyer's refund left without one is started
    # by the `refunds-sweep` schedule
    workflow_started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    review_deadline_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    reviewed_by_user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    reviewed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    __table_args__ = (CheckConstraint("amount_fen > 0", name="ck_refunds_amount"),
                      Index("ix_refunds_unstarted", "created_at", postgresql_where=text("workflow_started_at IS NULL")))


class RefundLine(Base):
    __tablename__ = "refund_lines"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    refund_no: Mapped[str] = mapped_column(ForeignKey("refunds.refund_no"), index=True)
    order_line_id: Mapped[int] = mapped_column(ForeignKey("order_lines.id"), index=True)
    quantity: Mapped[int] = mapped_column(Integer)
    # units of the line already claimed by earlier refunds when this one was made: the
    # cumulative-rounding base for splitting money by quantity
    claimed_before: Mapped[int] = mapped_column(Integer)
    amount_fen: Mapped[int] = mapped_column(BigInteger)
    __table_args__ = (
        UniqueConstraint("refund_no", "order_line_id", name="uq_refund_lines"),
        CheckConstraint("quantity > 0", name="ck_refund_lines_quantity"),
    )
