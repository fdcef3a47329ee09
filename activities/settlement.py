"""Settlement side effects: supplier profit sharing (分账) through WeChat Pay, bills, monthly
commission statements. Each activity is idempotent:

* a payment's split plan is written once (its row is the intent) before WeChat Pay is called;
  the split order is `SS{order_no}`, the unfreeze order `SU{order_no}`; after a call that may
  have gone through, the order is queried before it is created again;
* a split is booked once per (order, supplier) by ledger key `settlement:supplier:{no}:{id}`;
* statements are unique per (month, promoter) and inserted ON CONFLICT DO NOTHING.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from sqlalchemy import exists, func, select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session, sessionmaker
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities import ledger
from activities.catalog import CatalogActivities, notify
from activities.errors import business_error
from activities.payments import as_activity_error
from db.catalog_models import ProfitSharingReceiver, SupplierProfile
from db.models import (
    LedgerAccount,
    LedgerEntry,
    LedgerTransaction,
    Order,
    OrderLine,
    Payment,
)
from db.order_models import Refund, RefundLine
from db.settlement_models import (
    CommissionStatement,
    SettlementRun,
    SupplierBill,
    SupplierSettlement,
    SupplierSettlementLine,
)
from domain import ledger as rules
from domain.refunds import RefundStatus
from domain.settlement import (
    BillFigures,
    LedgerSums,
    OrderSettlement,
    SettlementStatus,
    SplitOrderRequest,
    StatementBatch,
    StatementBatchResult,
    StatementReview,
    StatementStatus,
    StatementTotals,
    StatementView,
    SupplierRunTotals,
    SupplierShare,
    allocate_splits,
    day_bounds,
    line_figures,
    month_bounds,
    parse_day,
    split_ledger_key,
    split_out_order_no,
    split_room,
    statement_figures,
    unfreeze_out_order_no,
)
from integrations.errors import PartnerRejected
from integrations.wechatpay import ProfitSharingOrder, SplitReceiver, WeChatPayClient

SPLIT_KIND = "supplier_split"
AVAILABLE_ACCOUNTS = "promoter:%:available"
NO_UPPER_ID = 2**62


def _now() -> datetime:
    return datetime.now(UTC)


def _outcome(row: SupplierSettlement, lines: list[SupplierSettlementLine], note: str = "") -> OrderSettlement:
    return OrderSettlement(order_no=row.order_no, status=SettlementStatus(row.status), split_fen=row.split_fen,
                           outstanding_fen=sum(ln.outstanding_fen for ln in lines), note=note or (row.failure or ""))


def splits_of_order(s: Session, order_no: str) -> list[SupplierSettlementLine]:
    """What a payment's settlement gave each supplier: a refund after the split finds here what
    was split (`split_fen` to `receiver_account` under out_order_no `SS{order_no}`), to take it
    back from the supplier (分账回退) or net it against the supplier's next bill."""
    return list(s.scalars(select(SupplierSettlementLine).where(SupplierSettlementLine.order_no == order_no)
                          .order_by(SupplierSettlementLine.supplier_id)))


def statement_view(st: CommissionStatement) -> StatementView:
    return StatementView(month=st.month, promoter_id=st.promoter_id, opening_fen=st.opening_fen,
                         released_fen=st.released_fen, team_bonus_fen=st.team_bonus_fen,
                         regional_bonus_fen=st.regional_bonus_fen, reversed_fen=st.reversed_fen,
                         withdrawn_fen=st.withdrawn_fen, other_fen=st.other_fen, closing_fen=st.closing_fen,
                         carried_negative_fen=st.carried_negative_fen, entries=st.entries,
                         status=StatementStatus(st.status), reviewed_by_user_id=st.reviewed_by_user_id,
                         review_note=st.review_note or "")


