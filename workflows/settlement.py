"""Settlement runs, started by Temporal Schedules (workflows/schedules.py), an operator
(`POST /settlements/runs`) or `chuchuang settle`; one run per period, by workflow id.

SupplierSettlementWorkflow (`settlement-supplier-{YYYY-MM-DD}`), daily (T+1):
    which day: the one given, else yesterday in the settlement time zone (when scheduled: of
      the scheduled time), run under that day's id
    → for each order completed by the end of that day and not yet settled (a page at a time):
        plan the payment's split once: each supplier's share from the ledger, as much as
          WeChat Pay's max split ratio still allows, the rest outstanding
        → profit sharing `SS{order_no}` to the suppliers' receivers (added first if missing)
        → until WeChat Pay finishes it: book each receiver paid
             (Dr supplier:{id}:payable, Cr wechatpay:clearing)
        → unfreeze what was not split `SU{order_no}`
        a refund still open: the order waits for the next run; WeChat Pay refusing: support
          settles that payment by hand, the run goes on
    → per-supplier bills for the day; what was not split is outstanding (bank transfer)

CommissionSettlementWorkflow (`settlement-commission-{YYYY-MM}`), monthly:
    which month: the one given, else last month, as above
    → the month's team bonuses (a level's rate of its downline's sales, never deeper than COMMISSION_TIERS)
    → batches of promoters (settings.settlement_batch_size) by `available` account
    → child workflows, each building its batches' statements (one SQL aggregate per batch)
    → statements releasing more than the review threshold wait for support (update `review`,
      validated); the rest are final
    → every statement final or rejected: the run is final; promoters who chose automatic
      payout are paid by PayoutWorkflow `payouts-{month}` (started, not awaited)
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import ActivityError, ApplicationError, WorkflowAlreadyStartedError
from temporalio.workflow import ParentClosePolicy

from domain.search_attributes import BUSINESS_STATUS, SCHEDULED_START
from workflows.options import DB_STEP, PARTNER_CALL
from workflows.payouts import PayoutWorkflow, payouts_workflow_id

with workflow.unsafe.imports_passed_through():
    from activities.bonuses import BonusActivities
    from activities.settlement import SettlementActivities
    from domain.withdrawals import PayoutRunInput
    from domain.settlement import (
        CommissionBatchesInput,
        CommissionRunInput,
        CommissionRunProgress,
        OrderSettlement,
        SettlementStatus,
        SplitOrderRequest,
        StatementBatch,
        StatementBatchResult,
        StatementReview,
        StatementTotals,
        StatementView,
        SupplierRunInput,
        SupplierRunProgress,
        commission_period_at,
        review_problem,
        run_workflow_id,
        supplier_period_at,
    )

# Set by Temporal on every workflow a schedule starts: the time the action was due.
SHOWN_IDS = 100
# A long statement build still fits: one aggregate over a batch of promoters.
BATCH_STEP = dict(start_to_close_timeout=timedelta(minutes=5),
                  retry_policy=RetryPolicy(maximum_interval=timedelta(minutes=1)))


def _due_time() -> datetime:
    """When this run was due: the scheduled time (so a catch-up after an outage settles the
    period it was meant for), else when it started."""
    return workflow.info().typed_search_attributes.get(SCHEDULED_START) or workflow.now()


def _set_status(status: str) -> None:
    workflow.upsert_search_attributes([BUSINESS_STATUS.value_set(f"settlement_{status}")])


async def _run_for_period(run, inp, kind: str, period: str, progress):
    """A run started without a period (by the schedule) runs the period's own workflow, so a
    period is settled by one workflow id however it was started; if that run exists already
    (an operator started it), this one does nothing."""
    wf_id = run_workflow_id(kind, period)
    progress.delegated_to = wf_id
    _set_status("delegated")
    try:
        handle = await workflow.start_child_workflow(
            run, inp.model_copy(update={"period": period}), id=wf_id,
            id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE_FAILED_ONLY,
            parent_close_policy=ParentClosePolicy.ABANDON)
    except WorkflowAlreadyStartedError:
        progress.status, progress.note = "already_run", f"{wf_id} was started already"
        progress.finished_at = workflow.now()
        return progress
    result = await handle
    result.delegated_to = wf_id
    return result


@workflow.defn(name="SupplierSettlementWorkflow")
class SupplierSettlementWorkflow:
    def __init__(self) -> None:
        self._progress: SupplierRunProgress | None = None

    @workflow.run
    async def run(self, inp: SupplierRunInput) -> SupplierRunProgress:
        if inp.period is None:
            period = supplier_period_at(_due_time(), inp.timezone, inp.delay_days)
            self._progress = SupplierRunProgress(period=period, status="scheduled", started_at=workflow.now())
            return await _run_for_period(SupplierSettlementWorkflow.run, inp, "supplier", period, self._progress)
        period = inp.period
        if inp.carried is None:
            self._progress = SupplierRunProgress(period=period, status="splitting", started_at=workflow.now())
            await workflow.execute_activity_method(
                SettlementActivities.open_run, args=["supplier", period, workflow.info().workflow_id], **DB_STEP)
        else:
            self._progress = inp.carried
        self._set("splitting")
        cursor = inp.cursor
        while True:
            page = await workflow.execute_activity_method(
                SettlementActivities.orders_to_settle, args=[period, inp.timezone, cursor, inp.page_size],
                **DB_STEP)
            if not page:
                break
            for start in range(0, len(page), inp.parallel_orders):
                await asyncio.gather(*(self._settle(inp, order_no)
                                       for order_no in page[start:start + inp.parallel_orders]))
            cursor = page[-1]
            if workflow.info().is_continue_as_new_suggested():
                workflow.continue_as_new(inp.model_copy(update={"cursor": cursor, "carried": self._progress}))

        self._set("billing")
        totals = await workflow.execute_activity_method(
            SettlementActivities.close_supplier_run, period, **DB_STEP)
        self._progress.bills = totals.bills
        self._progress.finished_at = workflow.now()
        self._set("done" if not self._progress.failed_orders else "done_with_failures")
        return self._progress

    async def _settle(self, inp: SupplierRunInput, order_no: str) -> None:
        """One payment: split → wait for WeChat Pay → unfreeze the rest."""
        try:
            state = await workflow.execute_activity_method(
                SettlementActivities.split_order,
                SplitOrderRequest(order_no=order_no, period=inp.period, max_ratio_bps=inp.max_ratio_bps),
                **PARTNER_CALL)
            if state.status == SettlementStatus.SPLITTING:
                # WeChat Pay settles splits within minutes: each retry of the query is one poll.
                state = await workflow.execute_activity_method(
                    SettlementActivities.await_split, order_no, start_to_close_timeout=timedelta(seconds=20),
                    retry_policy=RetryPolicy(initial_interval=inp.poll_every, backoff_coefficient=1.5,
                                             maximum_interval=inp.poll_every * 10),
                    summary="wait for the split to finish")
            if state.status in (SettlementStatus.SPLIT, SettlementStatus.UNFREEZE_REQUESTED):
                state = await workflow.execute_activity_method(
                    SettlementActivities.unfreeze_order, order_no, **PARTNER_CALL)
        except ActivityError as err:
            cause = err.cause
            reason = f"{cause.type}: {cause.message}" if isinstance(cause, ApplicationError) else str(cause or err)
            state = await workflow.execute_activity_method(
                SettlementActivities.settlement_failed, args=[order_no, reason], **DB_STEP)
        self._count(state)

    def _count(self, state: OrderSettlement) -> None:
        p = self._progress
        if state.status == SettlementStatus.DEFERRED:
            p.orders_deferred += 1
            return
        if state.status == SettlementStatus.FAILED:
            p.failed_orders.append(state.order_no)
        p.orders_settled += 1
        p.orders_split += 1 if state.split_fen else 0
        p.split_fen += state.split_fen
        p.outstanding_fen += state.outstanding_fen

    def _set(self, status: str) -> None:
        self._progress.status = status
        _set_status(status)

    @workflow.query
    def progress(self) -> SupplierRunProgress | None:
        return self._progress


@workflow.defn(name="CommissionStatementBatchesWorkflow")
class CommissionStatementBatchesWorkflow:
    """A child of a commission run: builds its batches' statements, one activity per batch."""

    def __init__(self) -> None:
        self._done = 0

    @workflow.run
    async def run(self, inp: CommissionBatchesInput) -> list[StatementBatchResult]:
        results = []
        for batch in inp.batches:
            results.append(await workflow.execute_activity_method(
                SettlementActivities.build_statements, batch, **BATCH_STEP))
            self._done += 1
        return results

    @workflow.query
    def batches_done(self) -> int:
        return self._done


