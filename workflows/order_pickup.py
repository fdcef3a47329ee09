"""The pickup path of an order (O2O 核销): a code is issued, outlet staff scan it, and goods left
unclaimed when it expires are refunded."""

from __future__ import annotations

from temporalio import workflow

from workflows.order_state import OrderState

with workflow.unsafe.imports_passed_through():
    from activities.pickup import PickupActivities
    from domain.order_process import OrderTimings
    from domain.refunds import RefundKind, pickup_refund_no


class PickupPath(OrderState):
    async def _issue_pickup_code(self, order_no: str, timings: OrderTimings) -> None:
        self._pickup_expires = workflow.now() + timings.pickup_code_valid
        self._pickup_outlet = await workflow.execute_activity_method(
            PickupActivities.issue_pickup_code, args=[order_no, self._pickup_expires], **self._paid_step())
        self._progress.pickup_expires_at = self._pickup_expires
    async def _wait_for_pickup(self, order_no: str, timings: OrderTimings) -> None:
        """Wait for the outlet's scan until the code expires; unclaimed goods are refunded."""
        if await self._wait_for(lambda: self._pickup_scan is not None or self._refunded,
                             timings.pickup_code_valid, "pickup code valid"):
            if self._pickup_scan is not None:
                await workflow.execute_activity_method(
                    PickupActivities.record_pickup, args=[order_no, self._pickup_scan.staff_user_id], **self._paid_step())
            return
        await workflow.wait_condition(lambda: not self._open_refunds)
        if self._refunded:
            return
        await self._refund_everything(order_no, pickup_refund_no(order_no), RefundKind.PICKUP_EXPIRED,
                                      "pickup code expired unclaimed", timings)
