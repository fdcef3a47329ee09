"""Reconciliation side effects: download WeChat Pay's trade bill, compare it with our books,
keep the report, raise the alert. Each activity is idempotent:

* a bill is stored per day (rows replaced only when a download with another hash comes);
* a run is one row per (day, attempt), its report and differences written once, in the same
  database transaction that ends the run (a retried compare finds it ended and returns it);
* the alert is one notification per (day, attempt) (idempotency key), and the structlog event
  and prometheus counters fire only with the notification that was actually inserted.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import structlog
from prometheus_client import Counter
from sqlalchemy import delete, func, or_, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session, sessionmaker
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.catalog import notify
from activities.payments import as_activity_error
from db.models import LedgerAccount, LedgerEntry, LedgerTransaction, Payment
from db.order_models import Refund
from db.presale_models import RefundPayment
from db.reconciliation_models import (
    ReconciliationBill,
    ReconciliationBillRow,
    ReconciliationDifference,
    ReconciliationRun,
)
from domain import ledger as rules
from domain.reconciliation import (
    BillFetch,
    BillFormatError,
    BillRow,
    BillSummary,
    OurPayment,
    OurRefund,
    ReconciliationError,
    RunResult,
    Totals,
    TradeBill,
    day_bounds,
    fen_to_yuan,
    parse_bill_date,
    parse_trade_bill,
    reconcile,
)
from integrations.errors import PartnerRejected
from integrations.wechatpay import WeChatPayClient

log = structlog.get_logger()
DIFFERENCES = Counter("chuchuang_reconciliation_differences_total",
                      "differences found between WeChat Pay's daily bills and the ledger", ["kind"])
RUNS = Counter("chuchuang_reconciliation_runs_total", "reconciliation runs finished", ["status"])
PAYMENT_KINDS = ("payment", "late_payment")
REFUND_KIND = "refund"
FINANCE_ROLE = "operator"  # the finance team works with operator accounts


def _now() -> datetime:
    return datetime.now(UTC)


def run_result(run: ReconciliationRun, by_kind: dict[str, int]) -> RunResult:
    totals = run.totals or {}
    return RunResult(day=run.bill_date.isoformat(), attempt=run.attempt, status=run.status,
                     bill_exists=bool(run.bill_exists), matched=run.matched, differences=run.differences,
                     by_kind=by_kind, bill_net_fen=totals.get("bill", {}).get("net_fen", 0),
                     ledger_net_fen=totals.get("ledger", {}).get("net_fen", 0))


def differences_by_kind(s: Session, day: date, attempt: int) -> dict[str, int]:
    return dict(s.execute(select(ReconciliationDifference.kind, func.count()).where(
        ReconciliationDifference.bill_date == day, ReconciliationDifference.attempt == attempt)
        .group_by(ReconciliationDifference.kind).order_by(ReconciliationDifference.kind)).all())


class RunInProgress(ReconciliationError):
    def __init__(self, attempt: int, workflow_id: str):
        super().__init__("RUN_IN_PROGRESS", f"{workflow_id} is still running; re-run the day once it has ended")
        self.attempt, self.workflow_id = attempt, workflow_id


def attempt_to_start(s: Session, day: str, rerun: bool) -> int:
    """Which attempt a start of `day` means: the latest (found again, never replaced), or with
    `rerun` a new one after it. RunInProgress when the latest has not ended in the database:
    the caller asks Temporal whether it still runs (a failed or terminated run is started
    again under its own id instead)."""
    latest = s.scalar(select(ReconciliationRun).where(ReconciliationRun.bill_date == parse_bill_date(day))
                      .order_by(ReconciliationRun.attempt.desc()).limit(1))
    if latest is None:
        return 1
    if not rerun:
        return latest.attempt
    if latest.status == "running":
        raise RunInProgress(latest.attempt, latest.workflow_id)
    return latest.attempt + 1


class ReconciliationActivities:
    def __init__(self, sessions: sessionmaker[Session], pay: WeChatPayClient):
        self.sessions = sessions
        self.pay = pay

    @activity.defn(name="reconciliation_open_run")
    def open_run(self, day: str, attempt: int, workflow_id: str) -> None:
        with self.sessions.begin() as s:
            s.execute(insert(ReconciliationRun).values(
                bill_date=parse_bill_date(day), attempt=attempt, workflow_id=workflow_id, status="running",
                matched=0, differences=0, totals={}, timing=[], note="").on_conflict_do_nothing())

    # --- the bill ---------------------------------------------------------------------------
    @activity.defn(name="reconciliation_fetch_bill")
    async def fetch_bill(self, day: str) -> BillFetch:
        """Ask for the day's ALL trade bill, download it, check its SHA1, parse it and keep it.
        Not made yet (STATEMENT_CREATING): ApplicationError BILL_NOT_READY, for the workflow to
        wait and ask again; no bill for the day (NO_STATEMENT_EXIST): kept as an empty bill."""
        try:
            found = await self.pay.trade_bill(day, "ALL")
            text = await self.pay.download_bill(found)
        except PartnerRejected as err:
            if err.code == "NO_STATEMENT_EXIST":
                await asyncio.to_thread(self._keep, day, None, None)
                return BillFetch(day=day, exists=False)
            if err.code == "STATEMENT_CREATING":
                raise ApplicationError(f"WeChat Pay is still making the {day} bill: {err}", type="BILL_NOT_READY",
                                       non_retryable=True) from err
            raise as_activity_error(err) from err
        except Exception as err:  # noqa: BLE001 - mapped to retryable / non-retryable
            raise as_activity_error(err) from err
        try:
            bill = parse_trade_bill(text)
        except BillFormatError as err:
            raise ApplicationError(f"the {day} bill cannot be read: {err}", type="BILL_UNREADABLE",
                                   non_retryable=True) from err
        await asyncio.to_thread(self._keep, day, bill, found.hash_value.lower())
        return BillFetch(day=day, exists=True, hash_value=found.hash_value.lower(), rows=len(bill.rows),
                         payments_fen=bill.summary.settlement_fen, refunds_fen=bill.summary.refund_fen)

    def _keep(self, day: str, bill: TradeBill | None, hash_value: str | None) -> None:
        d = parse_bill_date(day)
        with self.sessions.begin() as s:
            kept = s.get(ReconciliationBill, d, with_for_update=True)
            if kept is not None and kept.exists == (bill is not None) and kept.hash_value == hash_value:
                return  # the same file again
            summary = bill.summary.model_dump() if bill else {}
            s.execute(insert(ReconciliationBill).values(bill_date=d, exists=bill is not None, hash_value=hash_value,
                                                        summary=summary, fetched_at=_now())
                      .on_conflict_do_update(index_elements=["bill_date"], set_={
                          "exists": bill is not None, "hash_value": hash_value, "summary": summary,
                          "fetched_at": _now()}))
            s.execute(delete(ReconciliationBillRow).where(ReconciliationBillRow.bill_date == d))
            if bill and bill.rows:
                s.execute(insert(ReconciliationBillRow), [dict(
                    bill_date=d, kind="refund" if r.is_refund else "payment", key=r.key, out_trade_no=r.out_trade_no,
                    transaction_id=r.transaction_id, refund_id=r.refund_id, trade_state=r.trade_state,
                    refund_status=r.refund_status, amount_fen=r.refund_fen if r.is_refund else r.settlement_fen,
                    fee_millifen=r.fee_millifen, traded_at=r.traded_at) for r in bill.rows])

    # --- the comparison -----------------------------------------------------------------------
    @activity.defn(name="reconciliation_compare")
    def compare(self, day: str, attempt: int, tz: str) -> RunResult:
        """Compare the kept bill with the books and write the report, once."""
        d = parse_bill_date(day)
        with self.sessions.begin() as s:
            run = s.get(ReconciliationRun, (d, attempt), with_for_update=True)
            if run is None:
                raise ApplicationError(f"no reconciliation run {day} #{attempt}", type="RUN_NOT_FOUND",
                                       non_retryable=True)
            if run.status != "running":
                return run_result(run, differences_by_kind(s, d, attempt))
            kept = s.get(ReconciliationBill, d)
            if kept is None:
                raise ApplicationError(f"the {day} bill was not fetched", type="BILL_NOT_FETCHED")
            rows = list(s.scalars(select(ReconciliationBillRow).where(ReconciliationBillRow.bill_date == d)
                                  .order_by(ReconciliationBillRow.traded_at, ReconciliationBillRow.key)))
            bill = TradeBill(rows=[_bill_row(r) for r in rows], summary=BillSummary(**kept.summary)) \
                if kept.exists else None
            start, end = day_bounds(day, tz)
            payments, refunds, ledger = self._ours(s, rows, start, end, ZoneInfo(tz))
            ours_today = [p.out_trade_no for p in payments.values() if p.booked_on == day] + \
                         [r.out_refund_no for r in refunds.values() if r.booked_on == day]
            elsewhere = {key: on.isoformat() for key, on in s.execute(
                select(ReconciliationBillRow.key, func.min(ReconciliationBillRow.bill_date))
                .where(ReconciliationBillRow.key.in_(ours_today), ReconciliationBillRow.bill_date != d)
                .group_by(ReconciliationBillRow.key))} if ours_today else {}
            outcome = reconcile(day, bill, payments, refunds, ledger, elsewhere=elsewhere)
            for seq, diff in enumerate(outcome.differences, 1):
                s.add(ReconciliationDifference(
                    bill_date=d, attempt=attempt, seq=seq, kind=str(diff.kind), subject=diff.subject,
                    out_trade_no=diff.out_trade_no, out_refund_no=diff.out_refund_no, ours_fen=diff.ours_fen,
                    bill_fen=diff.bill_fen, our_state=diff.our_state, bill_state=diff.bill_state, note=diff.note))
            run.status = "clean" if outcome.clean else "differences"
            run.bill_exists, run.bill_hash = outcome.bill_exists, kept.hash_value
            run.matched, run.differences = outcome.matched, len(outcome.differences)
            run.timing, run.finished_at = outcome.timing, _now()
            run.totals = {"bill": _totals(outcome.bill), "ledger": _totals(outcome.ours),
                          "fee_millifen": outcome.fee_millifen}
            s.flush()
            RUNS.labels(run.status).inc()
            return run_result(run, differences_by_kind(s, d, attempt))

    def _ours(self, s: Session, rows: list[ReconciliationBillRow], start: datetime, end: datetime, zone: ZoneInfo):
        """Our payments and refunds the bill names or that were booked in [start, end), and the
        day's wechatpay:clearing totals summed by the ledger itself."""
        clearing = s.scalar(select(LedgerAccount.id).where(LedgerAccount.code == rules.CLEARING))
        postings = (select(LedgerTransaction.idempotency_key, LedgerTransaction.kind, LedgerTransaction.order_no,
                           LedgerTransaction.created_at, func.sum(LedgerEntry.amount_fen).label("amount"))
                    .join(LedgerEntry, LedgerEntry.transaction_id == LedgerTransaction.id)
                    .where(LedgerEntry.account_id == clearing,
                           LedgerTransaction.kind.in_((*PAYMENT_KINDS, REFUND_KIND)))
                    .group_by(LedgerTransaction.id))
        in_day = (LedgerTransaction.created_at >= start, LedgerTransaction.created_at < end)
        day_rows = s.execute(postings.where(*in_day)).all() if clearing is not None else []
        ledger = Totals()
        for r in day_rows:
            if r.kind == REFUND_KIND:
                ledger.refunds += 1
                ledger.refunds_fen += -int(r.amount)
            else:
                ledger.payments += 1
                ledger.payments_fen += int(r.amount)
        order_nos = {r.key for r in rows if r.kind == "payment"} | {
            _trade_of(r.idempotency_key, r.order_no) for r in day_rows if r.kind != REFUND_KIND}
        refund_nos = {r.key for r in rows if r.kind == "refund"} | {
            r.idempotency_key.removeprefix("refund:") for r in day_rows if r.kind == REFUND_KIND}
        # a refund spanning a pre-sale order's two payments is two WeChat Pay refunds
        # ({refund_no}B, {refund_no}D) on the bill, one refund and one ledger transaction here
        parts_of: dict[str, list[RefundPayment]] = {}
        if refund_nos:
            for part in s.scalars(select(RefundPayment).where(or_(
                    RefundPayment.refund_no.in_(refund_nos), RefundPayment.out_refund_no.in_(refund_nos)))):
                if part.out_refund_no != part.refund_no:
                    parts_of.setdefault(part.refund_no, []).append(part)
            refund_nos |= set(parts_of)

        payments: dict[str, OurPayment] = {}
        orders: set[str] = set()
        for p in s.scalars(select(Payment).where(Payment.out_trade_no.in_(order_nos))) if order_nos else []:
            payments[p.out_trade_no] = OurPayment(out_trade_no=p.out_trade_no, amount_fen=p.amount_fen,
                                                  status=p.status, transaction_id=p.transaction_id)
            orders.add(p.order_no)
        if payments and clearing is not None:
            for r in s.execute(postings.where(LedgerTransaction.order_no.in_(orders),
                                              LedgerTransaction.kind.in_(PAYMENT_KINDS))):
                p = payments.get(_trade_of(r.idempotency_key, r.order_no))
                if p is None:
                    continue
                p.booked_fen = (p.booked_fen or 0) + int(r.amount)
                p.booked_on = p.booked_on or r.created_at.astimezone(zone).date().isoformat()
        refunds: dict[str, OurRefund] = {}
        for f in s.scalars(select(Refund).where(Refund.refund_no.in_(refund_nos))) if refund_nos else []:
            refunds[f.refund_no] = OurRefund(out_refund_no=f.refund_no, out_trade_no=f.order_no,
                                             amount_fen=f.amount_fen, status=f.status)
        if refunds and clearing is not None:
            for r in s.execute(postings.where(LedgerTransaction.idempotency_key.in_(
                    [f"refund:{no}" for no in refunds]), LedgerTransaction.kind == REFUND_KIND)):
                f = refunds[r.idempotency_key.removeprefix("refund:")]
                f.booked_fen, f.booked_on = -int(r.amount), r.created_at.astimezone(zone).date().isoformat()
        for refund_no, parts in parts_of.items():
            whole = refunds.pop(refund_no, None)
            if whole is None:
                continue
            for part in parts:
                refunds[part.out_refund_no] = OurRefund(
                    out_refund_no=part.out_refund_no, out_trade_no=part.out_trade_no, amount_fen=part.amount_fen,
                    status=whole.status, booked_fen=part.amount_fen if whole.booked_fen is not None else None,
                    booked_on=whole.booked_on)
        return payments, refunds, ledger

    # --- endings --------------------------------------------------------------------------------
    @activity.defn(name="reconciliation_bill_unavailable")
    def bill_unavailable(self, day: str, attempt: int, note: str) -> RunResult:
        """WeChat Pay did not publish the bill in time (or it cannot be read): the run ends so."""
        d = parse_bill_date(day)
        with self.sessions.begin() as s:
            run = s.get(ReconciliationRun, (d, attempt), with_for_update=True)
            if run.status == "running":
                run.status, run.note, run.finished_at = "bill_unavailable", note[:2000], _now()
                RUNS.labels(run.status).inc()
            return run_result(run, {})

    @activity.defn(name="reconciliation_alert")
    def alert(self, day: str, attempt: int) -> bool:
        """Differences (or no bill): tell finance once (notification), log an error event and
        count the differences (prometheus). False when there is nothing to report."""
        d = parse_bill_date(day)
        with self.sessions.begin() as s:
            run = s.get(ReconciliationRun, (d, attempt))
            if run is None or run.status in ("running", "clean"):
                return False
            by_kind = differences_by_kind(s, d, attempt)
            if run.status == "bill_unavailable":
                message = f"{day} 微信支付交易账单未能获取，对账未完成：{run.note}"
            else:
                detail = "，".join(f"{k} {n} 笔" for k, n in by_kind.items())
                net = run.totals.get("bill", {}).get("net_fen", 0) - run.totals.get("ledger", {}).get("net_fen", 0)
                message = (f"{day} 微信支付对账发现 {run.differences} 处差异（{detail}），账单净额与账务净额相差 "
                           f"{fen_to_yuan(net)} 元；详见 GET /reconciliations/{day}")
            inserted = notify(s, role=FINANCE_ROLE, kind="reconciliation_differences", subject_type="reconciliation",
                              subject_id=f"{day}#{attempt}", key=f"reconciliation:{day}:{attempt}:alert",
                              message=message)
        if inserted:
            log.error("reconciliation.differences", day=day, attempt=attempt, status=run.status,
                      differences=run.differences, by_kind=by_kind, note=run.note or None)
            for kind, n in by_kind.items():
                DIFFERENCES.labels(kind).inc(n)
            if run.status == "bill_unavailable":
                DIFFERENCES.labels("BILL_UNAVAILABLE").inc()
        return inserted

    def all(self) -> list:
        return [self.open_run, self.fetch_bill, self.compare, self.bill_unavailable, self.alert]


def _trade_of(ledger_key: str, order_no: str) -> str:
    """The out_trade_no a payment posting is for: the order number (`order:{no}:payment`,
    `order:{no}:late_payment`), or a pre-sale's deposit / balance payment ({no}D / {no}B)."""
    if ledger_key.endswith(":payment:deposit"):
        return f"{order_no}D"
    if ledger_key.endswith(":payment:balance"):
        return f"{order_no}B"
    return order_no


def _bill_row(r: ReconciliationBillRow) -> BillRow:
    refund = r.kind == "refund"
    return BillRow(traded_at=r.traded_at, transaction_id=r.transaction_id, out_trade_no=r.out_trade_no,
                   trade_state=r.trade_state, settlement_fen=0 if refund else r.amount_fen,
                   refund_fen=r.amount_fen if refund else 0, refund_id=r.refund_id,
                   out_refund_no=r.key if refund else None, refund_status=r.refund_status,
                   fee_millifen=r.fee_millifen)


def _totals(t: Totals) -> dict:
    return t.model_dump() | {"net_fen": t.net_fen}
