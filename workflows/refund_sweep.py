"""RefundSweepWorkflow (`refunds-sweep`, run by the schedule of that name): starts the
RefundWorkflow of any buyer's refund saved by the API whose workflow never started (the API
died between committing the refund and starting it), so a refund is never saved but stuck.

Each refund runs as its own `refund-{refund_no}` workflow, abandoned by this one. Temporal
refuses a second workflow with an id used before, so the sweep meeting a live one starts
nothing twice; either way the refund is marked as started.
"""

from __future__ import annotations

from temporalio import workflow
from temporalio.common import SearchAttributePair, TypedSearchAttributes, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.workflow import ParentClosePolicy

from domain.search_attributes import BUSINESS_STATUS, ORDER_NO
from workflows.options import DB_STEP

with workflow.unsafe.imports_passed_through():
    from activities.refunds import RefundActivities
    from domain.refunds import RefundSweepInput, RefundSweepProgress, StrandedRefunds
    from workflows.refund import RefundWorkflow
    from workflows.refund import workflow_id as refund_workflow_id

SWEEP_WORKFLOW_ID = "refunds-sweep"


@workflow.defn(name="RefundSweepWorkflow")
class RefundSweepWorkflow:
    def __init__(self) -> None:
        self._progress = RefundSweepProgress()

    @workflow.run
    async def run(self, inp: RefundSweepInput) -> RefundSweepProgress:
        after = ""
        while True:
            page: StrandedRefunds = await workflow.execute_activity_method(
                RefundActivities.stranded_refunds,
                args=[inp.stranded_after.total_seconds(), after, inp.page_size, inp.timings], **DB_STEP)
            for refund in page.refunds:
                try:
                    await workflow.start_child_workflow(
                        RefundWorkflow.run, refund, id=refund_workflow_id(refund.refund_no),
                        parent_close_policy=ParentClosePolicy.ABANDON,
                        id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
                        search_attributes=TypedSearchAttributes([
                            SearchAttributePair(ORDER_NO, refund.order_no),
                            SearchAttributePair(BUSINESS_STATUS, "REFUND_REQUESTED")]))
                    self._progress.started += 1
                except WorkflowAlreadyStartedError:
                    self._progress.already_running += 1
            await workflow.execute_activity_method(
                RefundActivities.mark_refunds_started, [r.refund_no for r in page.refunds], **DB_STEP)
            if page.next_after is None:
                break
            after = page.next_after
        self._progress.done = True
        return self._progress

    @workflow.query
    def progress(self) -> RefundSweepProgress:
        return self._progress
