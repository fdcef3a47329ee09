"""Settlement runs: supplier profit sharing per payment (the split rows refunds after a split
look up), per-supplier daily bills, promoters' monthly commission statements, and the runs
themselves. Money columns are integer fen; kept at least 3 years like every record."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Date,
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

SETTLEMENT_STATUSES = ("PLANNED", "SPLIT_REQUESTED", "SPLITTING", "SPLIT", "UNFREEZE_REQUESTED", "DONE", "FAILED")


class SettlementRun(Base):
    """One run per (kind, period): what the workflow of that id did, for reports and audits."""

    __tablename__ = "settlement_runs"
    kind: Mapped[str] = mapped_column(String(12), primary_key=True)
    period: Mapped[str] = mapped_column(String(10), primary_key=True)
    workflow_id: Mapped[str] = mapped_column(String(80))
    status: Mapped[str] = mapped_column(String(20))
    runs: Mapped[int] = mapped_column(Integer, default=1)
    totals: Mapped[dict] = mapped_column(JSONB, default=dict)
    started_at: Mapped[datetime] = created_at_column()
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    __table_args__ = (CheckConstraint("kind IN ('supplier','commission')", name="ck_settlement_runs_kind"),)


class SupplierSettlement(Base):
    """One payment's profit sharing: the plan (intent, written before calling WeChat Pay), the
    split order `SS{order_no}` and the unfreeze order `SU{order_no}`."""

    __tablename__ = "supplier_settlements"
    order_no: Mapped[str] = mapped_column(ForeignKey("orders.order_no"), primary_key=True)
    settle_date: Mapped[date] = mapped_column(Date, index=True)
    transaction_id: Mapped[str] = mapped_column(String(64))
    out_order_no: Mapped[str] = mapped_column(String(64), unique=True)
    unfreeze_out_order_no: Mapped[str] = mapped_column(String(64), unique=True)
    paid_fen: Mapped[int] = mapped_column(BigInteger)
    refunded_fen: Mapped[int] = mapped_column(BigInteger)
    max_ratio_bps: Mapped[int] = mapped_column(Integer)
    unsplit_fen: Mapped[int | None] = mapped_column(BigInteger)   # what WeChat Pay said was left
    room_fen: Mapped[int] = mapped_column(BigInteger)             # what the cap still allowed
    planned_split_fen: Mapped[int] = mapped_column(BigInteger)
    split_fen: Mapped[int] = mapped_column(BigInteger, default=0)  # what receivers really got
    status: Mapped[str] = mapped_column(String(20), index=True)
    wechat_order_id: Mapped[str | None] = mapped_column(String(64))
    unfreeze_order_id: Mapped[str | None] = mapped_column(String(64))
    failure: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = created_at_column()
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    __table_args__ = (
        CheckConstraint(f"status IN {SETTLEMENT_STATUSES}", name="ck_supplier_settlements_status"),
        CheckConstraint("split_fen >= 0 AND split_fen <= planned_split_fen AND planned_split_fen <= room_fen",
                        name="ck_supplier_settlements_cap"),
    )


class SupplierSettlementLine(Base):
    """One supplier's part of one payment's settlement: the figures of its lines at settlement,
    its share (from the ledger), what was split to it and what is outstanding."""

    __tablename__ = "supplier_settlement_lines"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    order_no: Mapped[str] = mapped_column(ForeignKey("supplier_settlements.order_no"), index=True)
    supplier_id: Mapped[int] = mapped_column(ForeignKey("suppliers.id"), index=True)
    settle_date: Mapped[date] = mapped_column(Date, index=True)
    sales_fen: Mapped[int] = mapped_column(BigInteger)
    refunds_fen: Mapped[int] = mapped_column(BigInteger)
    service_fee_fen: Mapped[int] = mapped_column(BigInteger)
    commission_fen: Mapped[int] = mapped_column(BigInteger)
    adjustment_fen: Mapped[int] = mapped_column(BigInteger, default=0)  # rounding of refunded units' parts
    share_fen: Mapped[int] = mapped_column(BigInteger)                  # = the ledger's payable for the order
    planned_split_fen: Mapped[int] = mapped_column(BigInteger)
    split_fen: Mapped[int] = mapped_column(BigInteger, default=0)
    outstanding_fen: Mapped[int] = mapped_column(BigInteger)
    receiver_account: Mapped[str | None] = mapped_column(String(64))
    result: Mapped[str] = mapped_column(String(10), default="NONE")  # NONE | PENDING | SUCCESS | CLOSED
    detail_id: Mapped[str | None] = mapped_column(String(64))
    fail_reason: Mapped[str | None] = mapped_column(String(64))
    __table_args__ = (
        UniqueConstraint("order_no", "supplier_id", name="uq_supplier_settlement_lines"),
        CheckConstraint("split_fen >= 0 AND split_fen <= planned_split_fen AND planned_split_fen <= GREATEST(share_fen, 0)",
                        name="ck_supplier_settlement_lines_split"),
        CheckConstraint("split_fen + outstanding_fen = share_fen", name="ck_supplier_settlement_lines_whole"),
    )


class SupplierBill(Base):
    """A supplier's bill for one settlement day: the sum of its settlement lines that day."""

    __tablename__ = "supplier_bills"
    settle_date: Mapped[date] = mapped_column(Date, primary_key=True)
    supplier_id: Mapped[int] = mapped_column(ForeignKey("suppliers.id"), primary_key=True, index=True)
    orders: Mapped[int] = mapped_column(Integer)
    sales_fen: Mapped[int] = mapped_column(BigInteger)
    refunds_fen: Mapped[int] = mapped_column(BigInteger)
    service_fee_fen: Mapped[int] = mapped_column(BigInteger)
    commission_fen: Mapped[int] = mapped_column(BigInteger)
    adjustment_fen: Mapped[int] = mapped_column(BigInteger)
    net_fen: Mapped[int] = mapped_column(BigInteger)
    split_fen: Mapped[int] = mapped_column(BigInteger)
    outstanding_fen: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = created_at_column()
    updated_at: Mapped[datetime] = created_at_column()
    __table_args__ = (CheckConstraint("split_fen + outstanding_fen = net_fen", name="ck_supplier_bills_whole"),)


