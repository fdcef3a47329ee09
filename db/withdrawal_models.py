"""Withdrawals: a promoter moving available commission to WeChat change (零钱) through a
WeChat Pay merchant transfer bill. Money columns are integer fen."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Date,
    DateTime,
    ForeignKey,
    Index,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from db.models import Base, created_at_column
from domain.withdrawals import STATUSES


class Withdrawal(Base):
    """One withdrawal (`out_bill_no` at WeChat Pay is derived from `id`)."""

    __tablename__ = "withdrawals"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    promoter_id: Mapped[int] = mapped_column(ForeignKey("promoters.id"))
    amount_fen: Mapped[int] = mapped_column(BigInteger)
    status: Mapped[str] = mapped_column(String(24), index=True)
    request_key: Mapped[str | None] = mapped_column(String(80))
    local_day: Mapped[date] = mapped_column(Date)
    needs_review: Mapped[bool] = mapped_column(Boolean, default=False, server_default="false")
    review_decision: Mapped[str | None] = mapped_column(String(10))
    review_note: Mapped[str] = mapped_column(Text, default="", server_default="")
    reviewed_by_user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    reviewed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    out_bill_no: Mapped[str | None] = mapped_column(String(32), unique=True)
    transfer_bill_no: Mapped[str | None] = mapped_column(String(64))
    bill_state: Mapped[str | None] = mapped_column(String(24))
    package_info: Mapped[str | None] = mapped_column(Text)
    fail_reason: Mapped[str | None] = mapped_column(String(64))
    payee_name: Mapped[str | None] = mapped_column(String(30))
    created_at: Mapped[datetime] = created_at_column()
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    __table_args__ = (
        CheckConstraint("amount_fen > 0", name="ck_withdrawals_amount"),
        CheckConstraint("status IN (%s)" % ",".join(f"'{s}'" for s in STATUSES), name="ck_withdrawals_status"),
        CheckConstraint("review_decision IS NULL OR review_decision IN ('approve','reject')",
                        name="ck_withdrawals_review_decision"),
        UniqueConstraint("promoter_id", "request_key", name="uq_withdrawals_request_key"),
        Index("ix_withdrawals_promoter_day", "promoter_id", "local_day"),
    )
