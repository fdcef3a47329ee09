"""OrderWorkflow (`order-{order_no}`): one order from placement to completed commission.

    place (reserve stock) → WeChat Pay JSAPI order → wait for the payment notice
      (timeout: ask WeChat Pay, then close and release stock)
    → record payment + pending commission → each supplier ships → tracking until delivered
    → buyer confirms receipt or auto-confirm → refund window → completed: commission available
"""

from __future__ import annotations

from datetime import timedelta

from pydantic import BaseModel
from temporalio import workflow
from temporalio.common import SearchAttributeKey
from temporalio.exceptions import ActivityError, ApplicationError

from chuchuang.workflows.options import DB_STEP, PARTNER_CALL

with workflow.unsafe.imports_passed_through():
    from chuchuang.activities.logistics import LogisticsActivities
    from chuchuang.activities.orders import OrderActivities
    from chuchuang.activities.payments import PaymentActivities
    from chuchuang.domain.order_status import OrderStatus
    from chuchuang.domain.orders import (
        OrderProgress,
        PaymentNotice,
        PlaceOrderInput,
        ShipmentInput,
        TrackingUpdate,
    )

ORDER_NO = SearchAttributeKey.for_keyword("OrderNo")
PROMOTER_ID = SearchAttributeKey.for_keyword("PromoterId")
SUPPLIER_ID = SearchAttributeKey.for_keyword_list("SupplierId")
BUSINESS_STATUS = SearchAttributeKey.for_keyword("BusinessStatus")



class OrderTimings(BaseModel):
    payment_timeout: timedelta
    auto_confirm_after: timedelta
    refund_window: timedelta


class OrderWorkflowInput(BaseModel):
    order: PlaceOrderInput
    timings: OrderTimings


def workflow_id(order_no: str) -> str:
    return f"order-{order_no}"


