"""Settlement rules: which period a run covers, how much of a payment WeChat Pay lets us split
to suppliers, what a supplier's bill and a promoter's monthly statement say. Pure: no I/O.

Periods are strings: a supplier run settles one calendar day (`YYYY-MM-DD`), a commission run
one calendar month (`YYYY-MM`), both in the settlement time zone (Asia/Shanghai by default).

Profit sharing (分账): WeChat Pay lets a merchant split at most `max_ratio_bps` of a payment
(30% by default) to receivers. A supplier's share above what the cap still allows stays on
`supplier:{id}:payable` and is reported as outstanding (paid by bank transfer): never lost.
"""

from __future__ import annotations

import re
from datetime import date, datetime, time, timedelta
from enum import StrEnum
from typing import Literal
from zoneinfo import ZoneInfo

from pydantic import BaseModel, Field

from domain.money import BPS_WHOLE, apply_bps
from domain.refunds import remaining_share

Kind = Literal["supplier", "commission"]
DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")
MONTH = re.compile(r"^\d{4}-(0[1-9]|1[0-2])$")


class PeriodError(ValueError):
    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code, self.message = code, message


# --- periods ---------------------------------------------------------------------------------
def parse_day(text: str) -> date:
    if not isinstance(text, str) or not DAY.match(text):
        raise PeriodError("BAD_PERIOD", f"a supplier settlement period is a day YYYY-MM-DD, not {text!r}")
    try:
        return date.fromisoformat(text)
    except ValueError as err:
        raise PeriodError("BAD_PERIOD", f"{text} is not a calendar day") from err


def parse_month(text: str) -> tuple[int, int]:
    if not isinstance(text, str) or not MONTH.match(text):
        raise PeriodError("BAD_PERIOD", f"a commission settlement period is a month YYYY-MM, not {text!r}")
    year, month = text.split("-")
    return int(year), int(month)


def parse_period(kind: Kind, text: str) -> str:
    """The canonical period string of a run, or PeriodError."""
    if kind == "supplier":
        return parse_day(text).isoformat()
    if kind == "commission":
        year, month = parse_month(text)
        return f"{year:04d}-{month:02d}"
    raise PeriodError("BAD_KIND", f"settlement kind is supplier or commission, not {kind!r}")


def day_bounds(day: str, tz: str) -> tuple[datetime, datetime]:
    """[start, end) of the calendar day in the time zone, as aware datetimes."""
    d = parse_day(day)
    zone = ZoneInfo(tz)
    start = datetime.combine(d, time(), zone)
    return start, datetime.combine(d + timedelta(days=1), time(), zone)


def next_month(year: int, month: int) -> tuple[int, int]:
    return (year + 1, 1) if month == 12 else (year, month + 1)


def month_bounds(month: str, tz: str) -> tuple[datetime, datetime]:
    """[start, end) of the calendar month in the time zone."""
    year, mon = parse_month(month)
    zone = ZoneInfo(tz)
    ny, nm = next_month(year, mon)
    return datetime(year, mon, 1, tzinfo=zone), datetime(ny, nm, 1, tzinfo=zone)


def period_bounds(kind: Kind, period: str, tz: str) -> tuple[datetime, datetime]:
    return day_bounds(period, tz) if kind == "supplier" else month_bounds(period, tz)


def supplier_period_at(moment: datetime, tz: str, delay_days: int = 1) -> str:
    """The day a supplier run started at `moment` settles: T+`delay_days` (yesterday)."""
    return (moment.astimezone(ZoneInfo(tz)).date() - timedelta(days=delay_days)).isoformat()


def commission_period_at(moment: datetime, tz: str) -> str:
    """The month a commission run started at `moment` settles: the previous calendar month."""
    local = moment.astimezone(ZoneInfo(tz)).date()
    year, month = (local.year - 1, 12) if local.month == 1 else (local.year, local.month - 1)
    return f"{year:04d}-{month:02d}"


