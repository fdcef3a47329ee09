"""ShopOrderWorkflow (`shop-order-{shop order id}`): what the WeChat Channels shop tells us about
one of its orders, turned into our processes.

    every event (push or pull, `shop_event` signal-with-start) → read the shop's order
      paid, not ours yet → our order `CH{id}`: OrderWorkflow started with the shop's payment
      confirmed in the shop → the order workflow is told (`shop_receipt_confirmed`)
    → each after-sale named → read it: a refund `CA{after-sale id}` opened and its RefundWorkflow
      started, or the running one told the shop's status (`shop_aftersale_status`)
    → no event for `linger`: the run ends (the next event starts a new one)

A push only says "order X changed"; the shop's API says what changed, so a lost push (the pull
finds the change), a repeated one or a late one converge on the same state. Our order and refund
workflows are started once ever per business key (REJECT_DUPLICATE) and abandoned by this one.
"""

from __future__ import annotations

from temporalio import workflow
from temporalio.common import SearchAttributePair, TypedSearchAttributes, WorkflowIDReusePolicy
from temporalio.exceptions import ActivityError, ApplicationError, WorkflowAlreadyStartedError
from temporalio.workflow import ParentClosePolicy

from domain.search_attributes import BUSINESS_STATUS, ORDER_NO
from workflows.options import DB_STEP, PARTNER_CALL
from workflows.order import OrderWorkflow
from workflows.order import workflow_id as order_workflow_id
from workflows.refund import RefundWorkflow
from workflows.refund import workflow_id as refund_workflow_id

with workflow.unsafe.imports_passed_through():
    from activities.channels_inbound import ChannelsInboundActivities
    from activities.refunds import RefundActivities
    from domain.channels_inbound import (
        SHOP_COMPLETED,
        ShopEvent,
        ShopOrderInput,
        ShopOrderProgress,
        ShopOrderState,
        shop_order_no,
        shop_payment_notice,
        shop_workflow_id,
    )
    from domain.order_process import OrderWorkflowInput
    from domain.order_status import OrderStatus

EVENTS_PER_RUN = 200  # then the run continues as new with what is still pending
RECEIVABLE = (OrderStatus.PAID, OrderStatus.SHIPPED, OrderStatus.DELIVERED)


def workflow_id(shop_order_id: str) -> str:
    return shop_workflow_id(shop_order_id)


@workflow.defn(name="ShopOrderWorkflow")
class ShopOrderWorkflow:
    def __init__(self) -> None:
        self._pending: list[ShopEvent] = []
        self._progress: ShopOrderProgress | None = None
        self._confirmed_told = False

    @workflow.run
    async def run(self, inp: ShopOrderInput) -> ShopOrderProgress:
        self._progress = ShopOrderProgress(shop_order_id=inp.shop_order_id)
        self._pending = [*inp.events, *self._pending]
        handled = 0
        while True:
            try:
                await workflow.wait_condition(lambda: bool(self._pending), timeout=inp.linger,
                                              timeout_summary="more shop events")
            except TimeoutError:
                break
            batch, self._pending = self._pending, []
            handled += len(batch)
            self._progress.events += len(batch)
            await self._reconcile_order(inp)
            for after_sale_id in sorted({e.after_sale_order_id for e in batch if e.after_sale_order_id}):
                await self._reconcile_aftersale(after_sale_id, inp)
            if handled >= EVENTS_PER_RUN or workflow.info().is_continue_as_new_suggested():
                await workflow.wait_condition(workflow.all_handlers_finished)
                workflow.continue_as_new(inp.model_copy(update={"events": self._pending}))
        await workflow.wait_condition(workflow.all_handlers_finished)
        return self._progress

    async def _reconcile_order(self, inp: ShopOrderInput) -> None:
        state: ShopOrderState = await workflow.execute_activity_method(
            ChannelsInboundActivities.read_shop_order, inp.shop_order_id, **PARTNER_CALL)
        self._progress.shop_status = state.status
        if state.paid and state.our_status is None:
            await self._import(state, inp)
        elif state.status == SHOP_COMPLETED and state.our_status in RECEIVABLE and not self._confirmed_told:
            # the buyer confirmed receipt in the shop
            self._confirmed_told = await self._signal(order_workflow_id(shop_order_no(state.shop_order_id)),
                                                      "shop_receipt_confirmed")

    async def _import(self, state: ShopOrderState, inp: ShopOrderInput) -> None:
        try:
            order = await workflow.execute_activity_method(
                ChannelsInboundActivities.import_shop_order, state, **DB_STEP)
        except ActivityError as err:  # e.g. a shop SKU that is not ours: nothing of ours to run
            self._progress.failure = _code(err)
            workflow.logger.warning("shop order %s not imported: %s", state.shop_order_id, self._progress.failure)
            return
        self._progress.order_no = order.order_no
        try:
            await workflow.start_child_workflow(
                OrderWorkflow.run, OrderWorkflowInput(order=order, timings=inp.order_timings,
                                                      shop_payment=shop_payment_notice(state)),
                id=order_workflow_id(order.order_no), parent_close_policy=ParentClosePolicy.ABANDON,
                id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
                search_attributes=TypedSearchAttributes([SearchAttributePair(ORDER_NO, order.order_no),
                                                         SearchAttributePair(BUSINESS_STATUS, "PAID")]))
        except WorkflowAlreadyStartedError:
            pass  # started by an earlier event

    async def _reconcile_aftersale(self, after_sale_order_id: str, inp: ShopOrderInput) -> None:
        try:
            step = await workflow.execute_activity_method(
                ChannelsInboundActivities.shop_refund_step, args=[after_sale_order_id, inp.order_timings.refunds],
                **PARTNER_CALL)
        except ActivityError as err:  # e.g. refused by our refund rules: the shop's after-sale stays open there
            self._progress.failure = _code(err)
            workflow.logger.warning("after-sale %s not taken: %s", after_sale_order_id, self._progress.failure)
            return
        if step.refund_no not in self._progress.refunds:
            self._progress.refunds.append(step.refund_no)
        if step.start and step.refund_input is not None:
            try:
                await workflow.start_child_workflow(
                    RefundWorkflow.run, step.refund_input, id=refund_workflow_id(step.refund_no),
                    parent_close_policy=ParentClosePolicy.ABANDON,
                    id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
                    search_attributes=TypedSearchAttributes([
                        SearchAttributePair(ORDER_NO, step.refund_input.order_no),
                        SearchAttributePair(BUSINESS_STATUS, "REFUND_REQUESTED")]))
            except WorkflowAlreadyStartedError:
                await self._signal(refund_workflow_id(step.refund_no), "shop_aftersale_status", step.status)
            await workflow.execute_activity_method(
                RefundActivities.mark_refunds_started, [step.refund_no], **DB_STEP)
        else:
            await self._signal(refund_workflow_id(step.refund_no), "shop_aftersale_status", step.status)

    async def _signal(self, target: str, signal: str, *args: object) -> bool:
        try:
            await workflow.get_external_workflow_handle(target).signal(signal, args=list(args))
            return True
        except Exception:  # noqa: BLE001 - that workflow has ended: nothing left to tell
            workflow.logger.info("%s not running; %s not delivered", target, signal)
            return False

    @workflow.signal
    def shop_event(self, event: ShopEvent) -> None:
        self._pending.append(event)

    @workflow.query
    def progress(self) -> ShopOrderProgress | None:
        return self._progress


def _code(err: ActivityError) -> str:
    cause = err.cause
    return cause.type if isinstance(cause, ApplicationError) and cause.type else type(cause).__name__
