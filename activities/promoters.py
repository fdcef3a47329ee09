"""Promoter lifecycle side effects: counting sales, recording assessments, reminders and
revivals. Each activity is idempotent (by promoter and cycle / revival number)."""

from __future__ import annotations

from datetime import UTC, datetime

import structlog
from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session, sessionmaker
from temporalio import activity

from activities.catalog import notify as notify_user
from db.models import Promoter
from db.promoter_models import (
    AssessmentCycle,
    PromoterProfile,
    Revival,
)
from db.sales import sales_by_promoter
from domain.assessment import (
    AssessCycleInput,
    CycleResult,
    RevivalInput,
    RevivalOutcome,
    SalesWindow,
    assess,
)
from domain.promoters import PromoterStatus

log = structlog.get_logger()


def count_completed_sales(s: Session, promoter_id: int, start: datetime, end: datetime) -> int:
    """The promoter's sales (domain/sales.py: completed, not self-purchased, net of refunds,
    no uncleared risk flag) completed in [start, end). No purchase is ever needed to qualify."""
    return sales_by_promoter(s, [promoter_id], start, end).get(promoter_id, (0, 0))[0]


def notify(s: Session, promoter_id: int, kind: str, message: str, key: str) -> bool:
    """Put a notice for the promoter in the notification outbox (the one buyers' messages go
    through: listed at GET /notifications, sent as a subscribe message by `messages-drain`),
    once per key, in the caller's transaction."""
    user_id = s.scalar(select(Promoter.user_id).where(Promoter.id == promoter_id))
    if user_id is None:
        return False
    done = notify_user(s, user_id=user_id, kind=kind, subject_type="promoter", subject_id=promoter_id,
                       message=message, key=key)
    if done:
        log.info("promoter.notify", promoter_id=promoter_id, kind=kind)
    return done


def set_status(s: Session, promoter: Promoter, status: PromoterStatus) -> None:
    if promoter.status != status:
        promoter.status = status
        profile = s.get(PromoterProfile, promoter.id)
        if profile is not None:
            profile.status_changed_at = datetime.now(UTC)


class PromoterActivities:
    def __init__(self, sessions: sessionmaker[Session]):
        self.sessions = sessions

    @activity.defn
    def promoter_status(self, promoter_id: int) -> str:
        """The promoter's status; `left` if they no longer exist."""
        with self.sessions() as s:
            status = s.scalar(select(Promoter.status).where(Promoter.id == promoter_id))
        return status or PromoterStatus.LEFT

    @activity.defn
    def count_sales(self, window: SalesWindow) -> int:
        with self.sessions() as s:
            return count_completed_sales(s, window.promoter_id, window.start, window.end)

    @activity.defn
    def assess_cycle(self, inp: AssessCycleInput) -> CycleResult:
        """Count the cycle's sales, record the result and set the status, once per cycle."""
        with self.sessions.begin() as s:
            promoter = s.get(Promoter, inp.promoter_id, with_for_update=True)
            if promoter is None:
                return CycleResult(status=PromoterStatus.LEFT, completed_orders=0,
                                   failed_in_row=inp.failed_in_row, passed=False)
            done = s.scalar(select(AssessmentCycle).where(
                AssessmentCycle.promoter_id == inp.promoter_id, AssessmentCycle.cycle_no == inp.cycle_no))
            if done is not None:
                return CycleResult(status=done.status_after, completed_orders=done.completed_orders,
                                   failed_in_row=done.failed_in_row, passed=done.passed)
            completed = count_completed_sales(s, inp.promoter_id, inp.started_at, inp.ends_at)
            status, failed = assess(completed, inp.target_orders, inp.failed_in_row)
            if promoter.status == PromoterStatus.LEFT:
                status = PromoterStatus.LEFT
            set_status(s, promoter, status)
            s.add(AssessmentCycle(
                promoter_id=inp.promoter_id, cycle_no=inp.cycle_no, started_at=inp.started_at,
                ends_at=inp.ends_at, target_orders=inp.target_orders, completed_orders=completed,
                passed=completed >= inp.target_orders, status_after=status, failed_in_row=failed))
            verdict = {
                PromoterStatus.ACTIVE: "passed: commission continues",
                PromoterStatus.PAUSED: "not met: new commission is paused (earned money is yours); "
                                       "sell in the next cycle or apply for revival",
                PromoterStatus.LAPSED: "not met twice in a row: lapsed, your position is kept; "
                                       "apply for revival",
            }.get(status, str(status))
            notify(s, inp.promoter_id, "assessment_result",
                   f"cycle {inp.cycle_no}: {completed} of {inp.target_orders} orders, {verdict}",
                   f"promoter:{inp.promoter_id}:cycle:{inp.cycle_no}:result")
            return CycleResult(status=status, completed_orders=completed, failed_in_row=failed,
                               passed=completed >= inp.target_orders)

    @activity.defn
    def remind(self, promoter_id: int, cycle_no: int, message: str) -> bool:
        with self.sessions.begin() as s:
            if s.get(Promoter, promoter_id) is None:
                return False
            return notify(s, promoter_id, "assessment_reminder", message,
                          f"promoter:{promoter_id}:cycle:{cycle_no}:reminder")

    @activity.defn
    def mark_left(self, promoter_id: int) -> None:
        with self.sessions.begin() as s:
            promoter = s.get(Promoter, promoter_id, with_for_update=True)
            if promoter is not None:
                set_status(s, promoter, PromoterStatus.LEFT)

    # --- revival -------------------------------------------------------------------------
    @activity.defn
    def open_revival(self, inp: RevivalInput, started_at: datetime, deadline: datetime) -> bool:
        """Record the revival; False if the promoter is gone."""
        with self.sessions.begin() as s:
            if s.get(Promoter, inp.promoter_id) is None:
                return False
            s.execute(insert(Revival).values(
                promoter_id=inp.promoter_id, n=inp.n, status="open", started_at=started_at,
                deadline=deadline, target_orders=inp.timings.target_orders, completed_orders=0,
            ).on_conflict_do_nothing(constraint="uq_revivals_promoter_n"))
            return True

    @activity.defn
    def resolve_revival(self, outcome: RevivalOutcome) -> None:
        """Revived: active again (no fee, no purchase). Expired: nothing changes; what was
        earned stays earned. Once per revival."""
        with self.sessions.begin() as s:
            revival = s.scalar(select(Revival).where(
                Revival.promoter_id == outcome.promoter_id, Revival.n == outcome.n).with_for_update())
            if revival is None or revival.status != "open":
                return
            revival.status, revival.how = outcome.status, outcome.how[:200]
            revival.completed_orders = outcome.completed_orders
            revival.approved_by_user_id = outcome.approved_by_user_id
            revival.resolved_at = datetime.now(UTC)
            promoter = s.get(Promoter, outcome.promoter_id, with_for_update=True)
            if outcome.status == "revived" and promoter.status in (PromoterStatus.PAUSED, PromoterStatus.LAPSED):
                set_status(s, promoter, PromoterStatus.ACTIVE)
            notify(s, outcome.promoter_id, f"revival_{outcome.status}",
                   f"revival {outcome.n}: {outcome.status} ({outcome.how})",
                   f"promoter:{outcome.promoter_id}:revival:{outcome.n}:{outcome.status}")