def check_period(kind: Kind, period: str, now: datetime, tz: str, *, allow_open: bool = False) -> str:
    """A period an operator may start a run for: well formed and begun (a supplier day may be
    today: what completed so far is settled, the rest goes to the next day's run); a commission
    month must have ended, since its statements are frozen once made (unless `allow_open`)."""
    period = parse_period(kind, period)
    start, end = period_bounds(kind, period, tz)
    if now < start:
        raise PeriodError("PERIOD_IN_FUTURE", f"{period} has not begun yet")
    if kind == "commission" and now < end and not allow_open:
        raise PeriodError("PERIOD_NOT_ENDED", f"{period} has not ended; its statements would miss the rest of it")
    return period


def run_workflow_id(kind: Kind, period: str) -> str:
    return f"settlement-{kind}-{period}"


# --- profit sharing cap ----------------------------------------------------------------------
def split_cap(paid_fen: int, max_ratio_bps: int) -> int:
    """What WeChat Pay lets all split orders of a payment take together (rounded down)."""
    return apply_bps(paid_fen, max_ratio_bps)


def split_room(paid_fen: int, refunded_fen: int, max_ratio_bps: int, unsplit_fen: int | None = None) -> int:
    """What may still be split off a payment: within the cap less what is already gone from it
    (WeChat's unsplit amount tells), and never more than the money still held (paid less
    refunded). Conservative when WeChat counts refunds as gone too."""
    if paid_fen < 0 or refunded_fen < 0 or refunded_fen > paid_fen:
        raise ValueError("need 0 <= refunded <= paid")
    cap, held = split_cap(paid_fen, max_ratio_bps), paid_fen - refunded_fen
    if unsplit_fen is None:
        return max(0, min(cap, held))
    unsplit = max(0, min(unsplit_fen, paid_fen))
    gone = paid_fen - unsplit
    return max(0, min(cap - gone, unsplit, held))


class SupplierShare(BaseModel):
    supplier_id: int
    share_fen: int
    can_receive: bool = True  # has a profit-sharing receiver account (WeChat Pay mchid)


class SplitLine(BaseModel):
    supplier_id: int
    share_fen: int
    split_fen: int
    outstanding_fen: int


def allocate_splits(room_fen: int, shares: list[SupplierShare]) -> list[SplitLine]:
    """Give each supplier (by id) as much of its share as the room left allows; the rest of
    each share is outstanding. Suppliers without a receiver take none of the room."""
    left = max(0, room_fen)
    out: list[SplitLine] = []
    for share in sorted(shares, key=lambda s: s.supplier_id):
        split = min(max(share.share_fen, 0), left) if share.can_receive else 0
        left -= split
        out.append(SplitLine(supplier_id=share.supplier_id, share_fen=share.share_fen, split_fen=split,
                             outstanding_fen=share.share_fen - split))
    return out


# --- supplier bill ---------------------------------------------------------------------------
class BillFigures(BaseModel):
    """A supplier's side of some order lines: goods sold, refunded, the platform's service fee
    and the promoters' commission on the units kept, and what is left: the supplier's net."""

    sales_fen: int = 0
    refunds_fen: int = 0
    service_fee_fen: int = 0
    commission_fen: int = 0

    @property
    def net_fen(self) -> int:
        return self.sales_fen - self.refunds_fen - self.service_fee_fen - self.commission_fen

    def __add__(self, other: BillFigures) -> BillFigures:
        return BillFigures(sales_fen=self.sales_fen + other.sales_fen,
                           refunds_fen=self.refunds_fen + other.refunds_fen,
                           service_fee_fen=self.service_fee_fen + other.service_fee_fen,
                           commission_fen=self.commission_fen + other.commission_fen)


def line_figures(*, paid_fen: int, service_fee_fen: int, commission_fen: int, quantity: int,
                 refunded_units: int, refunded_fen: int) -> BillFigures:
    """One order line: the fee and commission of refunded units go back with them (the same
    cumulative rounding the refunds use)."""
    return BillFigures(sales_fen=paid_fen, refunds_fen=refunded_fen,
                       service_fee_fen=remaining_share(service_fee_fen, quantity, refunded_units),
                       commission_fen=remaining_share(commission_fen, quantity, refunded_units))


