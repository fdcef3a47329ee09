"""Withdrawal rules: what a promoter may withdraw, when support must look first, the states a
withdrawal moves through, and the types the API, the WithdrawalWorkflow and its activities
pass each other. Pure: no I/O.

    REQUESTED ─(above the review threshold)→ REVIEWING ─reject→ REJECTED      (money back)
        │                                      │approve
        └──────────────→ TRANSFERRING ←────────┘        (bill intent recorded, WeChat Pay called)
                              │
                        WAIT_USER_CONFIRM ── user confirms in WeChat ──→ SUCCESS   (money left)
                              │ not confirmed in time / promoter cancels
                          CANCELLING ──→ CANCELLED                                 (money back)
                        any bill state FAIL ──→ FAILED                             (money back)

Money moves twice per withdrawal: at request `promoter:{id}:available` → `promoter:{id}:withdrawing`
(one database transaction with the withdrawal row), and at the end `withdrawing` →
`wechatpay:clearing` (paid) or back to `available` (rejected, failed, cancelled).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from pydantic import BaseModel, Field


class WithdrawalStatus(StrEnum):
    REQUESTED = "REQUESTED"
    REVIEWING = "REVIEWING"
    TRANSFERRING = "TRANSFERRING"
    WAIT_USER_CONFIRM = "WAIT_USER_CONFIRM"
    CANCELLING = "CANCELLING"
    SUCCESS = "SUCCESS"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"
    REJECTED = "REJECTED"

    @property
    def final(self) -> bool:
        return self in FINAL

    @property
    def money_returned(self) -> bool:
        return self in RETURNED


STATUSES = tuple(s.value for s in WithdrawalStatus)
FINAL = frozenset({WithdrawalStatus.SUCCESS, WithdrawalStatus.FAILED, WithdrawalStatus.CANCELLED,
                   WithdrawalStatus.REJECTED})
# Ended with the money back in the wallet: these do not count against the daily limit.
RETURNED = frozenset({WithdrawalStatus.FAILED, WithdrawalStatus.CANCELLED, WithdrawalStatus.REJECTED})

# WeChat Pay merchant transfer bills: the smallest transfer, and the amount from which the
# payee's real name must be given (WeChat checks it against the account).
WECHAT_MIN_TRANSFER_FEN = 10
REAL_NAME_REQUIRED_FROM_FEN = 200_000
TRANSFER_SCENE_ID = "1005"  # 佣金报酬
TRANSFER_REPORT_INFOS = ({"info_type": "岗位类型", "info_content": "推广员"},
                         {"info_type": "报酬说明", "info_content": "带货佣金提现"})
TRANSFER_REMARK = "橱窗带货佣金提现"

# Bill states at WeChat Pay
BILL_FINAL = ("SUCCESS", "FAIL", "CANCELLED")
BILL_NOT_FOUND = "NOT_FOUND"
_OUT_BILL_NO = re.compile(r"^WD(\d{12})$")


def out_bill_no(withdrawal_id: int) -> str:
    """The bill's merchant number: derived from the withdrawal, so a retried call can never
    create a second transfer (WeChat: ^[0-9A-Za-z]{5,32}$)."""
    if withdrawal_id <= 0 or withdrawal_id >= 10**12:
        raise ValueError(f"withdrawal id out of range: {withdrawal_id}")
    return f"WD{withdrawal_id:012d}"


def withdrawal_id_of(bill_no: str) -> int | None:
    """The withdrawal an out_bill_no belongs to; None if it is not one of ours."""
    match = _OUT_BILL_NO.match(bill_no or "")
    return int(match.group(1)) if match else None


class WithdrawalRefused(Exception):
    def __init__(self, code: str, message: str, status: int = 409):
        super().__init__(message)
        self.code, self.message, self.status = code, message, status


@dataclass(frozen=True)
class WithdrawalRules:
    min_fen: int
    daily_limit_fen: int
    review_above_fen: int

    @property
    def effective_min_fen(self) -> int:
        return max(self.min_fen, WECHAT_MIN_TRANSFER_FEN)


def check_amount(amount_fen: int, rules: WithdrawalRules) -> None:
    """Refusals that need nothing but the amount (checked before anything is locked)."""
    if isinstance(amount_fen, bool) or not isinstance(amount_fen, int) or amount_fen <= 0:
        raise WithdrawalRefused("INVALID_AMOUNT", "amount_fen must be a positive integer (fen)", 422)
    if amount_fen < rules.effective_min_fen:
        raise WithdrawalRefused("BELOW_MINIMUM", f"the smallest withdrawal is {rules.effective_min_fen} fen", 422)
    if amount_fen > rules.daily_limit_fen:
        raise WithdrawalRefused("DAILY_LIMIT_EXCEEDED",
                                f"at most {rules.daily_limit_fen} fen may be withdrawn per day")


def check_withdrawal(amount_fen: int, *, available_fen: int, withdrawn_today_fen: int,
                     rules: WithdrawalRules) -> None:
    """Whether a promoter may withdraw `amount_fen` now, with the wallet locked. A negative
    balance (refunds after release) is carried and blocks withdrawal until earnings cover it.
    The promoter's status does not matter: money already earned is theirs."""
    check_amount(amount_fen, rules)
    if available_fen < amount_fen:
        raise WithdrawalRefused("INSUFFICIENT_BALANCE",
                                f"available balance is {available_fen} fen, less than {amount_fen}")
    if withdrawn_today_fen + amount_fen > rules.daily_limit_fen:
        left = max(rules.daily_limit_fen - withdrawn_today_fen, 0)
        raise WithdrawalRefused("DAILY_LIMIT_EXCEEDED",
                                f"daily limit {rules.daily_limit_fen} fen: {left} fen left today")