class SettlementActivities:
    def __init__(self, sessions: sessionmaker[Session], pay: WeChatPayClient):
        self.sessions = sessions
        self.pay = pay
        # Adding a supplier as a receiver is the onboarding activity's job; a supplier approved
        # before receivers existed (or whose add failed) is added the same way, idempotently.
        self.receivers = CatalogActivities(sessions, pay)

    # --- runs ------------------------------------------------------------------------------
    @activity.defn
    def open_run(self, kind: str, period: str, workflow_id: str) -> None:
        with self.sessions.begin() as s:
            s.execute(insert(SettlementRun).values(kind=kind, period=period, workflow_id=workflow_id,
                                                   status="running", runs=1, totals={})
                      .on_conflict_do_update(index_elements=["kind", "period"],
                                             set_={"status": "running", "workflow_id": workflow_id,
                                                   "runs": SettlementRun.runs + 1, "finished_at": None}))

    def _close_run(self, s: Session, kind: str, period: str, totals: dict) -> None:
        run = s.get(SettlementRun, (kind, period), with_for_update=True)
        if run is not None:
            run.status, run.totals, run.finished_at = "final", totals, _now()

    # --- supplier settlement ------------------------------------------------------------------
    @activity.defn
    def orders_to_settle(self, period: str, tz: str, after: str, limit: int) -> list[str]:
        """Orders completed by the end of `period`, not yet settled, with no refund open, in
        order_no order after `after`. Orders paid in the Channels shop are not split through
        WeChat Pay (the money is the shop's settlement): their suppliers' shares stay payable."""
        _, end = day_bounds(period, tz)
        with self.sessions() as s:
            return list(s.scalars(
                select(Order.order_no)
                .outerjoin(SupplierSettlement, SupplierSettlement.order_no == Order.order_no)
                .where(Order.completed_at.is_not(None), Order.completed_at < end, Order.order_no > after,
                       Order.open_refunds == 0,
                       ~exists().where(Payment.order_no == Order.order_no, Payment.kind == "channels"),
                       (SupplierSettlement.order_no.is_(None))
                       | SupplierSettlement.status.not_in([SettlementStatus.DONE, SettlementStatus.FAILED]))
                .order_by(Order.order_no).limit(limit)))

    @activity.defn
    async def split_order(self, req: SplitOrderRequest) -> OrderSettlement:
        """Plan the payment's split once, make sure its receivers exist, then ask WeChat Pay to
        split (querying first when an earlier attempt may have asked already)."""
        state = await asyncio.to_thread(self._settlement, req.order_no)
        if state is None:
            txn = await asyncio.to_thread(self._transaction_of, req.order_no)
            if txn is None:
                return OrderSettlement(order_no=req.order_no, status=SettlementStatus.DEFERRED,
                                       note="a refund is open on the order; the next run settles it")
            try:
                unsplit = await self.pay.unsplit_amount(txn)
            except Exception as err:  # noqa: BLE001 - mapped to retryable / non-retryable
                raise as_activity_error(err) from err
            state = await asyncio.to_thread(self._plan, req, txn, unsplit)
        if state.status not in (SettlementStatus.PLANNED, SettlementStatus.SPLIT_REQUESTED,
                                SettlementStatus.SPLITTING):
            return state
        row, receivers = await asyncio.to_thread(self._split_terms, req.order_no)
        try:
            for supplier_id in sorted({supplier_id for supplier_id, _ in receivers}):
                await self.receivers.add_profit_sharing_receiver(supplier_id)
            if state.status == SettlementStatus.PLANNED:
                await asyncio.to_thread(self._set_status, req.order_no, SettlementStatus.SPLIT_REQUESTED)
                answer = await self._create_split(row, receivers)
            else:
                answer = await self._query(row["transaction_id"], row["out_order_no"])
                if answer is None:
                    answer = await self._create_split(row, receivers)
        except ApplicationError as err:
            if not err.non_retryable:
                raise
            return await asyncio.to_thread(self._fail, req.order_no, f"{err.type}: {err.message}")
        except PartnerRejected as err:
            return await asyncio.to_thread(self._fail, req.order_no, f"WECHATPAY_{err.code}: {err.message}")
        except Exception as err:  # noqa: BLE001
            raise as_activity_error(err) from err
        return await asyncio.to_thread(self._record_split, req.order_no, answer)

    @activity.defn
    async def await_split(self, order_no: str) -> OrderSettlement:
        """Ask WeChat Pay about a split still processing; fails (retryably) until it finishes,
        so the activity's retry policy is the polling schedule."""
        state = await asyncio.to_thread(self._settlement, order_no)
        if state.status != SettlementStatus.SPLITTING:
            return state
        row, _ = await asyncio.to_thread(self._split_terms, order_no)
        try:
            answer = await self._query(row["transaction_id"], row["out_order_no"])
        except Exception as err:  # noqa: BLE001
            raise as_activity_error(err) from err
        if answer is None:
            return await asyncio.to_thread(self._fail, order_no, "WeChat Pay does not know the split order")
        state = await asyncio.to_thread(self._record_split, order_no, answer)
        if state.status == SettlementStatus.SPLITTING:
            raise ApplicationError(f"split {row['out_order_no']} still processing", type="SPLIT_PROCESSING")
        return state

    @activity.defn
    async def unfreeze_order(self, order_no: str) -> OrderSettlement:
        """Give what was not split back to the merchant (`SU{order_no}`), ending the payment's
        profit sharing."""
        state = await asyncio.to_thread(self._settlement, order_no)
        if state.status not in (SettlementStatus.SPLIT, SettlementStatus.UNFREEZE_REQUESTED):
            return state
        row, _ = await asyncio.to_thread(self._split_terms, order_no)
        txn, out = row["transaction_id"], unfreeze_out_order_no(order_no)
        try:
            answer = None
            if state.status == SettlementStatus.UNFREEZE_REQUESTED:
                answer = await self._query(txn, out)
            else:
                await asyncio.to_thread(self._set_status, order_no, SettlementStatus.UNFREEZE_REQUESTED)
            if answer is None:
                # a pre-sale order's other payment (the deposit) was frozen for splitting too:
                # released first, idempotently by its own out_order_no, before the row says DONE
                for other_txn, suffix in await asyncio.to_thread(self._other_transactions, order_no, txn):
                    try:
                        await self.pay.unfreeze(other_txn, out + suffix, f"订单 {order_no} 定金解冻")
                    except PartnerRejected as err:   # e.g. nothing left frozen (refunded): not this run's to fail
                        activity.logger.warning("unfreeze of %s for %s refused: %s", other_txn, order_no, err)
                answer = await self.pay.unfreeze(txn, out, f"订单 {order_no} 分账完成，解冻剩余资金")
        except PartnerRejected as err:
            return await asyncio.to_thread(self._fail, order_no, f"WECHATPAY_{err.code}: {err.message}")
        except Exception as err:  # noqa: BLE001
            raise as_activity_error(err) from err
        return await asyncio.to_thread(self._record_unfreeze, order_no, answer)

    @activity.defn
    def settlement_failed(self, order_no: str, reason: str) -> OrderSettlement:
        """A step failed for good: support settles the payment by hand; its share stays payable."""
        return self._fail(order_no, reason)

    @activity.defn
    def close_supplier_run(self, period: str) -> SupplierRunTotals:
        """The day's per-supplier bills, from the settlement lines of that day (rebuilt the same
        on a re-run), and the run's totals."""
        day = parse_day(period)
        with self.sessions.begin() as s:
            sums = select(
                SupplierSettlementLine.supplier_id,
                func.count(SupplierSettlementLine.id).label("orders"),
                *[func.coalesce(func.sum(getattr(SupplierSettlementLine, c)), 0).label(c) for c in
                  ("sales_fen", "refunds_fen", "service_fee_fen", "commission_fen", "adjustment_fen",
                   "share_fen", "split_fen", "outstanding_fen")],
            ).where(SupplierSettlementLine.settle_date == day).group_by(SupplierSettlementLine.supplier_id)
            rows = s.execute(sums).mappings().all()
            for r in rows:
                values = dict(orders=r["orders"], sales_fen=r["sales_fen"], refunds_fen=r["refunds_fen"],
                              service_fee_fen=r["service_fee_fen"], commission_fen=r["commission_fen"],
                              adjustment_fen=r["adjustment_fen"], net_fen=r["share_fen"], split_fen=r["split_fen"],
                              outstanding_fen=r["outstanding_fen"])
                s.execute(insert(SupplierBill).values(settle_date=day, supplier_id=r["supplier_id"], **values)
                          .on_conflict_do_update(index_elements=["settle_date", "supplier_id"],
                                                 set_=values | {"updated_at": func.now()}))
            totals = SupplierRunTotals(bills=len(rows), orders=s.scalar(
                select(func.count()).select_from(SupplierSettlement).where(SupplierSettlement.settle_date == day)) or 0,
                split_fen=sum(r["split_fen"] for r in rows), outstanding_fen=sum(r["outstanding_fen"] for r in rows))
            self._close_run(s, "supplier", period, totals.model_dump())
            return totals

    # --- supplier settlement: database steps ---------------------------------------------------
    def _settlement(self, order_no: str) -> OrderSettlement | None:
        with self.sessions() as s:
            row = s.get(SupplierSettlement, order_no)
            if row is None:
                return None
            return _outcome(row, self._lines(s, order_no))

    def _lines(self, s: Session, order_no: str) -> list[SupplierSettlementLine]:
        return list(s.scalars(select(SupplierSettlementLine).where(SupplierSettlementLine.order_no == order_no)
                              .order_by(SupplierSettlementLine.supplier_id)))

    def _other_transactions(self, order_no: str, split_txn: str) -> list[tuple[str, str]]:
        """The order's paid WeChat Pay transactions other than the one split, with the suffix
        of their out_trade_no (`D` for a pre-sale deposit)."""
        with self.sessions() as s:
            rows = s.execute(select(Payment.transaction_id, Payment.out_trade_no).where(
                Payment.order_no == order_no, Payment.transaction_id.is_not(None),
                Payment.transaction_id != split_txn)).all()
        return [(txn, out_trade_no.removeprefix(order_no) or "X") for txn, out_trade_no in rows]

    def _transaction_of(self, order_no: str) -> str | None:
        with self.sessions() as s:
            order = s.get(Order, order_no)
            if order is None or order.completed_at is None:
                raise business_error("ORDER_NOT_COMPLETED", f"order {order_no} has not completed")
            if order.open_refunds:
                return None
            if not order.transaction_id:
                raise business_error("NO_TRANSACTION", f"order {order_no} has no WeChat Pay transaction")
            return order.transaction_id

    def _plan(self, req: SplitOrderRequest, transaction_id: str, unsplit_fen: int) -> OrderSettlement:
        """Write the split plan once: each supplier's share from the ledger, as much of it as the
        cap still allows split, the rest outstanding. The order row is locked, so a refund cannot
        open half-way through."""
        with self.sessions.begin() as s:
            order = s.get(Order, req.order_no, with_for_update=True)
            existing = s.get(SupplierSettlement, req.order_no)
            if existing is not None:
                return _outcome(existing, self._lines(s, req.order_no))
            if order.open_refunds:
                return OrderSettlement(order_no=req.order_no, status=SettlementStatus.DEFERRED,
                                       note="a refund is open on the order; the next run settles it")
            refunded = s.scalar(select(func.coalesce(func.sum(Refund.amount_fen), 0)).where(
                Refund.order_no == req.order_no, Refund.status == RefundStatus.REFUNDED)) or 0
            figures = self._figures(s, req.order_no)
            shares = self._shares(s, req.order_no)
            accounts = self._receiver_accounts(s, set(figures) | set(shares))
            room = split_room(order.total_fen, refunded, req.max_ratio_bps, unsplit_fen)
            plan = allocate_splits(room, [SupplierShare(supplier_id=sid, share_fen=shares.get(sid, 0),
                                                        can_receive=accounts.get(sid) is not None)
                                          for sid in sorted(set(figures) | set(shares))])
            planned = sum(p.split_fen for p in plan)
            if order.total_fen == refunded:
                status = SettlementStatus.DONE          # nothing left at WeChat Pay to split or unfreeze
            elif planned == 0:
                status = SettlementStatus.SPLIT         # nothing to split: unfreeze it all
            else:
                status = SettlementStatus.PLANNED
            day = parse_day(req.period)
            s.add(SupplierSettlement(
                order_no=req.order_no, settle_date=day, transaction_id=transaction_id,
                out_order_no=split_out_order_no(req.order_no),
                unfreeze_out_order_no=unfreeze_out_order_no(req.order_no), paid_fen=order.total_fen,
                refunded_fen=refunded, max_ratio_bps=req.max_ratio_bps, unsplit_fen=unsplit_fen, room_fen=room,
                planned_split_fen=planned, split_fen=0, status=status,
                finished_at=_now() if status == SettlementStatus.DONE else None))
            s.flush()
            for p in plan:
                f = figures.get(p.supplier_id, BillFigures())
                s.add(SupplierSettlementLine(
                    order_no=req.order_no, supplier_id=p.supplier_id, settle_date=day, sales_fen=f.sales_fen,
                    refunds_fen=f.refunds_fen, service_fee_fen=f.service_fee_fen, commission_fen=f.commission_fen,
                    adjustment_fen=p.share_fen - f.net_fen, share_fen=p.share_fen, planned_split_fen=p.split_fen,
                    split_fen=0, outstanding_fen=p.share_fen,
                    receiver_account=accounts.get(p.supplier_id) if p.split_fen else None,
                    result="PENDING" if p.split_fen else "NONE"))
            s.flush()
            return _outcome(s.get(SupplierSettlement, req.order_no), self._lines(s, req.order_no))

    def _figures(self, s: Session, order_no: str) -> dict[int, BillFigures]:
        refunded = {line_id: (int(units), int(amount)) for line_id, units, amount in s.execute(
            select(RefundLine.order_line_id, func.sum(RefundLine.quantity), func.sum(RefundLine.amount_fen))
            .join(Refund, Refund.refund_no == RefundLine.refund_no)
            .where(Refund.order_no == order_no, Refund.status == RefundStatus.REFUNDED)
            .group_by(RefundLine.order_line_id))}
        out: dict[int, BillFigures] = {}
        for line in s.scalars(select(OrderLine).where(OrderLine.order_no == order_no)):
            units, amount = refunded.get(line.id, (0, 0))
            out[line.supplier_id] = out.get(line.supplier_id, BillFigures()) + line_figures(
                paid_fen=line.paid_fen, service_fee_fen=line.service_fee_fen, commission_fen=line.commission_fen,
                quantity=line.quantity, refunded_units=units, refunded_fen=amount)
        return out

    def _shares(self, s: Session, order_no: str) -> dict[int, int]:
        """supplier id → what the order left on `supplier:{id}:payable` (completion less refunds),
        before any split: the ledger is the measure of what the supplier is owed."""
        rows = s.execute(
            select(LedgerAccount.owner_id, func.sum(LedgerEntry.amount_fen))
            .join(LedgerEntry, LedgerEntry.account_id == LedgerAccount.id)
            .join(LedgerTransaction, LedgerEntry.transaction_id == LedgerTransaction.id)
            .where(LedgerTransaction.order_no == order_no, LedgerAccount.owner_type == "supplier",
                   LedgerAccount.code.like("supplier:%:payable"), LedgerTransaction.kind != SPLIT_KIND)
            .group_by(LedgerAccount.owner_id)).all()
        return {int(owner): -int(amount) for owner, amount in rows}  # credits are negative

    def _receiver_accounts(self, s: Session, supplier_ids: set[int]) -> dict[int, str | None]:
        """The WeChat Pay merchant id each supplier receives splits on (None: it has none: its
        share is paid by bank transfer)."""
        added = dict(s.execute(select(ProfitSharingReceiver.supplier_id, ProfitSharingReceiver.account)
                               .where(ProfitSharingReceiver.supplier_id.in_(supplier_ids))).all())
        profiles = dict(s.execute(select(SupplierProfile.supplier_id, SupplierProfile.wechatpay_mchid)
                                  .where(SupplierProfile.supplier_id.in_(supplier_ids))).all())
        return {sid: added.get(sid) or profiles.get(sid) or None for sid in supplier_ids}

    def _split_terms(self, order_no: str) -> tuple[dict, list[tuple[int, SplitReceiver]]]:
        with self.sessions() as s:
            row = s.get(SupplierSettlement, order_no)
            receivers = [(ln.supplier_id, SplitReceiver(type="MERCHANT_ID", account=ln.receiver_account,
                                                        amount=ln.planned_split_fen,
                                                        description=f"供应商货款 订单{order_no}"))
                         for ln in self._lines(s, order_no) if ln.planned_split_fen > 0]
            return {"transaction_id": row.transaction_id, "out_order_no": row.out_order_no}, receivers

    async def _create_split(self, row: dict, receivers: list[tuple[int, SplitReceiver]]) -> ProfitSharingOrder:
        return await self.pay.split(row["transaction_id"], row["out_order_no"], [r for _, r in receivers])

    async def _query(self, transaction_id: str, out_order_no: str) -> ProfitSharingOrder | None:
        """The split (or unfreeze) order at WeChat Pay, or None if it was never made."""
        try:
            return await self.pay.query_split(transaction_id, out_order_no)
        except PartnerRejected as err:
            if err.code in ("RESOURCE_NOT_EXISTS", "ORDER_NOT_EXIST") or err.status == 404:
                return None
            raise

    def _set_status(self, order_no: str, status: SettlementStatus) -> None:
        with self.sessions.begin() as s:
            row = s.get(SupplierSettlement, order_no, with_for_update=True)
            if not SettlementStatus(row.status).final:
                row.status = status

    def _record_split(self, order_no: str, answer: ProfitSharingOrder) -> OrderSettlement:
        """WeChat Pay's answer. Once FINISHED: each receiver paid is booked once (Dr the
        supplier's payable, Cr clearing: the money left us); a receiver WeChat closed got
        nothing and its share stays outstanding."""
        with self.sessions.begin() as s:
            row = s.get(SupplierSettlement, order_no, with_for_update=True)
            lines = self._lines(s, order_no)
            if row.status not in (SettlementStatus.SPLIT_REQUESTED, SettlementStatus.SPLITTING):
                return _outcome(row, lines)
            row.wechat_order_id = answer.order_id
            if answer.state != "FINISHED":
                row.status = SettlementStatus.SPLITTING
                return _outcome(row, lines)
            results = list(answer.receivers)
            paid = [ln for ln in lines if ln.planned_split_fen > 0]
            ledger.lock_accounts(s, {rules.CLEARING} | {rules.supplier_payable(ln.supplier_id) for ln in paid})
            for ln in paid:
                match = next((r for r in results if r.account == ln.receiver_account
                              and r.amount == ln.planned_split_fen), None)
                if match is None:
                    ln.result, ln.fail_reason = "CLOSED", "NOT_IN_ANSWER"
                    continue
                results.remove(match)
                ln.result, ln.detail_id, ln.fail_reason = match.result, match.detail_id, match.fail_reason
                if match.result != "SUCCESS":
                    continue
                ln.split_fen, ln.outstanding_fen = match.amount, ln.share_fen - match.amount
                ledger.post(s, split_ledger_key(order_no, ln.supplier_id), SPLIT_KIND,
                            rules.transfer(rules.supplier_payable(ln.supplier_id), rules.CLEARING, match.amount,
                                           rule="profit_sharing"),
                            order_no=order_no, memo=f"WeChat Pay profit sharing {row.out_order_no} "
                                                    f"to {ln.receiver_account} ({match.detail_id})")
            row.split_fen = sum(ln.split_fen for ln in lines)
            row.status = SettlementStatus.SPLIT
            s.flush()
            return _outcome(row, lines)

    def _record_unfreeze(self, order_no: str, answer: ProfitSharingOrder) -> OrderSettlement:
        with self.sessions.begin() as s:
            row = s.get(SupplierSettlement, order_no, with_for_update=True)
            if row.status == SettlementStatus.UNFREEZE_REQUESTED:
                row.status, row.unfreeze_order_id, row.finished_at = SettlementStatus.DONE, answer.order_id, _now()
            return _outcome(row, self._lines(s, order_no))

    def _fail(self, order_no: str, reason: str) -> OrderSettlement:
        with self.sessions.begin() as s:
            row = s.get(SupplierSettlement, order_no, with_for_update=True)
            if row is None:
                notify(s, role="support", kind="settlement_failed", subject_type="order", subject_id=order_no,
                       key=f"settlement:supplier:{order_no}:failed",
                       message=f"订单 {order_no} 供应商结算失败：{reason}；请人工处理")
                return OrderSettlement(order_no=order_no, status=SettlementStatus.FAILED, note=reason)
            if not SettlementStatus(row.status).final:
                row.status, row.failure, row.finished_at = SettlementStatus.FAILED, reason[:2000], _now()
                notify(s, role="support", kind="settlement_failed", subject_type="order", subject_id=order_no,
                       key=f"settlement:supplier:{order_no}:failed",
                       message=f"订单 {order_no} 分账失败：{reason}；未分账部分仍为应付供应商，请人工处理")
            return _outcome(row, self._lines(s, order_no))

    # --- commission settlement ---------------------------------------------------------------
    @activity.defn
    def commission_batches(self, month: str, batch_size: int) -> list[int]:
        """The first promoter id of each batch of `batch_size` promoters with an `available`
        account (in id order): batch i is [first_i, first_i+1)."""
        with self.sessions() as s:
            return [int(x) for x in s.execute(text(
                "SELECT owner_id FROM (SELECT owner_id, row_number() OVER (ORDER BY owner_id) AS rn"
                "  FROM ledger_accounts WHERE owner_type = 'promoter' AND code LIKE :available) a"
                " WHERE (rn - 1) % :size = 0 ORDER BY owner_id"),
                {"size": batch_size, "available": AVAILABLE_ACCOUNTS}).scalars()]

    @activity.defn
    def build_statements(self, batch: StatementBatch) -> StatementBatchResult:
        """Every statement of one batch from one aggregate over the ledger; made once per (month,
        promoter): a re-run finds them and reports the same totals."""
        start, end = month_bounds(batch.month, batch.timezone)
        upper = batch.next_first_id if batch.next_first_id is not None else NO_UPPER_ID
        with self.sessions.begin() as s:
            sums = s.execute(text(_STATEMENT_SUMS), {
                "start": start, "end": end, "lo": batch.first_id, "hi": upper, "available": AVAILABLE_ACCOUNTS,
                "release": "commission_release", "refund": "refund", "withdrawal": "withdrawal%",
                "team": "team_bonus", "regional": "regional_release", "month": batch.month}).mappings().all()
            rows = []
            for r in sums:
                f = statement_figures(LedgerSums(
                    opening_fen=r["opening"], released_fen=r["released"], team_bonus_fen=r["team"],
                    regional_bonus_fen=r["regional"], reversed_fen=r["reversed"],
                    withdrawn_fen=r["withdrawn"], other_fen=r["other"], entries=r["entries"]), batch.review_above_fen)
                rows.append(dict(
                    month=batch.month, promoter_id=r["promoter_id"], opening_fen=f.opening_fen,
                    released_fen=f.released_fen, team_bonus_fen=f.team_bonus_fen,
                    regional_bonus_fen=f.regional_bonus_fen, reversed_fen=f.reversed_fen, withdrawn_fen=f.withdrawn_fen,
                    other_fen=f.other_fen, closing_fen=f.closing_fen, carried_negative_fen=f.carried_negative_fen,
                    entries=f.entries,
                    status=str(StatementStatus.AWAITING_REVIEW if f.needs_review else StatementStatus.FINAL)))
            created: list[tuple[int, str]] = []
            if rows:  # one short statement with a column of values each (cheap to send, parse and plan)
                created = s.execute(text(_INSERT_STATEMENTS), {"month": batch.month} | {
                    c: [r[c] for r in rows] for c in _STATEMENT_COLUMNS}).all()
            for promoter_id, status in created:
                if status == StatementStatus.AWAITING_REVIEW:
                    notify(s, role="support", kind="statement_review", subject_type="promoter",
                           subject_id=promoter_id, key=f"statement:{batch.month}:{promoter_id}:review",
                           message=f"推广员 {promoter_id} {batch.month} 佣金结算单金额较大，待审核")
            in_batch = (CommissionStatement.month == batch.month, CommissionStatement.promoter_id >= batch.first_id,
                        CommissionStatement.promoter_id < upper)
            t = s.execute(select(func.count(), *[func.coalesce(func.sum(getattr(CommissionStatement, c)), 0)
                                                 for c in _TOTAL_COLUMNS]).where(*in_batch)).one()
            awaiting = list(s.scalars(select(CommissionStatement.promoter_id).where(
                *in_batch, CommissionStatement.status == StatementStatus.AWAITING_REVIEW)
                .order_by(CommissionStatement.promoter_id)))
            return StatementBatchResult(
                first_id=batch.first_id, created=len(created), awaiting_review=awaiting,
                totals=StatementTotals(statements=t[0], **{c: int(v) for c, v in zip(_TOTAL_COLUMNS, t[1:])}))

    @activity.defn
    def review_statement(self, month: str, review: StatementReview) -> StatementView:
        """Support's decision on a large statement: final, or rejected (held) with a reason."""
        with self.sessions.begin() as s:
            st = s.scalar(select(CommissionStatement).where(
                CommissionStatement.month == month, CommissionStatement.promoter_id == review.promoter_id)
                .with_for_update())
            if st is None:
                raise business_error("STATEMENT_NOT_FOUND", f"no {month} statement for promoter {review.promoter_id}")
            if st.status == StatementStatus.AWAITING_REVIEW:
                st.status = StatementStatus.FINAL if review.approve else StatementStatus.REJECTED
                st.reviewed_by_user_id, st.reviewed_at, st.review_note = review.reviewer_user_id, _now(), review.note
            return statement_view(st)

    @activity.defn
    def close_commission_run(self, month: str, totals: StatementTotals) -> None:
        with self.sessions.begin() as s:
            self._close_run(s, "commission", month, totals.model_dump())

    def all(self) -> list:
        return [self.open_run, self.orders_to_settle, self.split_order, self.await_split, self.unfreeze_order,
                self.settlement_failed, self.close_supplier_run, self.commission_batches, self.build_statements,
                self.review_statement, self.close_commission_run]


