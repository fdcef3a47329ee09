"""Settlement runs (operators start them; schedules start them anyway), their progress, support's
review of large commission statements, supplier bills (JSON or CSV) and statements."""

from __future__ import annotations

import csv
import io
from datetime import UTC, date, datetime
from typing import Literal

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field
from sqlalchemy import select
from temporalio.service import RPCError, RPCStatusCode

from activities.settlement import statement_view
from api.auth import PLATFORM_STAFF, Principal, require_roles
from api.deps import run_update, sessions_of, temporal_of
from api.errors import ApiError, not_found
from db.models import Promoter, Supplier
from db.settlement_models import CommissionStatement, SettlementRun, SupplierBill
from domain.money import yuan
from domain.settlement import (
    CommissionRunProgress,
    PeriodError,
    StatementReview,
    StatementStatus,
    StatementView,
    SupplierRunProgress,
    check_period,
    parse_day,
    parse_month,
    parse_period,
    run_workflow_id,
)
from workflows.schedules import start_run
from workflows.settlement import (
    CommissionSettlementWorkflow,
    SupplierSettlementWorkflow,
)

router = APIRouter(prefix="/settlements", tags=["settlements"])


class RunBody(BaseModel):
    kind: Literal["supplier", "commission"]
    period: str = Field(description="supplier: a day YYYY-MM-DD; commission: a month YYYY-MM")


class RunOut(BaseModel):
    run_id: str
    kind: str
    period: str
    running: bool
    progress: SupplierRunProgress | CommissionRunProgress | None = None


def _period(kind: str, period: str, settings, *, started: bool) -> str:
    try:
        if started:
            return check_period(kind, period, datetime.now(UTC), settings.settlement_timezone,
                                allow_open=settings.settlement_allow_open_periods)
        return parse_period(kind, period)
    except PeriodError as err:
        raise ApiError(422, err.code, err.message) from err


async def _run_out(handle, kind: str, period: str) -> RunOut:
    from temporalio.client import WorkflowExecutionStatus

    query = SupplierSettlementWorkflow.progress if kind == "supplier" else CommissionSettlementWorkflow.progress
    described = await handle.describe()
    try:
        progress = await handle.query(query)
    except RPCError:
        progress = None  # not picked up by a worker yet
    return RunOut(run_id=handle.id, kind=kind, period=period, progress=progress,
                  running=described.status == WorkflowExecutionStatus.RUNNING)


@router.post("/runs", status_code=201, response_model=RunOut,
             summary="Start the period's run (201), or get the run already started for it (200)")
async def start(body: RunBody, request: Request, response: Response,
                _: Principal = Depends(require_roles("operator"))) -> RunOut:
    settings = request.app.state.settings
    period = _period(body.kind, body.period, settings, started=True)
    try:
        handle, created = await start_run(await temporal_of(request), settings, body.kind, period)
    except RPCError as err:
        raise ApiError(503, "TEMPORAL_UNAVAILABLE", f"could not start the run: {err.message}") from err
    if not created:
        response.status_code = 200
    return await _run_out(handle, body.kind, period)


@router.get("/runs/{kind}/{period}", response_model=RunOut, summary="A run's progress")
async def get_run(kind: Literal["supplier", "commission"], period: str, request: Request,
                  _: Principal = Depends(require_roles(*PLATFORM_STAFF))) -> RunOut:
    period = _period(kind, period, request.app.state.settings, started=False)
    handle = (await temporal_of(request)).get_workflow_handle(run_workflow_id(kind, period))
    try:
        return await _run_out(handle, kind, period)
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:
            raise not_found(f"{kind} run for {period}") from err
        raise


class ReviewBody(BaseModel):
    approve: bool
    note: str = Field(default="", max_length=500, description="required when rejecting")


@router.post("/runs/{run_id}/statements/{promoter_id}/review", response_model=StatementView,
             summary="Support approves (final) or rejects (held) a statement awaiting review")
async def review(run_id: str, promoter_id: int, body: ReviewBody, request: Request,
                 principal: Principal = Depends(require_roles("support"))) -> StatementView:
    month = run_id.removeprefix("settlement-commission-")
    try:
        parse_month(month)
    except PeriodError as err:
        raise not_found(f"commission run {run_id}") from err

    def exists() -> bool:
        with sessions_of(request)() as s:
            return s.scalar(select(CommissionStatement.id).where(
                CommissionStatement.month == month, CommissionStatement.promoter_id == promoter_id)) is not None

    if not await run_in_threadpool(exists):
        raise not_found(f"the {month} statement of promoter {promoter_id}")
    decision = StatementReview(promoter_id=promoter_id, approve=body.approve, note=body.note,
                               reviewer_user_id=principal.user_id)
    return await run_update(request, run_workflow_id("commission", month),
                            CommissionSettlementWorkflow.review, decision)


