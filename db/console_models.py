"""Tables of the operations console: the staff audit trail and the dashboards' daily rollups.

`rollup_facts` holds one row per (grain, period, dimension, key): the figures of a day, an ISO
week or a month, for the whole platform (`dim='all'`) or one supplier, category, product,
province, city, promoter or commission tier. The dashboards read only these rows; the
`dashboard-rollups` Schedule (activities/rollups.py) recomputes the recent periods from the
orders, refunds and ledger. Money in fen; distinct counts (buyers, promoters) are counted at the
row's own grain, never summed from days."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import BigInteger, Date, Index, Integer, String, Text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from db.models import Base, LedgerTransaction, Order, created_at_column

# the rollups pick up a period's paid orders by this; the raw orders table had no index on it
PAID_AT_INDEX = Index("ix_orders_paid_at", Order.paid_at)
# and a period's commission by this
LEDGER_KIND_TIME_INDEX = Index("ix_ledger_transactions_kind_created", LedgerTransaction.kind, LedgerTransaction.created_at)


class StaffAudit(Base):
    """Every staff action taken in the console: who, what, on what, when, why, and how it ended."""

    __tablename__ = "staff_audit"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    at: Mapped[datetime] = created_at_column()
    actor_user_id: Mapped[int] = mapped_column(BigInteger, index=True)
    actor_role: Mapped[str] = mapped_column(String(20))
    action: Mapped[str] = mapped_column(String(40), index=True)
    subject_type: Mapped[str] = mapped_column(String(20))
    subject_id: Mapped[str] = mapped_column(String(64))
    reason: Mapped[str] = mapped_column(Text, default="")
    outcome: Mapped[str] = mapped_column(String(10))          # ok | refused
    detail: Mapped[dict] = mapped_column(JSONB, default=dict)  # the API's answer code, status


class RollupFact(Base):
    __tablename__ = "rollup_facts"
    grain: Mapped[str] = mapped_column(String(5), primary_key=True)        # day | week | month
    period_start: Mapped[date] = mapped_column(Date, primary_key=True)
    dim: Mapped[str] = mapped_column(String(10), primary_key=True)
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    label: Mapped[str] = mapped_column(String(200), default="")
    supplier_id: Mapped[int | None] = mapped_column(BigInteger)              # owner of a product/supplier row
    gmv_fen: Mapped[int] = mapped_column(BigInteger, default=0)
    paid_orders: Mapped[int] = mapped_column(Integer, default=0)
    paying_buyers: Mapped[int] = mapped_column(Integer, default=0)
    repeat_buyers: Mapped[int] = mapped_column(Integer, default=0)
    units: Mapped[int] = mapped_column(BigInteger, default=0)
    refund_fen: Mapped[int] = mapped_column(BigInteger, default=0)
    refunded_orders: Mapped[int] = mapped_column(Integer, default=0)
    commission_fen: Mapped[int] = mapped_column(BigInteger, default=0)
    exposures: Mapped[int] = mapped_column(BigInteger, default=0)
    clicks: Mapped[int] = mapped_column(BigInteger, default=0)
    new_promoters: Mapped[int] = mapped_column(Integer, default=0)
    active_promoters: Mapped[int] = mapped_column(Integer, default=0)
    refreshed_at: Mapped[datetime] = created_at_column()
    __table_args__ = (
        Index("ix_rollup_facts_series", "dim", "key", "grain", "period_start"),
        Index("ix_rollup_facts_supplier", "supplier_id", "grain", "period_start"),
        Index("ix_rollup_facts_rank", "grain", "period_start", "dim", "gmv_fen"),  # a period's top N
    )


class RollupViewSnapshot(Base):
    """Window exposures and clicks are running counters (window_product_stats): the rollup keeps
    each product's totals as they were at the end of each day, so a period's views are the
    difference between two snapshots."""

    __tablename__ = "rollup_view_snapshots"
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    product_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    exposures: Mapped[int] = mapped_column(BigInteger, default=0)
    clicks: Mapped[int] = mapped_column(BigInteger, default=0)
