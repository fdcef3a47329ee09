"""Reconciliation with WeChat Pay's daily trade bills: the bills as downloaded (one row per
payment / refund line), each run's report and its differences. Money columns are integer fen
(fees thousandths of a fen); kept at least 3 years like every record. A re-run of a day is a
new attempt: earlier reports are never overwritten."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Date,
    DateTime,
    ForeignKeyConstraint,
    Index,
    Integer,
    String,
    Text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from db.models import Base, created_at_column


class ReconciliationBill(Base):
    """A day's trade bill as last downloaded (hash checked); `exists` False: WeChat Pay had none."""

    __tablename__ = "reconciliation_bills"
    bill_date: Mapped[date] = mapped_column(Date, primary_key=True)
    exists: Mapped[bool] = mapped_column(Boolean)
    hash_value: Mapped[str | None] = mapped_column(String(64))
    summary: Mapped[dict] = mapped_column(JSONB, default=dict)
    fetched_at: Mapped[datetime] = created_at_column()


class ReconciliationBillRow(Base):
    """One line of a day's bill: a payment (key = out_trade_no) or a refund (key = out_refund_no)."""

    __tablename__ = "reconciliation_bill_rows"
    bill_date: Mapped[date] = mapped_column(Date, primary_key=True)
    kind: Mapped[str] = mapped_column(String(8), primary_key=True)
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    out_trade_no: Mapped[str] = mapped_column(String(64))
    transaction_id: Mapped[str] = mapped_column(String(64))
    refund_id: Mapped[str | None] = mapped_column(String(64))
    trade_state: Mapped[str] = mapped_column(String(16))
    refund_status: Mapped[str | None] = mapped_column(String(16))
    amount_fen: Mapped[int] = mapped_column(BigInteger)
    fee_millifen: Mapped[int] = mapped_column(BigInteger)
    traded_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    __table_args__ = (
        CheckConstraint("kind IN ('payment','refund')", name="ck_reconciliation_bill_rows_kind"),
        Index("ix_reconciliation_bill_rows_key", "kind", "key"),
    )


class ReconciliationRun(Base):
    """One attempt at reconciling a day: what the workflow of that id found."""

    __tablename__ = "reconciliation_runs"
    bill_date: Mapped[date] = mapped_column(Date, primary_key=True)
    attempt: Mapped[int] = mapped_column(Integer, primary_key=True)
    workflow_id: Mapped[str] = mapped_column(String(80), unique=True)
    status: Mapped[str] = mapped_column(String(20))
    bill_exists: Mapped[bool | None] = mapped_column(Boolean)
    bill_hash: Mapped[str | None] = mapped_column(String(64))
    matched: Mapped[int] = mapped_column(Integer, default=0)
    differences: Mapped[int] = mapped_column(Integer, default=0)
    totals: Mapped[dict] = mapped_column(JSONB, default=dict)
    timing: Mapped[list] = mapped_column(JSONB, default=list)
    note: Mapped[str] = mapped_column(Text, default="")
    started_at: Mapped[datetime] = created_at_column()
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    __table_args__ = (
        CheckConstraint("status IN ('running','clean','differences','bill_unavailable')",
                        name="ck_reconciliation_runs_status"),
        CheckConstraint("attempt >= 1", name="ck_reconciliation_runs_attempt"),
    )


class ReconciliationDifference(Base):
    __tablename__ = "reconciliation_differences"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    bill_date: Mapped[date] = mapped_column(Date)
    attempt: Mapped[int] = mapped_column(Integer)
    seq: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(24))
    subject: Mapped[str] = mapped_column(String(8))
    out_trade_no: Mapped[str | None] = mapped_column(String(64), index=True)
    out_refund_no: Mapped[str | None] = mapped_column(String(64))
    ours_fen: Mapped[int | None] = mapped_column(BigInteger)
    bill_fen: Mapped[int | None] = mapped_column(BigInteger)
    our_state: Mapped[str | None] = mapped_column(String(20))
    bill_state: Mapped[str | None] = mapped_column(String(20))
    note: Mapped[str] = mapped_column(Text, default="")
    __table_args__ = (
        ForeignKeyConstraint(["bill_date", "attempt"], ["reconciliation_runs.bill_date", "reconciliation_runs.attempt"],
                             name="fk_reconciliation_differences_run"),
        Index("uq_reconciliation_differences_seq", "bill_date", "attempt", "seq", unique=True),
    )
