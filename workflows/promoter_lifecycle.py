"""PromoterLifecycleWorkflow (`promoter-{id}`): one assessment cycle per run.

    status? (left → end; lapsed → wait for a revival)
    → cycle of settings.assessment_cycle: refresh the sales count now and then,
      remind a few days before the end if the target is not met yet
    → assess: completed attributed orders ≥ target → active; else paused; twice in a row → lapsed
    → continue-as-new with the next cycle

Sales, never head-count. A failed cycle pauses NEW commission only; nothing earned is taken.
"""

from __future__ import annotations


from temporalio import workflow

from domain.search_attributes import PROMOTER_ID, BUSINESS_STATUS
from workflows.options import DB_STEP

with workflow.unsafe.imports_passed_through():
    from activities.promoters import PromoterActivities
    from domain.assessment import (
        AssessCycleInput,
        CycleProgress,
        LifecycleInput,
        SalesWindow,
        progress_text,
    )
    from domain.promoters import PromoterStatus




def workflow_id(promoter_id: int) -> str:
    return f"promoter-{promoter_id}"


@workflow.defn(name="PromoterLifecycleWorkflow")
class PromoterLifecycleWorkflow:
    def __init__(self) -> None:
        self._progress: CycleProgress | None = None
        self._revived = False
        self._leaving = False
        self._recount = False

    @workflow.run
    async def run(self, inp: LifecycleInput) -> CycleProgress:
        progress = await self._run(inp)
        await workflow.wait_condition(workflow.all_handlers_finished)
        return progress

    async def _run(self, inp: LifecycleInput) -> CycleProgress:
        t = inp.timings
        status = PromoterStatus(await workflow.execute_activity_method(
            PromoterActivities.promoter_status, inp.promoter_id, **DB_STEP))
        self._progress = CycleProgress(promoter_id=inp.promoter_id, cycle_no=inp.cycle_no, status=status,
                                       target_orders=t.target_orders, failed_in_row=inp.failed_in_row)
        workflow.upsert_search_attributes([PROMOTER_ID.value_set(str(inp.promoter_id))])
        self._set_status(status)
        if status == PromoterStatus.LEFT:
            return self._progress
        if status == PromoterStatus.LAPSED:
            # Position kept; no cycles run until a revival brings the promoter back.
            self._progress.text = "lapsed: apply for revival to start a new cycle"
            await workflow.wait_condition(lambda: self._revived or self._leaving)
            if self._leaving:
                return await self._leave(inp.promoter_id)
            await self._continue_as_new(self._next(inp, failed_in_row=0))

        start = workflow.now()
        end = start + t.cycle
        self._progress.cycle_started_at, self._progress.cycle_ends_at = start, end
        remind_at = end - t.reminder_before if t.reminder_before < t.cycle else None
        reminded = False
        while True:
            await self._count(inp.promoter_id, start, end)
            now = workflow.now()
            if remind_at is not None and not reminded and now >= remind_at and now < end:
                reminded = True
                if self._progress.completed_orders < t.target_orders:
                    await workflow.execute_activity_method(
                        PromoterActivities.remind,
                        args=[inp.promoter_id, inp.cycle_no, f"assessment: {self._progress.text}"],
                        **DB_STEP)
            if now >= end:
                break
            wake = min(now + t.refresh_every, end)
            if remind_at is not None and not reminded and now < remind_at:
                wake = min(wake, remind_at)
            try:
                await workflow.wait_condition(lambda: self._revived or self._leaving or self._recount,
                                              timeout=wake - now, timeout_summary="refresh sales count")
            except TimeoutError:
                pass
            if self._leaving:
                return await self._leave(inp.promoter_id)
            if self._revived:  # revived mid-cycle: a fresh cycle starts now
                await self._continue_as_new(self._next(inp, failed_in_row=0))
            self._recount = False

        result = await workflow.execute_activity_method(
            PromoterActivities.assess_cycle,
            AssessCycleInput(promoter_id=inp.promoter_id, cycle_no=inp.cycle_no, started_at=start,
                             ends_at=end, target_orders=t.target_orders, failed_in_row=inp.failed_in_row),
            **DB_STEP)
        self._progress.completed_orders = result.completed_orders
        self._progress.failed_in_row = result.failed_in_row
        self._set_status(result.status)
        if result.status == PromoterStatus.LEFT:
            return self._progress
        await self._continue_as_new(self._next(inp, failed_in_row=result.failed_in_row))

    @staticmethod
    async def _continue_as_new(next_inp: LifecycleInput) -> None:
        await workflow.wait_condition(workflow.all_handlers_finished)
        workflow.continue_as_new(next_inp)

    async def _count(self, promoter_id: int, start, end) -> None:
        completed = await workflow.execute_activity_method(
            PromoterActivities.count_sales, SalesWindow(promoter_id=promoter_id, start=start, end=end),
            **DB_STEP)
        now = workflow.now()
        self._progress.completed_orders = completed
        self._progress.as_of = now
        self._progress.text = progress_text(completed, self._progress.target_orders, end - now)

    async def _leave(self, promoter_id: int) -> CycleProgress:
        await workflow.execute_activity_method(PromoterActivities.mark_left, promoter_id, **DB_STEP)
        self._set_status(PromoterStatus.LEFT)
        return self._progress

    @staticmethod
    def _next(inp: LifecycleInput, *, failed_in_row: int) -> LifecycleInput:
        return LifecycleInput(promoter_id=inp.promoter_id, timings=inp.timings,
                              cycle_no=inp.cycle_no + 1, failed_in_row=failed_in_row)

    def _set_status(self, status: PromoterStatus) -> None:
        self._progress.status = status
        workflow.upsert_search_attributes([BUSINESS_STATUS.value_set(status.value)])

    # --- what the outside world sends ----------------------------------------------------
    @workflow.signal
    def revived(self) -> None:
        """A revival succeeded (sales or support approval): start a fresh cycle."""
        self._revived = True

    @workflow.signal
    def sales_changed(self) -> None:
        """An attributed order completed: refresh the count now rather than at the next tick."""
        self._recount = True

    @workflow.signal
    def leave(self) -> None:
        self._leaving = True

    @workflow.query
    def progress(self) -> CycleProgress | None:
        """e.g. "2 of 3 orders, 9 days left"."""
        p = self._progress
        if p is not None and p.cycle_ends_at is not None and p.status != PromoterStatus.LEFT:
            return p.model_copy(update={"text": progress_text(
                p.completed_orders, p.target_orders, p.cycle_ends_at - workflow.now())})
        return p
