"""Payout steps that open withdrawals without a promoter's request in hand:

* automatic payouts: promoters who chose it get their available balance paid out after their
  monthly statement is final, one withdrawal per (promoter, month), request key `auto:{month}`;
* the sweep: a withdrawal committed by the API whose workflow never started (the API died in
  between) is handed back to its workflow, so its money never sits in `withdrawing` for good.

Both answer pages of WithdrawalInput; the payout workflow starts each `withdrawal-{id}` workflow,
which Temporal refuses to start twice.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from temporalio import activity

from activities import ledger
from activities.promoters import notify as notify_promoter
from activities.withdrawals import open_withdrawal, withdrawn_on
from db.models import Promoter, User
from db.settlement_models import CommissionStatement
from db.withdrawal_models import Withdrawal
from domain import ledger as rules
from domain.money import yuan
from domain.settlement import StatementStatus
from domain.withdrawals import (
    PayoutPage,
    WithdrawalInput,
    WithdrawalRefused,
    WithdrawalRules,
    WithdrawalStatus,
    WithdrawalTimings,
    auto_payout_amount,
)


class PayoutActivities:
    def __init__(self, sessions: sessionmaker[Session], rules_: WithdrawalRules, timings: WithdrawalTimings,
                 timezone: str):
        self.sessions = sessions
        self.rules = rules_
        self.timings = timings
        self.timezone = timezone

    def all(self) -> list:
        return [self.open_auto_payouts, self.stranded_withdrawals]

    def _input(self, w: Withdrawal) -> WithdrawalInput:
        return WithdrawalInput(withdrawal_id=w.id, promoter_id=w.promoter_id, amount_fen=w.amount_fen,
                               needs_review=w.needs_review, timings=self.timings)

    @activity.defn
    def open_auto_payouts(self, month: str, after_promoter_id: int, limit: int) -> PayoutPage:
        """The next page of promoters with automatic payout and a final statement for `month`:
        each gets (once) a withdrawal of what is available, within the withdrawal rules."""
        with self.sessions() as s:
            promoter_ids = list(s.scalars(
                select(Promoter.id).join(CommissionStatement, CommissionStatement.promoter_id == Promoter.id)
                .where(Promoter.auto_payout, Promoter.id > after_promoter_id, CommissionStatement.month == month,
                       CommissionStatement.status == StatementStatus.FINAL)
                .order_by(Promoter.id).limit(limit)))
        page = PayoutPage(next_after=promoter_ids[-1] if len(promoter_ids) == limit else None)
        local_day = datetime.now(ZoneInfo(self.timezone)).date()
        for promoter_id in promoter_ids:
            with self.sessions.begin() as s:
                withdrawal = self._open_one(s, promoter_id, month, local_day)
                if withdrawal is None:
                    page.skipped += 1
                elif withdrawal.status == WithdrawalStatus.REQUESTED:
                    page.withdrawals.append(self._input(withdrawal))
        return page

    def _open_one(self, s: Session, promoter_id: int, month: str, local_day) -> Withdrawal | None:
        key = f"auto:{month}"
        existing = s.scalar(select(Withdrawal).where(Withdrawal.promoter_id == promoter_id,
                                                     Withdrawal.request_key == key))
        if existing is not None:
            return existing
        if not s.scalar(select(User.openid).join(Promoter, Promoter.user_id == User.id)
                        .where(Promoter.id == promoter_id)):
            return None
        # the amount is read under the wallet's lock that open_withdrawal takes again (re-entrant
        # in one transaction), so it is what open_withdrawal checks
        ledger.lock_accounts(s, {rules.promoter_available(promoter_id), rules.promoter_withdrawing(promoter_id)})
        amount = auto_payout_amount(ledger.balance(s, rules.promoter_available(promoter_id)),
                                    withdrawn_on(s, promoter_id, local_day), self.rules)
        if amount is None:
            return None
        try:
            withdrawal, _ = open_withdrawal(s, promoter_id=promoter_id, amount_fen=amount, request_key=key,
                                            local_day=local_day, rules_=self.rules)
        except WithdrawalRefused:
            return None
        notify_promoter(s, promoter_id, "auto_payout",
                        f"{month} 佣金 {yuan(amount)} 元已自动发起提现，请在小程序中确认收款", f"auto-payout:{withdrawal.id}")
        return withdrawal

    @activity.defn
    def stranded_withdrawals(self, older_than_seconds: float, after_id: int, limit: int) -> PayoutPage:
        """Withdrawals still REQUESTED well after they were made: their workflow may never have
        started. Starting it again is harmless: Temporal refuses a second `withdrawal-{id}`."""
        cutoff = datetime.now(UTC) - timedelta(seconds=older_than_seconds)
        with self.sessions() as s:
            rows = list(s.scalars(select(Withdrawal).where(
                Withdrawal.status == WithdrawalStatus.REQUESTED, Withdrawal.created_at < cutoff,
                Withdrawal.id > after_id).order_by(Withdrawal.id).limit(limit)))
            return PayoutPage(withdrawals=[self._input(w) for w in rows],
                              next_after=rows[-1].id if len(rows) == limit else None)
