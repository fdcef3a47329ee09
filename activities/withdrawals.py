"""Withdrawal side effects: the request (withdrawal row + money into `withdrawing`, one
database transaction under the wallet's lock), WeChat Pay merchant transfer bills
(out_bill_no derived from the withdrawal id, recorded before we call out, queried before we
create again), and the end: money out to clearing when paid, back to `available` when not."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, date, datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker
from temporalio import activity

from activities import ledger
from activities.catalog import notify as notify_role
from activities.errors import business_error
from activities.payments import as_activity_error
from activities.promoters import notify as notify_promoter
from db.models import Promoter, User
from db.withdrawal_models import Withdrawal
from domain import ledger as rules
from domain.money import yuan
from domain.withdrawals import (
    BILL_NOT_FOUND,
    RETURNED,
    TRANSFER_REMARK,
    TRANSFER_REPORT_INFOS,
    TRANSFER_SCENE_ID,
    TransferState,
    WithdrawalDecision,
    WithdrawalRefused,
    WithdrawalRules,
    WithdrawalStatus,
    check_amount,
    check_withdrawal,
    needs_real_name,
    needs_review,
    out_bill_no,
)
from integrations.errors import PartnerRejected
from integrations.wechatpay import TransferBill, WeChatPayClient


def withdrawn_on(s: Session, promoter_id: int, local_day: date) -> int:
    """What the promoter's withdrawals of that day take from the daily limit (not those that
    gave the money back)."""
    return s.scalar(select(func.coalesce(func.sum(Withdrawal.amount_fen), 0)).where(
        Withdrawal.promoter_id == promoter_id, Withdrawal.local_day == local_day,
        Withdrawal.status.not_in([st.value for st in RETURNED])))


def open_withdrawal(s: Session, *, promoter_id: int, amount_fen: int, request_key: str | None,
                    local_day: date, rules_: WithdrawalRules,
                    payee_name: str | None = None) -> tuple[Withdrawal, bool]:
    """In the caller's database transaction: lock the wallet, check the rules, record the
    withdrawal and move its money from `available` into `withdrawing`. Raises WithdrawalRefused
    (and writes nothing). Returns (withdrawal, created); the same `request_key` again returns
    the withdrawal it made the first time."""
    check_amount(amount_fen, rules_)
    available, withdrawing = rules.promoter_available(promoter_id), rules.promoter_withdrawing(promoter_id)
    # Every withdrawal of this promoter serialises on the wallet's row lock: balance, daily total
    # and the request key are read after it is taken, so concurrent requests cannot overdraw.
    ledger.lock_accounts(s, {available, withdrawing})
    if request_key:
        existing = s.scalar(select(Withdrawal).where(Withdrawal.promoter_id == promoter_id,
                                                     Withdrawal.request_key == request_key))
        if existing is not None:
            if existing.amount_fen != amount_fen:
                raise WithdrawalRefused("IDEMPOTENCY_CONFLICT",
                                        "this Idempotency-Key was used for a withdrawal of another amount")
            return existing, False
    check_withdrawal(amount_fen, available_fen=ledger.balance(s, available),
                     withdrawn_today_fen=withdrawn_on(s, promoter_id, local_day), rules=rules_)
    withdrawal = Withdrawal(promoter_id=promoter_id, amount_fen=amount_fen, status=WithdrawalStatus.REQUESTED,
                            request_key=request_key, local_day=local_day,
                            needs_review=needs_review(amount_fen, rules_), payee_name=payee_name)
    s.add(withdrawal)
    s.flush()
    ledger.post(s, f"withdrawal:{withdrawal.id}:request", "withdrawal_request",
                rules.transfer(available, withdrawing, amount_fen, rule="withdrawal"),
                memo=f"withdrawal {withdrawal.id} requested")
    return withdrawal, True


def _state(bill: TransferBill) -> TransferState:
    return TransferState(out_bill_no=bill.out_bill_no, state=bill.state, transfer_bill_no=bill.transfer_bill_no,
                         package_info=bill.package_info, fail_reason=bill.fail_reason)


@dataclass
class _Intent:
    bill_no: str
    openid: str
    amount_fen: int
    payee_name: str | None
    recorded_before: bool


class WithdrawalActivities:
    def __init__(self, sessions: sessionmaker[Session], pay: WeChatPayClient):
        self.sessions = sessions
        self.pay = pay

    def all(self) -> list:
        return [self.set_withdrawal_status, self.record_review, self.create_transfer, self.query_transfer,
                self.cancel_transfer, self.complete_withdrawal, self.return_withdrawal]

    # --- steps ---------------------------------------------------------------------------
    @activity.defn
    def set_withdrawal_status(self, withdrawal_id: int, status: WithdrawalStatus, note: str) -> None:
        with self.sessions.begin() as s:
            w = s.get(Withdrawal, withdrawal_id, with_for_update=True)
            if WithdrawalStatus(w.status).final or w.status == status:
                return
            w.status = status
            if status == WithdrawalStatus.REVIEWING:
                notify_role(s, role="support", kind="withdrawal_review", subject_type="withdrawal",
                            subject_id=withdrawal_id, key=f"withdrawal:{withdrawal_id}:review",
                            message=f"提现 {withdrawal_id}（{yuan(w.amount_fen)} 元）待审核：{note}".strip())

    @activity.defn
    def record_review(self, withdrawal_id: int, decision: WithdrawalDecision) -> None:
        with self.sessions.begin() as s:
            w = s.get(Withdrawal, withdrawal_id, with_for_update=True)
            if w.review_decision is None:
                w.review_decision = "approve" if decision.approve else "reject"
                w.review_note = decision.note
                w.reviewed_by_user_id = decision.reviewer_user_id
                w.reviewed_at = datetime.now(UTC)

    # --- WeChat Pay merchant transfer bills ------------------------------------------------
    @activity.defn
    async def create_transfer(self, withdrawal_id: int) -> TransferState:
        """Create the bill (idempotent by out_bill_no). The intent is recorded first; when a
        previous attempt recorded it, WeChat Pay is asked whether that attempt got through."""
        intent = await asyncio.to_thread(self._record_intent, withdrawal_id)
        if intent.recorded_before:
            found = await self._query(intent.bill_no)
            if found.state != BILL_NOT_FOUND:
                await asyncio.to_thread(self._record_bill, withdrawal_id, found)
                return found
        try:
            bill = await self.pay.create_transfer(
                intent.bill_no, intent.openid, intent.amount_fen, TRANSFER_REMARK, scene_id=TRANSFER_SCENE_ID,
                report_infos=[dict(i) for i in TRANSFER_REPORT_INFOS],
                user_name=intent.payee_name if needs_real_name(intent.amount_fen) else None)
        except Exception as err:  # noqa: BLE001 - mapped to retryable / non-retryable
            raise as_activity_error(err) from err
        state = _state(bill)
        await asyncio.to_thread(self._record_bill, withdrawal_id, state)
        return state

    def _record_intent(self, withdrawal_id: int) -> _Intent:
        with self.sessions.begin() as s:
            w = s.get(Withdrawal, withdrawal_id, with_for_update=True)
            openid = s.scalar(select(User.openid).join(Promoter, Promoter.user_id == User.id)
                              .where(Promoter.id == w.promoter_id))
            if not openid:
                raise business_error("NO_WECHAT_ACCOUNT", f"promoter {w.promoter_id} has no WeChat openid")
            if needs_real_name(w.amount_fen) and not w.payee_name:
                raise business_error("REAL_NAME_REQUIRED", f"withdrawal {withdrawal_id} needs the payee's real name")
            recorded_before = w.out_bill_no is not None
            if not recorded_before:
                w.out_bill_no = out_bill_no(withdrawal_id)
            if w.status in (WithdrawalStatus.REQUESTED, WithdrawalStatus.REVIEWING):
                w.status = WithdrawalStatus.TRANSFERRING
            return _Intent(w.out_bill_no, openid, w.amount_fen, w.payee_name, recorded_before)

    def _record_bill(self, withdrawal_id: int, bill: TransferState) -> None:
        """What WeChat Pay said about the bill. Final statuses are set by the activities that
        move the money with them, never here."""
        with self.sessions.begin() as s:
            w = s.get(Withdrawal, withdrawal_id, with_for_update=True)
            if WithdrawalStatus(w.status).final or bill.state == BILL_NOT_FOUND:
                return
            w.bill_state = bill.state
            w.transfer_bill_no = bill.transfer_bill_no or w.transfer_bill_no
            if bill.package_info:
                w.package_info = bill.package_info
            if w.status == WithdrawalStatus.TRANSFERRING and not bill.final:
                w.status = WithdrawalStatus.WAIT_USER_CONFIRM

    async def _query(self, bill_no: str) -> TransferState:
        try:
            return _state(await self.pay.query_transfer(bill_no))
        except PartnerRejected as err:
            if err.code == "NOT_FOUND":
                return TransferState(out_bill_no=bill_no, state=BILL_NOT_FOUND)
            raise as_activity_error(err) from err
        except Exception as err:  # noqa: BLE001
            raise as_activity_error(err) from err

    @activity.defn
    async def query_transfer(self, withdrawal_id: int) -> TransferState:
        """The bill's state at WeChat Pay (state NOT_FOUND if it was never created)."""
        found = await self._query(out_bill_no(withdrawal_id))
        await asyncio.to_thread(self._record_bill, withdrawal_id, found)
        return found

    @activity.defn
    async def cancel_transfer(self, withdrawal_id: int) -> bool:
        """Withdraw a bill the user has not confirmed. False when WeChat Pay refuses (the user
        confirmed meanwhile, or the bill is already final): the bill's own result then stands."""
        try:
            await self.pay.cancel_transfer(out_bill_no(withdrawal_id))
        except PartnerRejected as err:
            activity.logger.info("withdrawal %s: cancel refused: %s", withdrawal_id, err)
            return False
        except Exception as err:  # noqa: BLE001
            raise as_activity_error(err) from err
        return True

    # --- the end ---------------------------------------------------------------------------
    @activity.defn
    def complete_withdrawal(self, withdrawal_id: int, bill: TransferState) -> WithdrawalStatus:
        """The money reached the promoter's WeChat change: it leaves the platform's books, once."""
        with self.sessions.begin() as s:
            w = s.get(Withdrawal, withdrawal_id, with_for_update=True)
            if WithdrawalStatus(w.status).final:
                return WithdrawalStatus(w.status)
            withdrawing = rules.promoter_withdrawing(w.promoter_id)
            ledger.lock_accounts(s, {withdrawing, rules.CLEARING})
            ledger.post(s, f"withdrawal:{withdrawal_id}:paid", "withdrawal_paid",
                        rules.transfer(withdrawing, rules.CLEARING, w.amount_fen, rule="withdrawal"),
                        memo=f"withdrawal {withdrawal_id} paid: WeChat transfer {bill.transfer_bill_no or w.out_bill_no}")
            self._finish(w, WithdrawalStatus.SUCCESS, bill)
            notify_promoter(s, w.promoter_id, "withdrawal_paid",
                            f"提现 {yuan(w.amount_fen)} 元已到账微信零钱", f"withdrawal:{withdrawal_id}:paid")
            return WithdrawalStatus.SUCCESS

    @activity.defn
    def return_withdrawal(self, withdrawal_id: int, status: WithdrawalStatus, reason: str,
                          bill: TransferState | None) -> WithdrawalStatus:
        """Rejected, failed or cancelled: the money goes back to the wallet, once."""
        if not status.money_returned:
            raise business_error("INVALID_STATUS", f"{status} does not return money")
        with self.sessions.begin() as s:
            w = s.get(Withdrawal, withdrawal_id, with_for_update=True)
            if WithdrawalStatus(w.status).final:
                return WithdrawalStatus(w.status)
            available, withdrawing = rules.promoter_available(w.promoter_id), rules.promoter_withdrawing(w.promoter_id)
            ledger.lock_accounts(s, {available, withdrawing})
            ledger.post(s, f"withdrawal:{withdrawal_id}:returned", "withdrawal_returned",
                        rules.transfer(withdrawing, available, w.amount_fen, rule="withdrawal"),
                        memo=f"withdrawal {withdrawal_id} {status.lower()}: {reason}")
            w.fail_reason = reason[:64] or None
            self._finish(w, status, bill)
            words = {WithdrawalStatus.REJECTED: "未通过审核", WithdrawalStatus.FAILED: "转账失败",
                     WithdrawalStatus.CANCELLED: "已撤销"}[status]
            why = w.review_note if status == WithdrawalStatus.REJECTED and w.review_note else reason
            notify_promoter(s, w.promoter_id, "withdrawal_returned",
                            f"提现 {yuan(w.amount_fen)} 元{words}，金额已退回钱包（{why}）",
                            f"withdrawal:{withdrawal_id}:returned")
            return status

    @staticmethod
    def _finish(w: Withdrawal, status: WithdrawalStatus, bill: TransferState | None) -> None:
        w.status, w.finished_at = status, datetime.now(UTC)
        if bill is not None and bill.state != BILL_NOT_FOUND:
            w.bill_state = bill.state
            w.transfer_bill_no = bill.transfer_bill_no or w.transfer_bill_no
        # personal data and the mini program's one-time package are not kept once it is over
        w.payee_name, w.package_info = None, None