_TOTAL_COLUMNS = ("opening_fen", "released_fen", "team_bonus_fen", "regional_bonus_fen", "reversed_fen",
                  "withdrawn_fen", "other_fen", "closing_fen")
_STATEMENT_COLUMNS = ("promoter_id", *_TOTAL_COLUMNS, "carried_negative_fen", "entries", "status")
_INSERT_STATEMENTS = f"""
INSERT INTO commission_statements (month, {", ".join(_STATEMENT_COLUMNS)}, review_note)
SELECT :month, v.*, '' FROM unnest(:promoter_id ::bigint[], {", ".join(f":{c} ::bigint[]" for c in _TOTAL_COLUMNS)},
                                   :carried_negative_fen ::bigint[], :entries ::int[], :status ::varchar[]) AS v
ON CONFLICT (month, promoter_id) DO NOTHING
RETURNING promoter_id, status
"""

# One promoter's `available` account: credit-normal, so a credit (amount < 0) adds to it. A team
# bonus belongs to the month it was computed for (`team_bonus:{YYYY-MM}:{id}`, posted by that
# month's run, after the month ended); everything else to the month it was booked in.
_STATEMENT_SUMS = """
SELECT promoter_id,
       COALESCE(SUM(-amount_fen) FILTER (WHERE before), 0) AS opening,
       COALESCE(SUM(-amount_fen) FILTER (WHERE NOT before AND kind = :release), 0) AS released,
       COALESCE(SUM(-amount_fen) FILTER (WHERE NOT before AND kind = :team), 0) AS team,
       COALESCE(SUM(-amount_fen) FILTER (WHERE NOT before AND kind = :regional), 0) AS regional,
       COALESCE(SUM(amount_fen) FILTER (WHERE NOT before AND kind = :refund), 0) AS reversed,
       COALESCE(SUM(amount_fen) FILTER (WHERE NOT before AND kind LIKE :withdrawal), 0) AS withdrawn,
       COALESCE(SUM(-amount_fen) FILTER (WHERE NOT before AND kind NOT IN (:release, :team, :regional, :refund)
                                         AND kind NOT LIKE :withdrawal), 0) AS other,
       COUNT(*) FILTER (WHERE NOT before) AS entries
  FROM (SELECT a.owner_id AS promoter_id, t.amount_fen, t.kind,
               CASE WHEN t.kind = :team THEN split_part(t.idempotency_key, ':', 2) < :month
                    ELSE t.created_at < :start END AS before
          FROM ledger_accounts a
          -- per account, by index (OFFSET 0 keeps the planner from flattening this into a hash
          -- join over all of ledger_entries: at millions of entries a batch then costs a full
          -- scan, ~3 s instead of ~50 ms; bench/settlement_month.py)
          CROSS JOIN LATERAL (SELECT e.amount_fen, e.created_at, t.kind, t.idempotency_key
                                FROM ledger_entries e JOIN ledger_transactions t ON t.id = e.transaction_id
                               WHERE e.account_id = a.id OFFSET 0) t
         WHERE a.owner_type = 'promoter' AND a.code LIKE :available
           AND a.owner_id >= :lo AND a.owner_id < :hi
           AND (t.created_at < :end OR t.kind = :team)
           AND (t.kind <> :team OR split_part(t.idempotency_key, ':', 2) <= :month)) x
 GROUP BY promoter_id
"""
