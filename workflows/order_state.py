"""The order's state and bookkeeping that every path of OrderWorkflow shares: waiting with a
deadline, the status shown to the buyer and in Temporal UI (BusinessStatus), subscribe messages."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError

from domain.search_attributes import BUSINESS_STATUS
from workflows.options import DB_STEP, MESSAGE_SEND, paid_step
from workflows.refund import RefundWorkflow
from workflows.refund import workflow_id as refund_workflow_id

with workflow.unsafe.imports_passed_through():
    from activities.messages import MessageActivities
    from activities.refunds import RefundActivities
    from domain.refunds import RefundInput, RefundKind
    from domain.order_process import OrderTimings
    from domain.order_status import OrderStatus
    from domain.orders import OrderProgress, PaymentNotice, PickupScan, ShipmentInput, TrackingUpdate

MESSAGES_PATCH = "order-subscribe-messages"
VERIFY_PAYMENT_PATCH = "order-verify-payment"      # a payment signal is checked with WeChat Pay first
COMPENSATE_PATCH = "order-compensate-payment"      # a step after payment that fails gives the money back
SHIP_CLOCK_PATCH = "order-ship-clock"              # auto-confirm counts from the last shipment
SHIP_ANSWER_PATCH = "order-ship-answer"            # the ship update answers once the parcel is recorded
REFUND_WAIT_PATCH = "order-refund-wait"            # completion waits for a refund's signal, no timer loop
MESSAGES_LISTENER_PATCH = "order-messages-listener"  # the outbox's listener sends them, not the order


class OrderState:
    def __init__(self) -> None:
        self._progress: OrderProgress | None = None
        self._payment: PaymentNotice | None = None
        self._suppliers: set[int] = set()
        self._shipments: list[ShipmentInput] = []
        self._ship_requested: set[int] = set()
        self._waybills: set[str] = set()
        self._tracking: list[TrackingUpdate] = []
        self._waybills_delivered: set[str] = set()
        self._receipt_confirmed = False
        self._open_refunds: set[str] = set()
        self._refunded = False
        self._pickup_scan: PickupScan | None = None
        self._pickup_outlet: int | None = None
        self._pickup_expires: datetime | None = None
        self._balance_no: str | None = None
        self._balance: PaymentNotice | None = None
        self._balance_asked = False
        self._balance_failure: str | None = None
        self._channels = False
        # what made the buyer's current payment parameters, and when (they are made again
        # once WeChat Pay's prepay_id has expired: GET /orders/{no}/payment)
        self._prepay_source: tuple[str, object] | None = None
        self._prepay_at: datetime | None = None
        self._prepay_valid_for = timedelta(minutes=110)
        self._prepay_lock = asyncio.Lock()
        self._timings: OrderTimings | None = None
        self._confirm_by: datetime | None = None
        self._refund_signals = 0
        self._receipt_extended = False

    async def _wait_for(self, condition, timeout: timedelta | None, summary: str) -> bool:
        """Wait for `condition`; False when `timeout` passed first."""
        try:
            await workflow.wait_condition(condition, timeout=timeout, timeout_summary=summary)
            return True
        except TimeoutError:
            return False
    def _paid_step(self) -> dict:
        """Options of a database step taken while the order holds the buyer's money."""
        if self._timings is None:
            return DB_STEP
        return paid_step(self._timings.step_give_up_after)
    def _set_status(self, status: OrderStatus) -> None:
        if self._refunded:
            return
        self._progress.status = status
        self._publish_status()
    def _publish_status(self) -> None:
        """BusinessStatus: the order's state, or AFTER_SALE while a refund is open."""
        self._progress.updated_at = workflow.now()
        self._progress.open_refunds = sorted(self._open_refunds)
        shown = OrderStatus.AFTER_SALE if self._open_refunds and not self._refunded else self._progress.status
        workflow.upsert_search_attributes([BUSINESS_STATUS.value_set(shown.value)])
    def _cancel_failed(self, err: ActivityError) -> OrderProgress:
        cause = err.cause
        self._progress.failure = cause.type if isinstance(cause, ApplicationError) else "FAILED"
        self._set_status(OrderStatus.CANCELLED)
        return self._progress
    async def _refund_everything(self, order_no: str, refund_no: str, kind: RefundKind, reason: str,
                                 timings: OrderTimings) -> None:
        """A system refund of every unit not refunded yet (never reviewed), run as a child."""
        amount = await workflow.execute_activity_method(
            RefundActivities.open_system_refund, args=[refund_no, order_no, kind, reason], **DB_STEP)
        outcome = await workflow.execute_child_workflow(
            RefundWorkflow.run, RefundInput(
                refund_no=refund_no, order_no=order_no, kind=kind, amount_fen=amount,
                needs_return=False, supplier_ids=sorted(self._suppliers), timings=timings.refunds),
            id=refund_workflow_id(refund_no))
        self.refund_finished(outcome)

    async def _send_buyer_messages(self) -> None:
        """Orders from before the outbox's listener (MessageDrainWorkflow) send the outbox's
        subscribe messages themselves after each change; never blocks the order."""
        if workflow.patched(MESSAGES_LISTENER_PATCH) or not workflow.patched(MESSAGES_PATCH):
            return
        try:
            await workflow.execute_activity_method(MessageActivities.deliver_messages, **MESSAGE_SEND)
        except ActivityError:
            workflow.logger.warning("subscribe messages not sent now; the next drain sends them")


def error_is(err: ActivityError, code: str) -> bool:
    return isinstance(err.cause, ApplicationError) and err.cause.type == code
