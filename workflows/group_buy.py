"""GroupBuyWorkflow (`group-{id}`): one 拼团 group from its opener's payment to its decision.

    started by the opener's order once it is paid (the group's time limit starts then)
    → each member's paid order signals `member_paid`: formed as soon as every place is paid
    → time up: failed (or formed with the platform taking one missing place, GROUP_PLATFORM_FILL)
    → each paid member's order is told (`group_decided`): formed → fulfilled and commission
      booked; failed → refunded in full (OrderWorkflow's group path, workflows/order_group.py)

The decision is taken in the database under the group's row lock (activities/group_buy.py), so
a payment counted after it sees it there instead of waiting for a signal that will not come."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow

from domain.search_attributes import BUSINESS_STATUS
from workflows.options import DB_STEP

with workflow.unsafe.imports_passed_through():
    from activities.group_buy import GroupActivities
    from domain.group_buy import GroupBuyInput, GroupDecision


@workflow.defn(name="GroupBuyWorkflow")
class GroupBuyWorkflow:
    def __init__(self) -> None:
        self._paid_signals = 0
        self._decision: GroupDecision | None = None

    @workflow.run
    async def run(self, inp: GroupBuyInput) -> GroupDecision:
        workflow.upsert_search_attributes([BUSINESS_STATUS.value_set("GROUP_FORMING")])
        counted = -1  # decide once at the start: members may have paid before this run began
        while True:
            if counted == self._paid_signals:
                left = inp.deadline - workflow.now()
                if left > timedelta(0):
                    try:
                        await workflow.wait_condition(lambda: self._paid_signals != counted, timeout=left,
                                                      timeout_summary="group time limit")
                    except TimeoutError:
                        pass
            counted = self._paid_signals
            decision = await workflow.execute_activity_method(
                GroupActivities.decide_group, args=[inp.group_id, workflow.now() >= inp.deadline], **DB_STEP)
            if decision is not None:
                break
        self._decision = decision
        workflow.upsert_search_attributes([BUSINESS_STATUS.value_set(f"GROUP_{decision.status.upper()}")])
        for order_no in decision.members:
            handle = workflow.get_external_workflow_handle(f"order-{order_no}")
            try:
                await handle.signal("group_decided", decision)
            except Exception:  # noqa: BLE001 - that order's workflow ended (refunded meanwhile)
                workflow.logger.info("order %s not running; group decision not delivered", order_no)
        await workflow.wait_condition(workflow.all_handlers_finished)
        return decision

    @workflow.signal
    def member_paid(self, order_no: str) -> None:
        self._paid_signals += 1

    @workflow.query
    def decision(self) -> GroupDecision | None:
        return self._decision