class CommissionStatement(Base):
    """A promoter's commission for one month, from the ledger entries of its `available`
    account; unique per (month, promoter), so a run never makes one twice."""

    __tablename__ = "commission_statements"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    month: Mapped[str] = mapped_column(String(7))
    promoter_id: Mapped[int] = mapped_column(ForeignKey("promoters.id"), index=True)
    opening_fen: Mapped[int] = mapped_column(BigInteger)
    released_fen: Mapped[int] = mapped_column(BigInteger)      # sales commission released
    team_bonus_fen: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    regional_bonus_fen: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    reversed_fen: Mapped[int] = mapped_column(BigInteger)
    withdrawn_fen: Mapped[int] = mapped_column(BigInteger)
    other_fen: Mapped[int] = mapped_column(BigInteger)
    closing_fen: Mapped[int] = mapped_column(BigInteger)
    carried_negative_fen: Mapped[int] = mapped_column(BigInteger)
    entries: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(20), index=True)
    reviewed_by_user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    reviewed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    review_note: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = created_at_column()
    __table_args__ = (
        UniqueConstraint("month", "promoter_id", name="uq_commission_statements_month_promoter"),
        CheckConstraint("status IN ('final','awaiting_review','rejected')", name="ck_commission_statements_status"),
        CheckConstraint("closing_fen = opening_fen + released_fen + team_bonus_fen + regional_bonus_fen"
                        " - reversed_fen - withdrawn_fen + other_fen",
                        name="ck_commission_statements_arithmetic"),
    )



class ProfitSharingReturnRecord(Base):
    """分账回退: money taken back from a supplier's receiver because a refund reversed a share
    that had already been split to them. One per (refund, supplier), `out_return_no`
    SR{refund_no}S{supplier_id}; the row is the intent, written before WeChat Pay is asked."""

    __tablename__ = "profit_sharing_returns"
    out_return_no: Mapped[str] = mapped_column(String(64), primary_key=True)
    refund_no: Mapped[str] = mapped_column(ForeignKey("refunds.refund_no"), index=True)
    order_no: Mapped[str] = mapped_column(ForeignKey("supplier_settlements.order_no"), index=True)
    supplier_id: Mapped[int] = mapped_column(ForeignKey("suppliers.id"))
    return_mchid: Mapped[str] = mapped_column(String(64))
    amount_fen: Mapped[int] = mapped_column(BigInteger)
    result: Mapped[str] = mapped_column(String(12), default="PENDING")  # PENDING | PROCESSING | SUCCESS | FAILED
    return_id: Mapped[str | None] = mapped_column(String(64))
    fail_reason: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = created_at_column()
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    __table_args__ = (CheckConstraint("amount_fen > 0", name="ck_profit_sharing_returns_amount"),)
