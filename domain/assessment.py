"""Assessment and revival rules: both measure SALES — completed orders attributed to the
promoter's window — never head-count. A promoter's own purchases from their own window do not
count: nobody ever has to buy anything to keep earning or to come back.

Failing a cycle pauses NEW commission only; commission already earned is never touched."""

from __future__ import annotations

from datetime import datetime, timedelta

from pydantic import BaseModel

from domain.promoters import PromoterStatus

LAPSE_AFTER_FAILED_CYCLES = 2


def assess(completed_orders: int, target: int, failed_in_row: int) -> tuple[PromoterStatus, int]:
    """Status after a cycle and the new count of failed cycles in a row."""
    if completed_orders >= target:
        return PromoterStatus.ACTIVE, 0
    failed = failed_in_row + 1
    return (PromoterStatus.LAPSED if failed >= LAPSE_AFTER_FAILED_CYCLES else PromoterStatus.PAUSED), failed


def time_left_text(remaining: timedelta) -> str:
    if remaining <= timedelta(0):
        return "cycle ended"
    if remaining >= timedelta(days=1):
        days = remaining.days
        return f"{days} day{'s' if days != 1 else ''} left"
    hours = int(remaining.total_seconds() // 3600)
    return f"{hours} hour{'s' if hours != 1 else ''} left" if hours else "less than an hour left"


def progress_text(completed: int, target: int, remaining: timedelta) -> str:
    """'2 of 3 orders, 9 days left'."""
    return f"{min(completed, target)} of {target} orders, {time_left_text(remaining)}"


# --- types passed through the lifecycle and revival workflows --------------------------------
class LifecycleTimings(BaseModel):
    cycle: timedelta
    target_orders: int
    reminder_before: timedelta
    refresh_every: timedelta


class LifecycleInput(BaseModel):
    promoter_id: int
    timings: LifecycleTimings
    cycle_no: int = 1
    failed_in_row: int = 0


class CycleProgress(BaseModel):
    promoter_id: int
    cycle_no: int
    status: PromoterStatus
    cycle_started_at: datetime | None = None
    cycle_ends_at: datetime | None = None
    target_orders: int
    completed_orders: int = 0
    failed_in_row: int = 0
    as_of: datetime | None = None
    text: str = ""


class CycleResult(BaseModel):
    status: PromoterStatus
    completed_orders: int
    failed_in_row: int
    passed: bool


class SalesWindow(BaseModel):
    promoter_id: int
    start: datetime
    end: datetime


class RevivalTimings(BaseModel):
    window: timedelta
    target_orders: int
    refresh_every: timedelta


class RevivalInput(BaseModel):
    promoter_id: int
    n: int
    timings: RevivalTimings


class RevivalApproval(BaseModel):
    support_user_id: int
    note: str


class RevivalProgress(BaseModel):
    promoter_id: int
    n: int
    status: str  # open | revived | expired
    started_at: datetime | None = None
    deadline: datetime | None = None
    target_orders: int
    completed_orders: int = 0
    how: str | None = None
    text: str = ""


class AssessCycleInput(BaseModel):
    promoter_id: int
    cycle_no: int
    started_at: datetime
    ends_at: datetime
    target_orders: int
    failed_in_row: int


class RevivalOutcome(BaseModel):
    promoter_id: int
    n: int
    status: str  # revived | expired
    completed_orders: int
    how: str
    approved_by_user_id: int | None = None
