"""PayoutWorkflow: starts withdrawal workflows nobody's request started.

* `payouts-{month}`: automatic payouts after the month's commission statements (started by
  CommissionSettlementWorkflow when it ends);
* `withdrawals-sweep` (a schedule): withdrawals whose workflow never started.

Each withdrawal runs as its own `withdrawal-{id}` workflow, abandoned by this one when it ends
(it may wait days for the promoter's confirmation). Temporal refuses a second workflow with an
id used before, so a repeated page, a retried run or the sweep meeting a live one starts nothing
twice.
"""

from __future__ import annotations

from temporalio import workflow
from temporalio.common import WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.workflow import ParentClosePolicy

from workflows.options import DB_STEP

with workflow.unsafe.imports_passed_through():
    from activities.payouts import PayoutActivities
    from domain.withdrawals import PayoutPage, PayoutRunInput, PayoutRunProgress
    from workflows.withdrawal import WithdrawalWorkflow
    from workflows.withdrawal import workflow_id as withdrawal_workflow_id

SWEEP_WORKFLOW_ID = "withdrawals-sweep"


def payouts_workflow_id(month: str) -> str:
    return f"payouts-{month}"


@workflow.defn(name="PayoutWorkflow")
class PayoutWorkflow:
    def __init__(self) -> None:
        self._progress = PayoutRunProgress()

    @workflow.run
    async def run(self, inp: PayoutRunInput) -> PayoutRunProgress:
        after = 0
        while True:
            if inp.month is not None:
                page: PayoutPage = await workflow.execute_activity_method(
                    PayoutActivities.open_auto_payouts, args=[inp.month, after, inp.page_size], **DB_STEP)
            else:
                page = await workflow.execute_activity_method(
                    PayoutActivities.stranded_withdrawals,
                    args=[inp.stranded_after.total_seconds(), after, inp.page_size], **DB_STEP)
            self._progress.skipped += page.skipped
            for w in page.withdrawals:
                try:
                    await workflow.start_child_workflow(
                        WithdrawalWorkflow.run, w, id=withdrawal_workflow_id(w.withdrawal_id),
                        parent_close_policy=ParentClosePolicy.ABANDON,
                        id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE)
                    self._progress.started += 1
                except WorkflowAlreadyStartedError:
                    self._progress.already_running += 1
            if page.next_after is None:
                break
            after = page.next_after
        self._progress.done = True
        return self._progress

    @workflow.query
    def progress(self) -> PayoutRunProgress:
        return self._progress