def needs_review(amount_fen: int, rules: WithdrawalRules) -> bool:
    return amount_fen > rules.review_above_fen


def needs_real_name(amount_fen: int) -> bool:
    return amount_fen >= REAL_NAME_REQUIRED_FROM_FEN


def status_for_bill(state: str) -> WithdrawalStatus:
    """Where a withdrawal stands given its bill's state at WeChat Pay."""
    return {
        "SUCCESS": WithdrawalStatus.SUCCESS,
        "FAIL": WithdrawalStatus.FAILED,
        "CANCELLED": WithdrawalStatus.CANCELLED,
        "CANCELING": WithdrawalStatus.CANCELLING,
    }.get(state, WithdrawalStatus.WAIT_USER_CONFIRM)


# --- types passed between API, workflow and activities --------------------------------------
class WithdrawalTimings(BaseModel):
    poll_every: timedelta
    confirm_timeout: timedelta
    polls_per_run: int = Field(default=200, ge=1,
                               description="queries of a transfer bill before the workflow continues as new")


class WithdrawalInput(BaseModel):
    withdrawal_id: int
    promoter_id: int
    amount_fen: int
    needs_review: bool = False
    timings: WithdrawalTimings
    # continued as new while waiting for the transfer's result: where it was
    resume_bill: TransferState | None = None
    resume_deadline: datetime | None = None
    resume_cancel_tried: bool = False


class WithdrawalDecision(BaseModel):
    approve: bool
    note: str = Field(default="", max_length=500)
    reviewer_user_id: int


class CancelRequest(BaseModel):
    by_user_id: int
    reason: str = Field(default="", max_length=200)


class TransferState(BaseModel):
    """A transfer bill as WeChat Pay answered (create, query, cancel) or notified."""

    out_bill_no: str
    state: str
    transfer_bill_no: str | None = None
    package_info: str | None = None
    fail_reason: str | None = None

    @property
    def final(self) -> bool:
        return self.state in BILL_FINAL


class WithdrawalProgress(BaseModel):
    withdrawal_id: int
    promoter_id: int
    amount_fen: int
    status: WithdrawalStatus
    out_bill_no: str | None = None
    bill_state: str | None = None
    note: str = ""
    updated_at: datetime | None = None


def auto_payout_amount(available_fen: int, withdrawn_today_fen: int, rules: WithdrawalRules) -> int | None:
    """What an automatic payout after the monthly statement takes: the whole available balance,
    within the daily limit and below the amount for which WeChat Pay wants the payee's real
    name (which we do not keep; the promoter withdraws more by hand). None: nothing to pay."""
    amount = min(available_fen, rules.daily_limit_fen - withdrawn_today_fen, REAL_NAME_REQUIRED_FROM_FEN - 1)
    return amount if amount >= rules.effective_min_fen else None


class PayoutPage(BaseModel):
    """Withdrawals opened (or found) by a payout step, for their workflows to be started."""

    withdrawals: list[WithdrawalInput] = Field(default_factory=list)
    skipped: int = 0
    next_after: int | None = None   # None: the last page


class PayoutRunInput(BaseModel):
    month: str | None = None          # automatic payouts for this month's statements; None: the sweep
    page_size: int = 500
    stranded_after: timedelta = timedelta(minutes=10)


class PayoutRunProgress(BaseModel):
    started: int = 0
    already_running: int = 0
    skipped: int = 0
    done: bool = False


WithdrawalInput.model_rebuild()  # its resume_bill is a TransferState, defined below it