@router.get("/statements", response_model=list[StatementView],
            summary="Commission statements of a month (a promoter sees only its own)")
def statements(request: Request, month: str, status: StatementStatus | None = None,
               promoter_id: int | None = None, limit: int = Query(default=100, ge=1, le=1000),
               offset: int = Query(default=0, ge=0),
               principal: Principal = Depends(require_roles("promoter", *PLATFORM_STAFF))) -> list[StatementView]:
    month = _period("commission", month, request.app.state.settings, started=False)
    with sessions_of(request)() as s:
        query = select(CommissionStatement).where(CommissionStatement.month == month)
        if principal.role == "promoter":
            own = s.scalar(select(Promoter.id).where(Promoter.user_id == principal.user_id))
            if own is None:
                raise ApiError(404, "NOT_A_PROMOTER", "this account has no promoter profile")
            promoter_id = own
        if promoter_id is not None:
            query = query.where(CommissionStatement.promoter_id == promoter_id)
        if status is not None:
            query = query.where(CommissionStatement.status == status)
        rows = s.scalars(query.order_by(CommissionStatement.promoter_id).limit(limit).offset(offset))
        return [statement_view(st) for st in rows]


class SupplierBillOut(BaseModel):
    settle_date: date
    supplier_id: int
    supplier_name: str
    orders: int
    sales_fen: int
    refunds_fen: int
    service_fee_fen: int
    commission_fen: int
    adjustment_fen: int
    net_fen: int
    split_fen: int = Field(description="paid through WeChat Pay profit sharing")
    outstanding_fen: int = Field(description="above WeChat Pay's split cap or without a receiver: "
                                             "pay by bank transfer")


BILL_COLUMNS = ("settle_date", "supplier_id", "supplier_name", "orders", "sales_fen", "refunds_fen",
                "service_fee_fen", "commission_fen", "adjustment_fen", "net_fen", "split_fen", "outstanding_fen")
MONEY = [c for c in BILL_COLUMNS if c.endswith("_fen")]


@router.get("/supplier-bills", response_model=list[SupplierBillOut],
            summary="Supplier bills of a settlement day (a supplier sees only its own); format=csv to export")
def supplier_bills(request: Request, date_: str = Query(alias="date", description="YYYY-MM-DD"),
                   format: str = Query(default="json", pattern="^(json|csv)$"),
                   principal: Principal = Depends(require_roles("supplier", *PLATFORM_STAFF))):
    try:
        day = parse_day(date_)
    except PeriodError as err:
        raise ApiError(422, err.code, err.message) from err
    with sessions_of(request)() as s:
        query = (select(SupplierBill, Supplier.name).join(Supplier, Supplier.id == SupplierBill.supplier_id)
                 .where(SupplierBill.settle_date == day))
        if principal.role == "supplier":
            query = query.where(Supplier.owner_user_id == principal.user_id)
        bills = [SupplierBillOut(supplier_name=name, **{c: getattr(bill, c) for c in BILL_COLUMNS
                                                        if c != "supplier_name"})
                 for bill, name in s.execute(query.order_by(SupplierBill.supplier_id))]
    if format == "json":
        return bills
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow([*BILL_COLUMNS, *(c.replace("_fen", "_yuan") for c in MONEY)])
    for b in bills:
        row = b.model_dump()
        writer.writerow([row[c] for c in BILL_COLUMNS] + [yuan(row[c]) for c in MONEY])
    return Response(out.getvalue(), media_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": f'attachment; filename="supplier-bills-{day}.csv"'})


@router.get("/runs", summary="Runs recorded in the database (operators, support)")
def runs(request: Request, kind: Literal["supplier", "commission"] | None = None,
         limit: int = Query(default=50, ge=1, le=500),
         _: Principal = Depends(require_roles(*PLATFORM_STAFF))) -> list[dict]:
    with sessions_of(request)() as s:
        query = select(SettlementRun)
        if kind:
            query = query.where(SettlementRun.kind == kind)
        return [{"kind": r.kind, "period": r.period, "run_id": r.workflow_id, "status": r.status, "runs": r.runs,
                 "totals": r.totals, "started_at": r.started_at, "finished_at": r.finished_at}
                for r in s.scalars(query.order_by(SettlementRun.started_at.desc()).limit(limit))]
