"""RevivalWorkflow (`revival-{promoter_id}-{n}`): a paused or lapsed promoter comes back.

    record the revival → until the window (settings.revival_window) closes:
      completed attributed orders ≥ settings.revival_target_orders → revived
      or support approves (update, validated) → revived
    → window closed without either → expired (nothing earned is taken)

Never a fee, never a purchase: only sales to others count, or a person's judgement.
"""

from __future__ import annotations


from temporalio import workflow
from temporalio.exceptions import ApplicationError, FailureError

from domain.search_attributes import BUSINESS_STATUS, PROMOTER_ID
from workflows.options import DB_STEP

with workflow.unsafe.imports_passed_through():
    from activities.promoters import PromoterActivities
    from domain.assessment import (
        RevivalApproval,
        RevivalInput,
        RevivalOutcome,
        RevivalProgress,
        SalesWindow,
        time_left_text,
    )
    from workflows.promoter_lifecycle import PromoterLifecycleWorkflow
    from workflows.promoter_lifecycle import workflow_id as lifecycle_id



def workflow_id(promoter_id: int, n: int) -> str:
    return f"revival-{promoter_id}-{n}"


@workflow.defn(name="RevivalWorkflow")
class RevivalWorkflow:
    def __init__(self) -> None:
        self._progress: RevivalProgress | None = None
        self._approval: RevivalApproval | None = None
        self._recount = False

    @workflow.run
    async def run(self, inp: RevivalInput) -> RevivalProgress:
        progress = await self._run(inp)
        await workflow.wait_condition(workflow.all_handlers_finished)
        return progress

    async def _run(self, inp: RevivalInput) -> RevivalProgress:
        t = inp.timings
        start = workflow.now()
        deadline = start + t.window
        self._progress = RevivalProgress(promoter_id=inp.promoter_id, n=inp.n, status="open",
                                         started_at=start, deadline=deadline, target_orders=t.target_orders)
        workflow.upsert_search_attributes([PROMOTER_ID.value_set(str(inp.promoter_id))])
        self._set_status("open")
        if not await workflow.execute_activity_method(
                PromoterActivities.open_revival, args=[inp, start, deadline], **DB_STEP):
            return await self._finish(inp, "expired", "promoter no longer exists")
        while True:
            completed = await workflow.execute_activity_method(
                PromoterActivities.count_sales,
                SalesWindow(promoter_id=inp.promoter_id, start=start, end=deadline), **DB_STEP)
            now = workflow.now()
            self._progress.completed_orders = completed
            self._progress.text = (f"{min(completed, t.target_orders)} of {t.target_orders} orders, "
                                   f"{time_left_text(deadline - now)}")
            if self._approval is not None:
                return await self._finish(inp, "revived", f"approved by support: {self._approval.note}",
                                          self._approval.support_user_id)
            if completed >= t.target_orders:
                return await self._finish(inp, "revived", f"{completed} completed orders within the window")
            if now >= deadline:
                return await self._finish(inp, "expired", f"{completed} of {t.target_orders} orders in the window")
            try:
                await workflow.wait_condition(lambda: self._approval is not None or self._recount,
                                              timeout=min(t.refresh_every, deadline - now),
                                              timeout_summary="refresh sales count")
            except TimeoutError:
                pass
            self._recount = False

    async def _finish(self, inp: RevivalInput, status: str, how: str,
                      approved_by: int | None = None) -> RevivalProgress:
        await workflow.execute_activity_method(
            PromoterActivities.resolve_revival,
            RevivalOutcome(promoter_id=inp.promoter_id, n=inp.n, status=status,
                           completed_orders=self._progress.completed_orders, how=how,
                           approved_by_user_id=approved_by), **DB_STEP)
        self._progress.how = how
        self._set_status(status)
        if status == "revived":
            try:
                await workflow.get_external_workflow_handle(lifecycle_id(inp.promoter_id)).signal(
                    PromoterLifecycleWorkflow.revived)
            except FailureError:
                workflow.logger.warning("lifecycle of promoter %s not running", inp.promoter_id)
        return self._progress

    def _set_status(self, status: str) -> None:
        self._progress.status = status
        workflow.upsert_search_attributes([BUSINESS_STATUS.value_set(f"revival_{status}")])

    @workflow.update
    def approve(self, approval: RevivalApproval) -> RevivalProgress:
        self._approval = approval
        return self._progress

    @approve.validator
    def _validate_approve(self, approval: RevivalApproval) -> None:
        if self._progress is None or self._progress.status != "open":
            status = self._progress.status if self._progress else "starting"
            raise ApplicationError(f"revival is {status}, not open", type="REVIVAL_NOT_OPEN")
        if self._approval is not None:
            raise ApplicationError("revival already approved", type="ALREADY_APPROVED")
        if not approval.note.strip():
            raise ApplicationError("say why the revival is approved", type="NOTE_REQUIRED")

    @workflow.signal
    def sales_changed(self) -> None:
        self._recount = True

    @workflow.query
    def progress(self) -> RevivalProgress | None:
        return self._progress
