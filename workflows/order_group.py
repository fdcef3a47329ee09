"""The group-buy path of an order (拼团): paid, it waits for its group's decision before anything
is fulfilled or earned; a group that fails refunds it in full."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.workflow import ParentClosePolicy

from workflows.group_buy import GroupBuyWorkflow
from workflows.options import DB_STEP
from workflows.order_state import OrderState

with workflow.unsafe.imports_passed_through():
    from activities.group_buy import GroupActivities
    from activities.orders import OrderActivities
    from domain.group_buy import GroupBuyInput, GroupDecision, GroupStatus, group_refund_no, workflow_id
    from domain.order_process import OrderTimings
    from domain.order_status import OrderStatus
    from domain.refunds import RefundKind

# after the group's time limit, how long an order waits for its decision before asking the database
DECISION_GRACE = timedelta(minutes=5)


class GroupPath(OrderState):
    _group_decision: GroupDecision | None = None

    async def _join_group(self, order_no: str, timings: OrderTimings) -> bool:
        """True once the group formed (commission booked, the order goes on to fulfilment);
        False when the order was refunded (the group failed, or the buyer cancelled meanwhile)."""
        joined = await workflow.execute_activity_method(
            GroupActivities.member_paid, args=[order_no, workflow.now()], **self._paid_step())
        self._progress.group_id = joined.group_id
        status = joined.status
        if status == GroupStatus.FORMING:
            if joined.opener:
                try:
                    await workflow.start_child_workflow(
                        GroupBuyWorkflow.run, GroupBuyInput(group_id=joined.group_id, deadline=joined.deadline),
                        id=workflow_id(joined.group_id), parent_close_policy=ParentClosePolicy.ABANDON)
                except WorkflowAlreadyStartedError:
                    pass
            else:
                try:
                    await workflow.get_external_workflow_handle(workflow_id(joined.group_id)).signal(
                        "member_paid", order_no)
                except Exception:  # noqa: BLE001 - decided already: the database answers below
                    workflow.logger.info("group %s has ended; asking for its decision", joined.group_id)
            self._set_status(OrderStatus.GROUPING)
            await self._send_buyer_messages()
        while status == GroupStatus.FORMING and not self._refunded:
            wait = max(joined.deadline - workflow.now(), timedelta(0)) + DECISION_GRACE
            if await self._wait_for(lambda: self._group_decision is not None or self._refunded, wait,
                                    "group decision"):
                if self._group_decision is not None:
                    status = self._group_decision.status
            else:
                status = await workflow.execute_activity_method(
                    GroupActivities.group_status, joined.group_id, **DB_STEP)
        await workflow.wait_condition(lambda: not self._open_refunds)  # a refund under way ends first
        if self._refunded:
            return False
        if status == GroupStatus.FORMED:
            await workflow.execute_activity_method(
                OrderActivities.book_group_commission, order_no, **self._paid_step())
            return True
        await self._refund_everything(order_no, group_refund_no(order_no), RefundKind.GROUP_FAILED,
                                      "the group did not fill in time", timings)
        return False

    @workflow.signal
    def group_decided(self, decision: GroupDecision) -> None:
        self._group_decision = decision
