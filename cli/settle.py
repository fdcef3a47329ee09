"""`chuchuang settle` and `chuchuang report`: start or follow a settlement run with a live
progress bar, and print a period's settlement figures from the database."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from rich.console import Console
from rich.table import Table
from sqlalchemy import func, select

from cli.waiting import Waiting, connect_temporal, query_or_none
from domain.money import yuan
from domain.settlement import PeriodError, check_period, month_bounds, parse_day, parse_month
from settings import Settings

POLL_SECONDS = 0.5
NO_WORKER_HINT_AFTER = 10.0  # seconds without a worker answering before suggesting one may be missing


def _may_take(settings: Settings, kind: str) -> str:
    """What a run waits on besides its own pass over the period's rows."""
    if kind == "supplier":
        return (f"one pass over the day's orders; a split WeChat Pay is still processing is asked about every "
                f"{int(settings.profit_sharing_poll_every.total_seconds())} s")
    return (f"one pass over the month's promoters, in batches; then, if a statement is above "
            f"{yuan(settings.commission_review_above_fen)}, until support reviews it (no time limit)")


def _waiting_for_worker(elapsed: float) -> str:
    hint = "; is `make dev` or `chuchuang worker` running?" if elapsed > NO_WORKER_HINT_AFTER else ""
    return f"waiting for a worker to pick the run up{hint}"


def _describe(kind: str, p) -> str:
    if p is None:
        return "waiting for a worker"
    if kind == "supplier":
        text = (f"{p.status}: {p.orders_settled} orders, split {yuan(p.split_fen)}, "
                f"outstanding {yuan(p.outstanding_fen)}")
        return text + (f", {len(p.failed_orders)} failed" if p.failed_orders else "")
    text = f"{p.status}: {p.totals.statements} statements, released {yuan(p.totals.released_fen)}"
    if p.awaiting_review:
        text += f", {p.awaiting_review} awaiting support review"
    return text


async def settle(settings: Settings, console: Console, kind: str, period: str, follow: bool) -> int:
    from temporalio.client import WorkflowExecutionStatus

    from workflows.schedules import start_run
    from workflows.settlement import CommissionSettlementWorkflow, SupplierSettlementWorkflow

    if kind not in ("supplier", "commission"):
        console.print("[red]--kind is supplier or commission[/red]")
        return 2
    try:
        period = check_period(kind, period, datetime.now(UTC), settings.settlement_timezone,
                              allow_open=settings.settlement_allow_open_periods)
    except PeriodError as err:
        console.print(f"[red]{err.code}[/red]: {err.message}")
        return 2
    client = await connect_temporal(settings, console)
    if client is None:
        return 1
    handle, created = await start_run(client, settings, kind, period)
    console.print(f"{'started' if created else 'found'} [bold]{handle.id}[/bold] "
                  f"(Temporal UI: workflow id {handle.id})")
    if not follow:
        return 0
    query = SupplierSettlementWorkflow.progress if kind == "supplier" else CommissionSettlementWorkflow.progress
    resume = (f"{handle.id} carries on in Temporal; `chuchuang settle --kind {kind} --period {period}` follows "
              f"it again, GET /settlements/runs/{kind}/{period} reads it")
    progress = None
    with Waiting(console, handle.id, may_take=_may_take(settings, kind), on_stop=resume) as waiting:
        while True:
            described = await handle.describe()
            progress = await query_or_none(handle, query)
            if progress is None:
                waiting.update(_waiting_for_worker(waiting.elapsed()))
            elif kind == "commission":
                waiting.update(_describe(kind, progress), completed=progress.batches_done,
                               total=progress.batches_total or None)
            else:
                waiting.update(_describe(kind, progress), completed=progress.orders_settled)
            if described.status != WorkflowExecutionStatus.RUNNING:
                break
            await asyncio.sleep(POLL_SECONDS)
    if described.status != WorkflowExecutionStatus.COMPLETED:
        console.print(f"[red]{handle.id} ended {described.status.name}[/red]")
        return 1
    console.print(f"[green]{handle.id}: {_describe(kind, progress)}[/green]")
    return 0


def _figures(session, period: str, tz: str) -> tuple[str, dict[str, int], dict[str, int] | None]:
    from db.settlement_models import CommissionStatement, SupplierBill

    if len(period) == 10:
        day = parse_day(period)
        where, month = [SupplierBill.settle_date == day], None
    else:
        parse_month(period)
        start, end = month_bounds(period, tz)
        where, month = [SupplierBill.settle_date >= start.date(), SupplierBill.settle_date < end.date()], period
    columns = ("orders", "sales_fen", "refunds_fen", "service_fee_fen", "commission_fen", "adjustment_fen",
               "net_fen", "split_fen", "outstanding_fen")
    row = session.execute(select(func.count(SupplierBill.supplier_id), *[
        func.coalesce(func.sum(getattr(SupplierBill, c)), 0) for c in columns]).where(*where)).one()
    bills = {"bills": int(row[0])} | {c: int(v) for c, v in zip(columns, row[1:])}
    statements = None
    if month is not None:
        cols = ("released_fen", "reversed_fen", "withdrawn_fen", "closing_fen")
        r = session.execute(select(func.count(CommissionStatement.id), *[
            func.coalesce(func.sum(getattr(CommissionStatement, c)), 0) for c in cols],
            func.count(CommissionStatement.id).filter(CommissionStatement.status == "awaiting_review"))
            .where(CommissionStatement.month == month)).one()
        statements = {"statements": int(r[0])} | {c: int(v) for c, v in zip(cols, r[1:5])} | {
            "awaiting_review": int(r[5])}
    return period, bills, statements


def report(settings: Settings, console: Console, period: str) -> int:
    from db.session import session_factory

    try:
        with session_factory(settings)() as s:
            period, bills, statements = _figures(s, period, settings.settlement_timezone)
    except PeriodError as err:
        console.print(f"[red]{err.code}[/red]: {err.message} (a day YYYY-MM-DD or a month YYYY-MM)")
        return 2
    table = Table(title=f"Settlement {period}", show_lines=False)
    table.add_column("figure")
    table.add_column("yuan", justify="right")
    table.add_column("fen", justify="right")
    for label, key in [("sales", "sales_fen"), ("refunds", "refunds_fen"), ("service fees", "service_fee_fen"),
                       ("commission (on settled orders)", "commission_fen"), ("rounding", "adjustment_fen"),
                       ("suppliers' net", "net_fen"), ("split (WeChat Pay profit sharing)", "split_fen"),
                       ("outstanding (bank transfer)", "outstanding_fen")]:
        table.add_row(label, yuan(bills[key]), str(bills[key]))
    if statements is not None:
        for label, key in [("commission released", "released_fen"), ("commission reversed", "reversed_fen"),
                           ("commission withdrawn", "withdrawn_fen"), ("promoters' closing balance", "closing_fen")]:
            table.add_row(label, yuan(statements[key]), str(statements[key]))
    console.print(table)
    console.print(f"{bills['bills']} supplier bill(s) covering {bills['orders']} supplier order part(s)"
                  + (f"; {statements['statements']} statement(s), {statements['awaiting_review']} awaiting review"
                     if statements is not None else ""))
    return 0