@workflow.defn(name="CommissionSettlementWorkflow")
class CommissionSettlementWorkflow:
    def __init__(self) -> None:
        self._progress: CommissionRunProgress | None = None
        self._pending: set[int] = set()
        self._reviewing: set[int] = set()

    @workflow.run
    async def run(self, inp: CommissionRunInput) -> CommissionRunProgress:
        if inp.period is None:
            period = commission_period_at(_due_time(), inp.timezone)
            self._progress = CommissionRunProgress(period=period, status="scheduled", started_at=workflow.now())
            return await _run_for_period(CommissionSettlementWorkflow.run, inp, "commission", period, self._progress)
        month = inp.period
        self._progress = CommissionRunProgress(period=month, status="building", started_at=workflow.now())
        self._set("building")
        await workflow.execute_activity_method(
            SettlementActivities.open_run, args=["commission", month, workflow.info().workflow_id], **DB_STEP)
        if workflow.patched("team-bonus"):
            # the month's team bonuses (levels with a team-bonus rate; none by default), posted
            # once per (month, promoter) before the statements that show them are built
            await workflow.execute_activity_method(
                BonusActivities.post_team_bonuses, args=[month, inp.timezone], **BATCH_STEP)
        firsts = await workflow.execute_activity_method(
            SettlementActivities.commission_batches, args=[month, inp.batch_size], **DB_STEP)
        batches = [StatementBatch(month=month, timezone=inp.timezone, first_id=first, next_first_id=nxt,
                                  review_above_fen=inp.review_above_fen)
                   for first, nxt in zip(firsts, [*firsts[1:], None][:len(firsts)], strict=True)]
        self._progress.batches_total = len(batches)

        children = asyncio.Semaphore(inp.parallel_children)
        run_id = run_workflow_id("commission", month)  # children are named after the period

        async def child(n: int, group: list[StatementBatch]) -> None:
            async with children:
                results = await workflow.execute_child_workflow(
                    CommissionStatementBatchesWorkflow.run, CommissionBatchesInput(parent_id=run_id, batches=group),
                    id=f"{run_id}-batches-{n:05d}")
            for result in results:
                self._add(result)

        size = inp.batches_per_child
        await asyncio.gather(*(child(n, batches[i:i + size]) for n, i in enumerate(range(0, len(batches), size))))

        if self._pending:
            self._set("awaiting_review")
            await workflow.wait_condition(lambda: not self._pending)
        await workflow.wait_condition(workflow.all_handlers_finished)
        await workflow.execute_activity_method(
            SettlementActivities.close_commission_run, args=[month, self._progress.totals], **DB_STEP)
        if inp.auto_payouts and workflow.patched("auto-payouts"):
            await self._start_payouts(month)
        self._progress.finished_at = workflow.now()
        self._set("final")
        return self._progress

    async def _start_payouts(self, month: str) -> None:
        try:
            await workflow.start_child_workflow(
                PayoutWorkflow.run, PayoutRunInput(month=month), id=payouts_workflow_id(month),
                parent_close_policy=ParentClosePolicy.ABANDON,
                id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE_FAILED_ONLY)
        except WorkflowAlreadyStartedError:
            pass  # a re-run of the month: its payouts were started once

    def _add(self, result: StatementBatchResult) -> None:
        p = self._progress
        p.batches_done += 1
        p.created += result.created
        p.totals = p.totals.plus(result.totals)
        self._pending.update(result.awaiting_review)
        self._show_pending()

    def _show_pending(self) -> None:
        self._progress.awaiting_review = len(self._pending)
        self._progress.awaiting_review_ids = sorted(self._pending)[:SHOWN_IDS]

    def _set(self, status: str) -> None:
        self._progress.status = status
        _set_status(status)

    # --- what support sends ----------------------------------------------------------------
    @workflow.update
    async def review(self, decision: StatementReview) -> StatementView:
        """Support approves a large statement (it becomes final) or rejects it (held, with why)."""
        self._reviewing.add(decision.promoter_id)
        try:
            view = await workflow.execute_activity_method(
                SettlementActivities.review_statement, args=[self._progress.period, decision], **DB_STEP)
        finally:
            self._reviewing.discard(decision.promoter_id)
        if decision.promoter_id in self._pending:
            self._pending.discard(decision.promoter_id)
            if decision.approve:
                self._progress.approved += 1
            else:
                self._progress.rejected += 1
            self._show_pending()
        return view

    @review.validator
    def _validate_review(self, decision: StatementReview) -> None:
        if self._progress is None or self._progress.status not in ("building", "awaiting_review"):
            status = self._progress.status if self._progress else "starting"
            raise ApplicationError(f"the run is {status}; nothing awaits review", type="NOT_AWAITING_REVIEW")
        if decision.promoter_id in self._reviewing:
            raise ApplicationError("a decision on this statement is being applied", type="ALREADY_DECIDED")
        if decision.promoter_id not in self._pending:
            raise ApplicationError(f"the {self._progress.period} statement of promoter {decision.promoter_id} "
                                   "does not await review", type="NOT_AWAITING_REVIEW")
        problem = review_problem(decision)
        if problem:
            raise ApplicationError(problem, type="INVALID_DECISION")

    @workflow.query
    def progress(self) -> CommissionRunProgress | None:
        return self._progress


__all__ = ["CommissionSettlementWorkflow", "CommissionStatementBatchesWorkflow", "StatementTotals",
           "SupplierSettlementWorkflow"]
