"""分账回退: a refund that reverses a supplier's share WeChat Pay had already split to them
takes that money back from the supplier's receiver (`/v3/profitsharing/return-orders`).

One return per (refund, supplier), `out_return_no` SR{refund_no}S{supplier_id}. Its row is the
intent, written once before WeChat Pay is asked; asking again with the same number is the same
return at WeChat Pay, so a retried or crashed activity never takes money back twice. The money
coming back is booked once (Dr wechatpay:clearing, Cr supplier:{id}:payable), which brings the
negative payable the refund left back up. What WeChat Pay refuses to return stays a negative
payable and goes to support: it is owed, never lost.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from pydantic import BaseModel
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities import ledger
from activities.catalog import notify
from activities.payments import as_activity_error
from db.models import LedgerAccount, LedgerEntry, LedgerTransaction
from db.order_models import Refund
from db.settlement_models import (
    ProfitSharingReturnRecord,
    SupplierSettlement,
    SupplierSettlementLine,
)
from domain import ledger as rules
from domain.refunds import RefundStatus
from domain.settlement import (
    SettlementStatus,
    split_out_order_no,
    split_return_out_no,
    split_returns,
)
from integrations.errors import PartnerRejected
from integrations.wechatpay import ProfitSharingReturn, WeChatPayClient

RETURN_KIND = "supplier_split_return"
SPLIT_UNDER_WAY = (SettlementStatus.PLANNED, SettlementStatus.SPLIT_REQUESTED, SettlementStatus.SPLITTING)


class SplitReturn(BaseModel):
    out_return_no: str
    order_no: str
    supplier_id: int
    return_mchid: str
    amount_fen: int
    result: str
    fail_reason: str | None = None


def _view(row: ProfitSharingReturnRecord) -> SplitReturn:
    return SplitReturn(out_return_no=row.out_return_no, order_no=row.order_no, supplier_id=row.supplier_id,
                       return_mchid=row.return_mchid, amount_fen=row.amount_fen, result=row.result,
                       fail_reason=row.fail_reason)


class SplitReturnActivities:
    def __init__(self, sessions: sessionmaker[Session], pay: WeChatPayClient):
        self.sessions = sessions
        self.pay = pay

    @activity.defn
    async def return_splits(self, refund_no: str) -> list[SplitReturn]:
        """Take back what the refund reversed of shares already split. Retryable while the
        order's split is still under way (the result decides what there is to take back)."""
        planned = await asyncio.to_thread(self._plan, refund_no)
        done = []
        for ret in planned:
            if ret.result == "PENDING":
                try:
                    answer = await self.pay.return_split(
                        split_out_order_no(ret.order_no), ret.out_return_no, ret.return_mchid,
                        ret.amount_fen, f"退款 {refund_no} 分账回退")
                except PartnerRejected as err:
                    ret = await asyncio.to_thread(self._refused, ret.out_return_no, f"{err.code}: {err.message}")
                except Exception as err:  # noqa: BLE001 - mapped to retryable / non-retryable
                    raise as_activity_error(err) from err
                else:
                    ret = await asyncio.to_thread(self._record, answer)
            elif ret.result == "PROCESSING":
                try:
                    answer = await self.pay.query_return(split_out_order_no(ret.order_no), ret.out_return_no)
                except Exception as err:  # noqa: BLE001
                    raise as_activity_error(err) from err
                ret = await asyncio.to_thread(self._record, answer)
            if ret.result == "PROCESSING":
                raise ApplicationError(f"return {ret.out_return_no} still processing", type="SPLIT_RETURN_PROCESSING")
            done.append(ret)
        return done

    # --- database steps ----------------------------------------------------------------------
    def _plan(self, refund_no: str) -> list[SplitReturn]:
        with self.sessions.begin() as s:
            existing = s.scalars(select(ProfitSharingReturnRecord).where(
                ProfitSharingReturnRecord.refund_no == refund_no).order_by(ProfitSharingReturnRecord.supplier_id)).all()
            if existing:
                return [_view(r) for r in existing]
            refund = s.get(Refund, refund_no)
            if refund is None or refund.status != RefundStatus.REFUNDED:
                return []
            settlement = s.get(SupplierSettlement, refund.order_no, with_for_update=True)
            if settlement is None:
                return []
            if SettlementStatus(settlement.status) in SPLIT_UNDER_WAY:
                raise ApplicationError(f"the split of {refund.order_no} is still under way",
                                       type="SPLIT_UNDER_WAY")
            lines = {ln.supplier_id: ln for ln in s.scalars(select(SupplierSettlementLine).where(
                SupplierSettlementLine.order_no == refund.order_no, SupplierSettlementLine.result == "SUCCESS"))}
            returned = dict(s.execute(
                select(ProfitSharingReturnRecord.supplier_id, func.sum(ProfitSharingReturnRecord.amount_fen))
                .where(ProfitSharingReturnRecord.order_no == refund.order_no,
                       ProfitSharingReturnRecord.result != "FAILED")
                .group_by(ProfitSharingReturnRecord.supplier_id)).all())
            amounts = split_returns(self._reversed_shares(s, refund_no),
                                    {sid: ln.split_fen for sid, ln in lines.items()}, returned)
            rows = [ProfitSharingReturnRecord(
                out_return_no=split_return_out_no(refund_no, sid), refund_no=refund_no, order_no=refund.order_no,
                supplier_id=sid, return_mchid=lines[sid].receiver_account, amount_fen=amount, result="PENDING")
                for sid, amount in sorted(amounts.items())]
            s.add_all(rows)
            s.flush()
            return [_view(r) for r in rows]

    @staticmethod
    def _reversed_shares(s: Session, refund_no: str) -> dict[int, int]:
        """supplier id → what the refund's books took off their payable (debits)."""
        rows = s.execute(
            select(LedgerAccount.code, func.sum(LedgerEntry.amount_fen))
            .join(LedgerEntry, LedgerEntry.account_id == LedgerAccount.id)
            .join(LedgerTransaction, LedgerEntry.transaction_id == LedgerTransaction.id)
            .where(LedgerTransaction.idempotency_key == f"refund:{refund_no}",
                   LedgerAccount.code.like("supplier:%:payable"))
            .group_by(LedgerAccount.code)).all()
        return {rules.owner_of(code)[1]: amount for code, amount in rows if amount > 0}

    def _record(self, answer: ProfitSharingReturn) -> SplitReturn:
        with self.sessions.begin() as s:
            row = s.get(ProfitSharingReturnRecord, answer.out_return_no, with_for_update=True)
            if row.result in ("SUCCESS", "FAILED"):
                return _view(row)
            row.return_id, row.result = answer.return_id, answer.result
            if answer.result == "SUCCESS":
                payable = rules.supplier_payable(row.supplier_id)
                ledger.lock_accounts(s, {rules.CLEARING, payable})
                ledger.post(s, f"split-return:{row.out_return_no}", RETURN_KIND,
                            rules.transfer(rules.CLEARING, payable, row.amount_fen, rule="profit_sharing_return"),
                            order_no=row.order_no,
                            memo=f"WeChat Pay profit-sharing return {row.out_return_no} from {row.return_mchid}")
                row.finished_at = datetime.now(UTC)
            elif answer.result == "FAILED":
                self._failed(s, row, answer.fail_reason or "FAILED")
            return _view(row)

    def _refused(self, out_return_no: str, reason: str) -> SplitReturn:
        with self.sessions.begin() as s:
            row = s.get(ProfitSharingReturnRecord, out_return_no, with_for_update=True)
            if row.result not in ("SUCCESS", "FAILED"):
                self._failed(s, row, reason)
            return _view(row)

    @staticmethod
    def _failed(s: Session, row: ProfitSharingReturnRecord, reason: str) -> None:
        row.result, row.fail_reason, row.finished_at = "FAILED", reason[:2000], datetime.now(UTC)
        notify(s, role="support", kind="split_return_failed", subject_type="refund", subject_id=row.refund_no,
               key=f"split-return:{row.out_return_no}:failed",
               message=f"退款 {row.refund_no} 分账回退失败（供应商 {row.supplier_id}，{row.amount_fen} 分）：{reason}；"
                       f"该款项仍为供应商应付负数，请人工追回")

    def all(self) -> list:
        return [self.return_splits]
