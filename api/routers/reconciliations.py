"""Reconciliation with WeChat Pay's daily bills: operators start a day's run (the schedule does
anyway), finance reads the report as JSON or CSV (`/reconciliations/{date}.csv`)."""

from __future__ import annotations

import csv
import io
from datetime import UTC, date, datetime

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel, Field
from sqlalchemy import select
from temporalio.service import RPCError

from api.auth import Principal, require_roles
from api.deps import sessions_of, temporal_of
from api.errors import ApiError, not_found
from db.reconciliation_models import ReconciliationDifference, ReconciliationRun
from domain.reconciliation import (
    WECHATPAY_TIMEZONE,
    ReconciliationError,
    ReconciliationProgress,
    check_bill_date,
    fen_to_yuan,
    millifen_to_yuan,
    parse_bill_date,
)
from workflows.reconciliation import ReconciliationWorkflow
from workflows.schedules import resolve_reconciliation_attempt, start_reconciliation

router = APIRouter(prefix="/reconciliations", tags=["reconciliations"])
READERS = ("operator", "support")
KIND_LABELS = {
    "MISSING_IN_LEDGER": "账务缺失（微信支付有，我方无）",
    "MISSING_AT_WECHATPAY": "微信支付缺失（我方有，账单无）",
    "AMOUNT_MISMATCH": "金额不符",
    "STATE_MISMATCH": "状态不符",
    "TOTALS_MISMATCH": "总额不符",
}


class RunBody(BaseModel):
    date: str = Field(description="the bill day, YYYY-MM-DD (Asia/Shanghai)")
    rerun: bool = Field(default=False, description="reconcile the day again as a new attempt; earlier "
                                                   "reports are kept")


class RunOut(BaseModel):
    run_id: str
    date: str
    attempt: int
    running: bool
    progress: ReconciliationProgress | None = None


class DifferenceOut(BaseModel):
    seq: int
    kind: str
    label: str
    subject: str
    out_trade_no: str | None
    out_refund_no: str | None
    ours_fen: int | None
    bill_fen: int | None
    delta_fen: int = Field(description="what WeChat Pay's bill has more than our books")
    our_state: str | None
    bill_state: str | None
    note: str


class ReportOut(BaseModel):
    date: str
    attempt: int
    attempts: list[int]
    run_id: str
    status: str = Field(description="running | clean | differences | bill_unavailable")
    bill_exists: bool | None
    bill_hash: str | None
    matched: int
    differences_count: int
    totals: dict
    timing: list[str]
    note: str
    started_at: datetime
    finished_at: datetime | None
    differences: list[DifferenceOut]


def _day(text: str) -> str:
    try:
        return parse_bill_date(text).isoformat()
    except ReconciliationError as err:
        raise ApiError(422, err.code, err.message) from err


@router.post("/runs", status_code=201, response_model=RunOut,
             summary="Reconcile a day (201), or get the run already started for it (200); rerun: a new attempt")
async def start(body: RunBody, request: Request, response: Response,
                _: Principal = Depends(require_roles("operator"))) -> RunOut:
    settings = request.app.state.settings
    try:
        day = check_bill_date(body.date, datetime.now(UTC), WECHATPAY_TIMEZONE)
    except ReconciliationError as err:
        raise ApiError(422, err.code, err.message) from err
    try:
        client = await temporal_of(request)
        attempt = await resolve_reconciliation_attempt(client, sessions_of(request), day, body.rerun)
        handle, created = await start_reconciliation(client, settings, day, attempt)
    except ReconciliationError as err:
        raise ApiError(409, err.code, err.message) from err
    except RPCError as err:
        raise ApiError(503, "TEMPORAL_UNAVAILABLE", f"could not start the run: {err.message}") from err
    if not created:
        response.status_code = 200
    return await _run_out(handle, day, attempt)


async def _run_out(handle, day: str, attempt: int) -> RunOut:
    from temporalio.client import WorkflowExecutionStatus

    described = await handle.describe()
    try:
        progress = await handle.query(ReconciliationWorkflow.progress)
    except RPCError:
        progress = None  # not picked up by a worker yet
    return RunOut(run_id=handle.id, date=day, attempt=attempt, progress=progress,
                  running=described.status == WorkflowExecutionStatus.RUNNING)


@router.get("", summary="Recent reconciliation runs")
def runs(request: Request, limit: int = Query(default=31, ge=1, le=366),
         _: Principal = Depends(require_roles(*READERS))) -> list[dict]:
    with sessions_of(request)() as s:
        return [{"date": r.bill_date.isoformat(), "attempt": r.attempt, "run_id": r.workflow_id, "status": r.status,
                 "matched": r.matched, "differences": r.differences, "started_at": r.started_at,
                 "finished_at": r.finished_at}
                for r in s.scalars(select(ReconciliationRun).order_by(ReconciliationRun.bill_date.desc(),
                                                                      ReconciliationRun.attempt.desc()).limit(limit))]