class SettlementStatus(StrEnum):
    PLANNED = "PLANNED"                        # intent written, split not asked yet
    SPLIT_REQUESTED = "SPLIT_REQUESTED"        # we may have asked WeChat Pay to split
    SPLITTING = "SPLITTING"                    # WeChat Pay accepted, still PROCESSING
    SPLIT = "SPLIT"                            # split finished (or nothing to split), rest frozen
    UNFREEZE_REQUESTED = "UNFREEZE_REQUESTED"  # we may have asked to unfreeze the rest
    DONE = "DONE"
    FAILED = "FAILED"                          # WeChat Pay refused: support settles it by hand
    DEFERRED = "DEFERRED"                      # a refund is open on the order: next run (never stored)

    @property
    def final(self) -> bool:
        return self in (SettlementStatus.DONE, SettlementStatus.FAILED)


def split_out_order_no(order_no: str) -> str:
    return f"SS{order_no}"


def unfreeze_out_order_no(order_no: str) -> str:
    return f"SU{order_no}"


def split_ledger_key(order_no: str, supplier_id: int) -> str:
    return f"settlement:supplier:{order_no}:{supplier_id}"


# --- commission statement --------------------------------------------------------------------
class StatementStatus(StrEnum):
    FINAL = "final"
    AWAITING_REVIEW = "awaiting_review"
    REJECTED = "rejected"   # support holds it: not payable until corrected


class LedgerSums(BaseModel):
    """What one promoter's `available` account did, from its ledger entries (credit-normal:
    credits add). Opening: everything before the month; the rest: within it."""

    opening_fen: int = 0
    released_fen: int = 0    # credits of commission_release (sales commission)
    team_bonus_fen: int = 0  # credits of team_bonus (the month's bonus on tier 2-3 sales, paid by the platform)
    regional_bonus_fen: int = 0  # credits of regional_release (regional agents' bonus)
    reversed_fen: int = 0    # debits of refund (commission reversed after release)
    withdrawn_fen: int = 0   # net debits of withdrawal_* (out to withdrawals, back when they fail)
    other_fen: int = 0       # net credits of anything else (corrections)
    entries: int = 0


class StatementFigures(LedgerSums):
    closing_fen: int
    carried_negative_fen: int  # a negative balance brought into the month, netted against it
    needs_review: bool


def statement_figures(sums: LedgerSums, review_above_fen: int) -> StatementFigures:
    income = sums.released_fen + sums.team_bonus_fen + sums.regional_bonus_fen
    closing = sums.opening_fen + income - sums.reversed_fen - sums.withdrawn_fen + sums.other_fen
    return StatementFigures(**sums.model_dump(), closing_fen=closing,
                            carried_negative_fen=max(0, -sums.opening_fen),
                            needs_review=income > review_above_fen)


# --- what workflows and activities pass each other ---------------------------------------------
class SupplierRunInput(BaseModel):
    period: str | None = Field(default=None, description="YYYY-MM-DD; None: yesterday (T+delay) when started")
    timezone: str = "Asia/Shanghai"
    delay_days: int = 1
    max_ratio_bps: int = Field(default=3000, ge=0, le=BPS_WHOLE)
    page_size: int = Field(default=500, ge=1)
    parallel_orders: int = Field(default=20, ge=1)
    poll_every: timedelta = timedelta(minutes=1)
    cursor: str = ""                                  # continue-as-new: orders after this one
    carried: SupplierRunProgress | None = None        # continue-as-new: progress so far


class SupplierRunProgress(BaseModel):
    kind: Kind = "supplier"
    period: str
    status: str
    orders_settled: int = 0
    orders_split: int = 0
    orders_deferred: int = 0
    failed_orders: list[str] = []
    split_fen: int = 0
    outstanding_fen: int = 0
    bills: int = 0
    delegated_to: str | None = None
    note: str = ""
    started_at: datetime | None = None
    finished_at: datetime | None = None


