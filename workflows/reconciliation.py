"""Reconciliation with WeChat Pay's daily trade bill, started by the Temporal Schedule
`reconciliation-daily` (workflows/schedules.py), an operator (`POST /reconciliations/runs`) or
`chuchuang reconcile`; one run per day by workflow id (an explicit re-run is a new attempt).

ReconciliationWorkflow (`reconciliation-{YYYY-MM-DD}`, re-runs `reconciliation-{date}-{n}`):
    which day: the one given, else yesterday in the settlement time zone (when scheduled: of
      the scheduled time), run under that day's id
    → open the run (a report row for the day and attempt)
    → fetch the day's bill: WeChat Pay makes it after about 10:00 the next day; while it answers
      STATEMENT_CREATING, wait `retry_every` and ask again, at most `wait_at_most` in all (then the
      run ends `bill_unavailable`, and finance is alerted)
    → fetch the previous day's bill too (a payment booked just after midnight is on it)
    → compare the bill with the books (payments, refunds, the ledger's wechatpay:clearing) and
      keep the report with every difference
    → differences: alert finance (notification, error event, prometheus counter)
"""

from __future__ import annotations

from datetime import datetime

from temporalio import workflow
from temporalio.common import WorkflowIDReusePolicy
from temporalio.exceptions import ActivityError, ApplicationError, WorkflowAlreadyStartedError
from temporalio.workflow import ParentClosePolicy

from domain.search_attributes import BUSINESS_STATUS, SCHEDULED_START
from workflows.options import DB_STEP, PARTNER_CALL

with workflow.unsafe.imports_passed_through():
    from activities.reconciliation import ReconciliationActivities
    from domain.reconciliation import (
        ReconciliationInput,
        ReconciliationProgress,
        RunResult,
        day_to_reconcile_at,
        previous_day,
        run_workflow_id,
    )



def _due_time() -> datetime:
    return workflow.info().typed_search_attributes.get(SCHEDULED_START) or workflow.now()


def _not_ready(err: ActivityError) -> bool:
    return isinstance(err.cause, ApplicationError) and err.cause.type == "BILL_NOT_READY"


@workflow.defn(name="ReconciliationWorkflow")
class ReconciliationWorkflow:
    def __init__(self) -> None:
        self._progress: ReconciliationProgress | None = None

    @workflow.run
    async def run(self, inp: ReconciliationInput) -> ReconciliationProgress:
        if inp.day is None:
            return await self._delegate(inp)
        day, attempt = inp.day, inp.attempt
        self._progress = ReconciliationProgress(day=day, attempt=attempt, status="fetching",
                                                started_at=workflow.now())
        self._set("fetching")
        await workflow.execute_activity_method(
            ReconciliationActivities.open_run, args=[day, attempt, workflow.info().workflow_id], **DB_STEP)

        deadline = workflow.now() + inp.wait_at_most
        while True:
            self._progress.bill_requests += 1
            try:
                await workflow.execute_activity_method(ReconciliationActivities.fetch_bill, day, **PARTNER_CALL)
                break
            except ActivityError as err:
                cause = err.cause
                reason = f"{cause.type}: {cause.message}" if isinstance(cause, ApplicationError) else str(err)
                if not _not_ready(err) or workflow.now() + inp.retry_every > deadline:
                    return await self._unavailable(day, attempt, reason)
            if self._progress.waiting_since is None:
                self._progress.waiting_since = workflow.now()
            self._progress.note = f"WeChat Pay is still making the {day} bill; asking again every {inp.retry_every}"
            self._set("waiting_for_bill")
            await workflow.sleep(inp.retry_every)
            self._set("fetching")
        self._progress.note = ""
        try:  # only to tell a near-midnight payment from a missing one: best effort
            await workflow.execute_activity_method(
                ReconciliationActivities.fetch_bill, previous_day(day), **PARTNER_CALL)
        except ActivityError as err:
            self._progress.note = f"previous day's bill not fetched: {err.cause or err}"

        self._set("comparing")
        result = await workflow.execute_activity_method(
            ReconciliationActivities.compare, args=[day, attempt, inp.timezone], **DB_STEP)
        if result.status != "clean":
            await workflow.execute_activity_method(ReconciliationActivities.alert, args=[day, attempt], **DB_STEP)
        return self._finish(result)

    async def _unavailable(self, day: str, attempt: int, reason: str) -> ReconciliationProgress:
        result = await workflow.execute_activity_method(
            ReconciliationActivities.bill_unavailable, args=[day, attempt, reason], **DB_STEP)
        await workflow.execute_activity_method(ReconciliationActivities.alert, args=[day, attempt], **DB_STEP)
        self._progress.note = reason
        return self._finish(result)

    def _finish(self, result: RunResult) -> ReconciliationProgress:
        self._progress.result = result
        self._progress.finished_at = workflow.now()
        self._set(result.status)
        return self._progress

    async def _delegate(self, inp: ReconciliationInput) -> ReconciliationProgress:
        """A scheduled start reconciles yesterday under that day's own workflow id, so a day is
        reconciled by one id however it was started; if that run exists, this one does nothing."""
        day = day_to_reconcile_at(_due_time(), inp.timezone)
        wf_id = run_workflow_id(day)
        self._progress = ReconciliationProgress(day=day, status="delegated", delegated_to=wf_id,
                                                started_at=workflow.now())
        self._set("delegated")
        try:
            handle = await workflow.start_child_workflow(
                ReconciliationWorkflow.run, inp.model_copy(update={"day": day, "attempt": 1}), id=wf_id,
                id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE_FAILED_ONLY,
                parent_close_policy=ParentClosePolicy.ABANDON)
        except WorkflowAlreadyStartedError:
            self._progress.status, self._progress.note = "already_run", f"{wf_id} was started already"
            self._progress.finished_at = workflow.now()
            return self._progress
        result = await handle
        result.delegated_to = wf_id
        return result

    def _set(self, status: str) -> None:
        self._progress.status = status
        workflow.upsert_search_attributes([BUSINESS_STATUS.value_set(f"reconciliation_{status}")])

    @workflow.query
    def progress(self) -> ReconciliationProgress | None:
        return self._progress


__all__ = ["ReconciliationWorkflow"]