@workflow.defn(name="OrderWorkflow")
class OrderWorkflow:
    def __init__(self) -> None:
        self._progress: OrderProgress | None = None
        self._payment: PaymentNotice | None = None
        self._suppliers: list[int] = []
        self._shipments: list[ShipmentInput] = []
        self._ship_requested: set[int] = set()
        self._tracking: list[TrackingUpdate] = []
        self._waybills_delivered: set[str] = set()
        self._receipt_confirmed = False

    # --- the process ---------------------------------------------------------------------
    @workflow.run
    async def run(self, inp: OrderWorkflowInput) -> OrderProgress:
        order_no = inp.order.order_no
        self._progress = OrderProgress(order_no=order_no, status=OrderStatus.PENDING_PAYMENT)
        self._set_status(OrderStatus.PENDING_PAYMENT)
        try:
            placed = await workflow.execute_activity_method(
                OrderActivities.place_order, inp.order, **DB_STEP)
        except ActivityError as err:
            return self._fail(err)
        self._suppliers = placed.supplier_ids
        self._progress.total_fen = placed.total_fen
        workflow.upsert_search_attributes([SUPPLIER_ID.value_set([str(s) for s in placed.supplier_ids])])
        try:
            self._progress.prepay = await workflow.execute_activity_method(
                PaymentActivities.create_payment, placed, **PARTNER_CALL)
        except ActivityError as err:
            await self._cancel_unpaid(order_no, "WeChat Pay refused the order")
            return self._fail(err)

        if not await self._wait_for_payment(order_no, inp.timings.payment_timeout):
            return self._progress
        await workflow.execute_activity_method(OrderActivities.record_payment, self._payment, **DB_STEP)
        self._set_status(OrderStatus.PAID)

        await self._fulfil(order_no)
        await self._auto_confirm(inp.timings.auto_confirm_after)
        how = "buyer confirmed receipt" if self._receipt_confirmed else "auto-confirmed"
        await workflow.execute_activity_method(OrderActivities.mark_received, args=[order_no, how], **DB_STEP)
        self._set_status(OrderStatus.RECEIVED)

        await workflow.sleep(inp.timings.refund_window, summary="refund window")
        await workflow.execute_activity_method(OrderActivities.complete_order, order_no, **DB_STEP)
        self._set_status(OrderStatus.COMPLETED)
        return self._progress

    async def _wait_for_payment(self, order_no: str, timeout: timedelta) -> bool:
        try:
            await workflow.wait_condition(lambda: self._payment is not None, timeout=timeout)
            return True
        except TimeoutError:
            pass
        # The notice may have been lost: WeChat Pay's own record decides.
        notice = await workflow.execute_activity_method(
            PaymentActivities.query_payment, order_no, **PARTNER_CALL)
        if notice.trade_state == "SUCCESS":
            self._payment = notice
            return True
        await workflow.execute_activity_method(PaymentActivities.close_payment, order_no, **PARTNER_CALL)
        await self._cancel_unpaid(order_no, "payment timed out; WeChat Pay order closed")
        return False

    async def _cancel_unpaid(self, order_no: str, reason: str) -> None:
        await workflow.execute_activity_method(
            OrderActivities.cancel_unpaid, args=[order_no, reason], **DB_STEP)
        self._set_status(OrderStatus.CANCELLED)

    async def _fulfil(self, order_no: str) -> None:
        """Each supplier ships its part; tracking pushes arrive until every parcel is signed
        for. The buyer may confirm receipt at any point after shipping."""
        shipped: set[int] = set()
        while True:
            await workflow.wait_condition(
                lambda: bool(self._shipments or self._tracking) or self._delivered_or_confirmed(shipped))
            while self._shipments:
                shipment = self._shipments.pop(0)
                await workflow.execute_activity_method(
                    OrderActivities.record_shipment, args=[order_no, shipment], **DB_STEP)
                await workflow.execute_activity_method(
                    LogisticsActivities.subscribe_tracking, args=[shipment.carrier, shipment.waybill_no],
                    **PARTNER_CALL)
                shipped.add(shipment.supplier_id)
                self._progress.shipped_suppliers = sorted(shipped)
                if shipped == set(self._suppliers):
                    self._set_status(OrderStatus.SHIPPED)
            while self._tracking:
                update = self._tracking.pop(0)
                await workflow.execute_activity_method(
                    OrderActivities.record_tracking, args=[order_no, update], **DB_STEP)
                if update.delivered:
                    self._waybills_delivered.add(f"{update.carrier}:{update.waybill_no}")
            if self._delivered_or_confirmed(shipped):
                if self._all_delivered():
                    self._progress.delivered = True
                    self._set_status(OrderStatus.DELIVERED)
                return

    def _all_delivered(self) -> bool:
        return bool(self._suppliers) and len(self._waybills_delivered) >= len(self._suppliers)

    def _delivered_or_confirmed(self, shipped: set[int]) -> bool:
        if shipped != set(self._suppliers) or self._shipments or self._tracking:
            return False
        return self._receipt_confirmed or self._all_delivered()

    async def _auto_confirm(self, after: timedelta) -> None:
        try:
            await workflow.wait_condition(lambda: self._receipt_confirmed, timeout=after)
        except TimeoutError:
            pass

    # --- what the outside world sends ----------------------------------------------------
    @workflow.update
    async def payment_params(self) -> OrderProgress:
        """Answers once the WeChat Pay order exists (or placement failed): POST /orders waits
        on this instead of polling."""
        await workflow.wait_condition(
            lambda: self._progress is not None and (
                self._progress.prepay is not None or self._progress.failure is not None
                or self._progress.status != OrderStatus.PENDING_PAYMENT))
        return self._progress

    @workflow.signal
    def payment_notified(self, notice: PaymentNotice) -> None:
        if self._payment is None and notice.trade_state == "SUCCESS":
            self._payment = notice

    @workflow.update
    def ship(self, shipment: ShipmentInput) -> OrderProgress:
        self._ship_requested.add(shipment.supplier_id)
        self._shipments.append(shipment)
        return self._progress

    @ship.validator
    def _validate_ship(self, shipment: ShipmentInput) -> None:
        status = self._progress.status if self._progress else None
        if status not in (OrderStatus.PAID, OrderStatus.SHIPPED) or self._payment is None:
            raise ApplicationError(f"order is {status}, not awaiting shipment", type="NOT_SHIPPABLE")
        if shipment.supplier_id not in self._suppliers:
            raise ApplicationError("this supplier has nothing in the order", type="NOT_YOUR_ORDER")
        if shipment.supplier_id in self._ship_requested:
            raise ApplicationError("this supplier has already shipped", type="ALREADY_SHIPPED")

    @workflow.signal
    def tracking_updated(self, update: TrackingUpdate) -> None:
        self._tracking.append(update)

    @workflow.update
    def confirm_receipt(self) -> OrderProgress:
        self._receipt_confirmed = True
        return self._progress

    @confirm_receipt.validator
    def _validate_confirm(self) -> None:
        status = self._progress.status if self._progress else None
        if status not in (OrderStatus.SHIPPED, OrderStatus.DELIVERED):
            raise ApplicationError(f"order is {status}; receipt can be confirmed once shipped",
                                   type="NOT_RECEIVABLE")
        if self._receipt_confirmed:
            raise ApplicationError("receipt already confirmed", type="ALREADY_CONFIRMED")

    @workflow.query
    def progress(self) -> OrderProgress | None:
        return self._progress

    # --- bookkeeping ---------------------------------------------------------------------
    def _set_status(self, status: OrderStatus) -> None:
        self._progress.status = status
        self._progress.updated_at = workflow.now()
        workflow.upsert_search_attributes([BUSINESS_STATUS.value_set(status.value)])

    def _fail(self, err: ActivityError) -> OrderProgress:
        cause = err.cause
        self._progress.failure = cause.type if isinstance(cause, ApplicationError) else "FAILED"
        self._set_status(OrderStatus.CANCELLED)
        return self._progress