class SplitOrderRequest(BaseModel):
    order_no: str
    period: str
    max_ratio_bps: int


class OrderSettlement(BaseModel):
    order_no: str
    status: SettlementStatus
    split_fen: int = 0
    outstanding_fen: int = 0
    note: str = ""


class SupplierRunTotals(BaseModel):
    bills: int
    orders: int
    split_fen: int
    outstanding_fen: int


class CommissionRunInput(BaseModel):
    period: str | None = Field(default=None, description="YYYY-MM; None: last month when started")
    timezone: str = "Asia/Shanghai"
    batch_size: int = Field(default=500, ge=1)
    batches_per_child: int = Field(default=10, ge=1)
    parallel_children: int = Field(default=8, ge=1)
    review_above_fen: int = 500_000
    auto_payouts: bool = Field(default=True, description="when final, start the automatic payouts "
                                                          "of promoters who chose them (`payouts-{month}`)")


class StatementBatch(BaseModel):
    """Promoters with an `available` account, ids in [first_id, next_first_id)."""

    month: str
    timezone: str
    first_id: int
    next_first_id: int | None
    review_above_fen: int


class CommissionBatchesInput(BaseModel):
    parent_id: str
    batches: list[StatementBatch]


class StatementTotals(BaseModel):
    statements: int = 0
    opening_fen: int = 0
    released_fen: int = 0
    team_bonus_fen: int = 0
    regional_bonus_fen: int = 0
    reversed_fen: int = 0
    withdrawn_fen: int = 0
    other_fen: int = 0
    closing_fen: int = 0

    def plus(self, other: StatementTotals) -> StatementTotals:
        return StatementTotals(**{k: getattr(self, k) + getattr(other, k) for k in StatementTotals.model_fields})


class StatementBatchResult(BaseModel):
    first_id: int
    created: int
    totals: StatementTotals
    awaiting_review: list[int]


class CommissionRunProgress(BaseModel):
    kind: Kind = "commission"
    period: str
    status: str
    batches_total: int = 0
    batches_done: int = 0
    created: int = 0
    totals: StatementTotals = StatementTotals()
    awaiting_review: int = 0
    awaiting_review_ids: list[int] = Field(default=[], description="the first 100")
    approved: int = 0
    rejected: int = 0
    delegated_to: str | None = None
    note: str = ""
    started_at: datetime | None = None
    finished_at: datetime | None = None


class StatementReview(BaseModel):
    promoter_id: int
    approve: bool
    note: str = ""
    reviewer_user_id: int


class StatementView(BaseModel):
    month: str
    promoter_id: int
    opening_fen: int
    released_fen: int                # sales commission
    team_bonus_fen: int = 0
    regional_bonus_fen: int = 0
    reversed_fen: int
    withdrawn_fen: int
    other_fen: int
    closing_fen: int
    carried_negative_fen: int
    entries: int
    status: StatementStatus
    reviewed_by_user_id: int | None = None
    review_note: str = ""


def review_problem(review: StatementReview) -> str | None:
    if not review.approve and not review.note.strip():
        return "say why the statement is rejected"
    if len(review.note) > 500:
        return "the note is at most 500 characters"
    return None


SupplierRunInput.model_rebuild()


# --- profit-sharing return (分账回退) after a refund -------------------------------------------
def split_return_out_no(refund_no: str, supplier_id: int) -> str:
    return f"SR{refund_no}S{supplier_id}"


def split_returns(reversed_fen: dict[int, int], split_fen: dict[int, int],
                  returned_fen: dict[int, int]) -> dict[int, int]:
    """Per supplier, what to take back after a refund: the share the refund reversed, but only
    as far as WeChat Pay really split it to them and it was not taken back before. What is not
    returned stays a negative payable (netted or recovered later), never lost."""
    out = {}
    for supplier_id, reversed_ in reversed_fen.items():
        room = split_fen.get(supplier_id, 0) - returned_fen.get(supplier_id, 0)
        amount = min(reversed_, room)
        if amount > 0:
            out[supplier_id] = amount
    return out