def report(s, day: str, attempt: int | None) -> ReportOut | None:
    """A day's report (the latest attempt unless one is named), or None."""
    d = date.fromisoformat(day)
    attempts = list(s.scalars(select(ReconciliationRun.attempt).where(ReconciliationRun.bill_date == d)
                              .order_by(ReconciliationRun.attempt)))
    if not attempts or (attempt is not None and attempt not in attempts):
        return None
    run = s.get(ReconciliationRun, (d, attempt or attempts[-1]))
    diffs = s.scalars(select(ReconciliationDifference).where(
        ReconciliationDifference.bill_date == d, ReconciliationDifference.attempt == run.attempt)
        .order_by(ReconciliationDifference.seq))
    return ReportOut(
        date=day, attempt=run.attempt, attempts=attempts, run_id=run.workflow_id, status=run.status,
        bill_exists=run.bill_exists, bill_hash=run.bill_hash, matched=run.matched, differences_count=run.differences,
        totals=run.totals, timing=run.timing, note=run.note, started_at=run.started_at, finished_at=run.finished_at,
        differences=[DifferenceOut(
            seq=x.seq, kind=x.kind, label=KIND_LABELS.get(x.kind, x.kind), subject=x.subject,
            out_trade_no=x.out_trade_no, out_refund_no=x.out_refund_no, ours_fen=x.ours_fen, bill_fen=x.bill_fen,
            delta_fen=(x.bill_fen or 0) - (x.ours_fen or 0), our_state=x.our_state, bill_state=x.bill_state,
            note=x.note) for x in diffs])


def report_csv(r: ReportOut) -> str:
    """The report as finance reads it in Excel: a summary block, then one line per difference
    (amounts in yuan, exact fen alongside)."""
    out = io.StringIO()
    w = csv.writer(out)
    bill, ledger = r.totals.get("bill", {}), r.totals.get("ledger", {})
    w.writerow(["对账日期", r.date])
    w.writerow(["对账批次", r.attempt])
    w.writerow(["结果", {"clean": "一致", "differences": "有差异", "bill_unavailable": "账单未获取",
                       "running": "进行中"}.get(r.status, r.status)])
    w.writerow(["账单SHA1", r.bill_hash or ""])
    w.writerow(["项目", "微信支付账单", "我方账务"])
    w.writerow(["支付笔数", bill.get("payments", 0), ledger.get("payments", 0)])
    w.writerow(["支付金额（元）", fen_to_yuan(bill.get("payments_fen", 0)), fen_to_yuan(ledger.get("payments_fen", 0))])
    w.writerow(["退款笔数", bill.get("refunds", 0), ledger.get("refunds", 0)])
    w.writerow(["退款金额（元）", fen_to_yuan(bill.get("refunds_fen", 0)), fen_to_yuan(ledger.get("refunds_fen", 0))])
    w.writerow(["净额（元）", fen_to_yuan(bill.get("net_fen", 0)), fen_to_yuan(ledger.get("net_fen", 0))])
    w.writerow(["手续费（元）", millifen_to_yuan(r.totals.get("fee_millifen", 0)), ""])
    w.writerow(["核对一致", r.matched])
    w.writerow(["差异数", r.differences_count])
    w.writerow([])
    w.writerow(["序号", "差异类型", "类型代码", "对象", "商户订单号", "商户退款单号", "我方金额（元）", "账单金额（元）",
                "差额（元）", "我方金额（分）", "账单金额（分）", "差额（分）", "我方状态", "账单状态", "说明"])
    for d in r.differences:
        w.writerow([d.seq, d.label, d.kind, {"payment": "支付", "refund": "退款", "totals": "总额"}[d.subject],
                    d.out_trade_no or "", d.out_refund_no or "",
                    "" if d.ours_fen is None else fen_to_yuan(d.ours_fen),
                    "" if d.bill_fen is None else fen_to_yuan(d.bill_fen), fen_to_yuan(d.delta_fen),
                    "" if d.ours_fen is None else d.ours_fen, "" if d.bill_fen is None else d.bill_fen, d.delta_fen,
                    d.our_state or "", d.bill_state or "", d.note])
    return out.getvalue()


@router.get("/{day}", response_model=ReportOut,
            summary="A day's report (latest attempt; ?attempt=n for an earlier one); `{date}.csv` or ?format=csv for finance")
def get_report(day: str, request: Request, attempt: int | None = Query(default=None, ge=1),
               format: str = Query(default="json", pattern="^(json|csv)$"),
               _: Principal = Depends(require_roles(*READERS))):
    if day.endswith(".csv"):
        day, format = day.removesuffix(".csv"), "csv"
    day = _day(day)
    with sessions_of(request)() as s:
        found = report(s, day, attempt)
    if found is None:
        raise not_found(f"reconciliation of {day}" + (f" attempt {attempt}" if attempt else ""))
    if format == "json":
        return found
    return Response("\ufeff" + report_csv(found), media_type="text/csv; charset=utf-8", headers={
        "Content-Disposition": f'attachment; filename="reconciliation-{day}-{found.attempt}.csv"'})


__all__ = ["router", "report", "report_csv"]
