"""`chuchuang reconcile`: start (or find) a day's reconciliation with WeChat Pay's bill, follow
it, and print the report finance reads: totals side by side, then every difference."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from rich.console import Console
from rich.table import Table

from cli.waiting import Waiting, connect_temporal, query_or_none
from domain.reconciliation import WECHATPAY_TIMEZONE, ReconciliationError, check_bill_date, fen_to_yuan
from settings import Settings

POLL_SECONDS = 0.5
NO_WORKER_HINT_AFTER = 10.0  # seconds without a worker answering before suggesting one may be missing


def _waiting_for(p, elapsed: float) -> str:
    """What the command is waiting for, in the words of the run's progress query."""
    if p is None:
        hint = "; is `make dev` or `chuchuang worker` running?" if elapsed > NO_WORKER_HINT_AFTER else ""
        return f"waiting for a worker to pick the run up{hint}"
    if p.status == "waiting_for_bill":
        return (f"waiting for WeChat Pay's bill of {p.day} (asked {p.bill_requests} time{'' if p.bill_requests == 1 else 's'}; "
                "it comes out after 10:00 Beijing time the next day)")
    return {"fetching": "fetching WeChat Pay's bill", "comparing": "comparing the bill with the ledger",
            "delegated": f"handed over to {p.delegated_to}"}.get(p.status, p.status)


def _may_take(settings: Settings, p) -> str:
    """How long the run may still take: seconds once the bill is out; while WeChat Pay is still
    making it, until the next ask, and at most RECONCILIATION_BILL_WAIT_AT_MOST in all."""
    wait_at_most = settings.reconciliation_bill_wait_at_most
    if p is not None and p.status == "waiting_for_bill" and p.waiting_since is not None:
        gives_up = (p.waiting_since + wait_at_most).astimezone(ZoneInfo(WECHATPAY_TIMEZONE))
        return (f"until the bill is out: asks every {_human(settings.reconciliation_bill_retry_every)}, "
                f"gives up at {gives_up:%Y-%m-%d %H:%M} Beijing time")
    return f"seconds once the bill is out; up to {_human(wait_at_most)} while WeChat Pay makes it"


def _human(period) -> str:
    seconds = int(period.total_seconds())
    for unit, size in (("day", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size and seconds % size == 0:
            n = seconds // size
            return f"{n} {unit}{'s' if unit == 'day' and n > 1 else ''}"
    return f"{seconds} s"


async def reconcile(settings: Settings, console: Console, day: str, follow: bool = True, rerun: bool = False) -> int:
    """0: clean; 1: differences, no bill, or the run failed; 2: bad input."""
    from temporalio.client import WorkflowExecutionStatus

    from db.session import session_factory
    from workflows.schedules import resolve_reconciliation_attempt, start_reconciliation
    from workflows.reconciliation import ReconciliationWorkflow

    sessions = session_factory(settings)
    try:
        day = check_bill_date(day, datetime.now(UTC), WECHATPAY_TIMEZONE)
    except ReconciliationError as err:
        console.print(f"[red]{err.code}[/red]: {err.message}")
        return 2
    client = await connect_temporal(settings, console)
    if client is None:
        return 1
    try:
        attempt = await resolve_reconciliation_attempt(client, sessions, day, rerun)
    except ReconciliationError as err:
        console.print(f"[red]{err.code}[/red]: {err.message}")
        return 2
    handle, created = await start_reconciliation(client, settings, day, attempt)
    console.print(f"{'started' if created else 'found'} [bold]{handle.id}[/bold] (Temporal UI: workflow id {handle.id})")
    if not follow:
        return 0
    resume = (f"{handle.id} carries on in Temporal; `chuchuang reconcile --date {day}` follows it again, "
              f"GET /reconciliations/{day} reads its report")
    with Waiting(console, handle.id, may_take=_may_take(settings, None), on_stop=resume) as waiting:
        while True:
            described = await handle.describe()
            progress = await query_or_none(handle, ReconciliationWorkflow.progress)
            waiting.update(_waiting_for(progress, waiting.elapsed()), may_take=_may_take(settings, progress))
            if described.status != WorkflowExecutionStatus.RUNNING:
                break
            await asyncio.sleep(POLL_SECONDS)
    if described.status != WorkflowExecutionStatus.COMPLETED:
        console.print(f"[red]{handle.id} ended {described.status.name}[/red]")
        return 1
    return print_report(sessions, console, day, attempt)


def print_report(sessions, console: Console, day: str, attempt: int | None = None) -> int:
    from api.routers.reconciliations import report

    with sessions() as s:
        r = report(s, day, attempt)
    if r is None:
        console.print(f"[red]no reconciliation of {day}[/red]")
        return 1
    colour = {"clean": "green", "differences": "red", "bill_unavailable": "red"}.get(r.status, "yellow")
    console.print(f"Reconciliation {r.date} (attempt {r.attempt}): [{colour}]{r.status}[/{colour}]"
                  + (f" — bill SHA1 {r.bill_hash}" if r.bill_hash else ("" if r.bill_exists else " — no bill for the day")))
    if r.note:
        console.print(r.note)
    bill, ledger = r.totals.get("bill", {}), r.totals.get("ledger", {})
    totals = Table(title=f"WeChat Pay bill vs ledger, {r.date}")
    totals.add_column("figure")
    totals.add_column("WeChat Pay", justify="right")
    totals.add_column("ledger", justify="right")
    for label, key, money in [("payments", "payments", False), ("payments (yuan)", "payments_fen", True),
                              ("refunds", "refunds", False), ("refunds (yuan)", "refunds_fen", True),
                              ("net (yuan)", "net_fen", True)]:
        a, b = bill.get(key, 0), ledger.get(key, 0)
        totals.add_row(label, fen_to_yuan(a) if money else str(a), fen_to_yuan(b) if money else str(b))
    console.print(totals)
    console.print(f"{r.matched} matched, {r.differences_count} difference(s)"
                  + (f", {len(r.timing)} timing item(s)" if r.timing else ""))
    if r.differences:
        table = Table(title="Differences")
        for column in ("#", "kind", "out_trade_no", "out_refund_no", "ours", "bill", "delta", "states", "note"):
            table.add_column(column, justify="right" if column in ("ours", "bill", "delta") else "left")
        for d in r.differences:
            table.add_row(str(d.seq), d.kind, d.out_trade_no or "", d.out_refund_no or "",
                          "" if d.ours_fen is None else fen_to_yuan(d.ours_fen),
                          "" if d.bill_fen is None else fen_to_yuan(d.bill_fen), fen_to_yuan(d.delta_fen),
                          f"{d.our_state or '-'} / {d.bill_state or '-'}", d.note)
        console.print(table)
    return 0 if r.status == "clean" else 1
