"""OrderWorkflow (`order-{order_no}`): one order from placement to completed commission.

    place (reserve stock, apply coupon) → WeChat Pay JSAPI order → wait for the payment notice
      (timeout: ask WeChat Pay, then close and release stock; paid after all → refunded)
    → the payment signal confirmed with WeChat Pay (query) → record payment + pending commission
    → delivery: each supplier ships (late → alert) → tracking pushes, polling when they stop
        → buyer confirms receipt, or auto-confirm AUTO_CONFIRM_AFTER after the last parcel
          shipped (extendable once), whatever tracking says
      pickup: code issued → outlet staff scan it → picked up; unclaimed → expires → refunded
    → refund window (refunds still open hold it) → completed: commission available

Pre-sale orders (a SKU on pre-sale) pay twice: the deposit (`{order_no}D`) under the same
rules as any payment, then, once the balance window opens and the buyer was reminded, the
balance (`{order_no}B`, created on the buyer's request, with its own timeout); a balance not paid
by the end closes the order and refunds the deposit (domain/presale.py).

Group-buy orders (拼团, `group_id`) wait once paid for their group's decision (GroupBuyWorkflow
`group-{id}`, started by the opener's order): formed → commission booked, then fulfilled as any
other; failed → refunded in full (`RG{order_no}`), stock back.

Orders paid in the Channels shop (`CH{shop order id}`, started by ShopOrderWorkflow) come with
the shop's payment: no WeChat Pay order, the payment is recorded at once and the buyer's
confirmation of receipt in the shop arrives as a signal.

Refunds run in their own RefundWorkflow and tell this one when they open and end; an order
whose every unit was refunded ends REFUNDED. A step after payment that fails for good is
compensated: the buyer is refunded (`RC{order_no}`), so no run ends holding the money. Each state change the buyer follows is also sent
as a subscribe message (the notification outbox, activities/messages.py); orders from
the Channels shop have their shipments sent to the shop too.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError

from domain.search_attributes import SUPPLIER_ID
from workflows.options import DB_STEP, PARTNER_CALL
from workflows.order_delivery import DeliveryPath
from workflows.order_group import GroupPath
from workflows.order_payment import PREPAY_REFRESH_PATCH
from workflows.order_pickup import PickupPath
from workflows.order_presale import PresalePath
from workflows.order_state import COMPENSATE_PATCH, REFUND_WAIT_PATCH, SHIP_ANSWER_PATCH
from workflows.refund import RefundWorkflow
from workflows.refund import workflow_id as refund_workflow_id

with workflow.unsafe.imports_passed_through():
    from activities.orders import OrderActivities
    from activities.payments import PaymentActivities
    from activities.refunds import RefundActivities
    from domain.order_process import OrderTimings, OrderWorkflowInput
    from domain.order_status import OrderStatus
    from domain.orders import OrderProgress, PaymentNotice, PickupScan, ShipmentInput, TrackingUpdate
    from domain.refunds import RefundInput, RefundKind, RefundOutcome, RefundStatus, compensation_refund_no


def workflow_id(order_no: str) -> str:
    return f"order-{order_no}"


@workflow.defn(name="OrderWorkflow")
class OrderWorkflow(PresalePath, DeliveryPath, PickupPath, GroupPath):
    """State and bookkeeping: workflows/order_state.py; the paths: order_payment.py,
    order_presale.py, order_delivery.py, order_pickup.py, order_group.py."""

    # --- the process ---------------------------------------------------------------------
    @workflow.run
    async def run(self, inp: OrderWorkflowInput) -> OrderProgress:
        order_no, timings = inp.order.order_no, inp.timings
        self._timings = timings
        self._channels = inp.order.source == "channels" and bool(inp.order.channels_order_id)
        self._progress = OrderProgress(order_no=order_no, status=OrderStatus.PENDING_PAYMENT,
                                       fulfilment=inp.order.fulfilment)
        self._set_status(OrderStatus.PENDING_PAYMENT)
        try:
            placed = await workflow.execute_activity_method(
                OrderActivities.place_order, inp.order, **DB_STEP)
        except ActivityError as err:
            return self._cancel_failed(err)
        self._suppliers = set(placed.supplier_ids)
        self._progress.total_fen = placed.total_fen
        workflow.upsert_search_attributes([SUPPLIER_ID.value_set([str(s) for s in placed.supplier_ids])])
        try:
            if inp.shop_payment is not None:  # paid in the Channels shop: its settlement is the payment
                self._payment = inp.shop_payment
                await workflow.execute_activity_method(
                    OrderActivities.record_payment, self._payment, **self._paid_step())
            elif placed.presale is not None:
                if not await self._take_presale_payments(placed, timings):
                    return await self._end()
            else:
                try:
                    self._progress.prepay = await workflow.execute_activity_method(
                        PaymentActivities.create_payment, placed, **PARTNER_CALL)
                    self._prepay_made("order", placed, timings)
                except ActivityError as err:
                    await self._cancel_unpaid(order_no, "WeChat Pay refused the order")
                    return self._cancel_failed(err)

                if not await self._wait_for_payment(order_no, timings):
                    return await self._end()
                await workflow.execute_activity_method(
                    OrderActivities.record_payment, self._payment, **self._paid_step())
                if inp.order.group_id is not None and not await self._join_group(order_no, timings):
                    return await self._end()
            await self._fulfil(inp, order_no, timings)
        except ActivityError as err:
            # money was taken and a step after it failed for good: the buyer gets it back
            if self._payment is None or not workflow.patched(COMPENSATE_PATCH):
                raise
            await self._compensate(order_no, timings, err)
        return await self._end()

    async def _fulfil(self, inp: OrderWorkflowInput, order_no: str, timings: OrderTimings) -> None:
        if inp.order.fulfilment == "pickup":
            await self._issue_pickup_code(order_no, timings)
        self._set_status(OrderStatus.PAID)
        await self._send_buyer_messages()

        if inp.order.fulfilment == "pickup":
            await self._wait_for_pickup(order_no, timings)
        else:
            await self._deliver(order_no, timings)
            if not self._refunded:
                await self._auto_confirm(timings)
                how = "buyer confirmed receipt" if self._receipt_confirmed else "auto-confirmed"
                await workflow.execute_activity_method(
                    OrderActivities.mark_received, args=[order_no, how], **self._paid_step())
        if self._refunded:
            return
        self._set_status(OrderStatus.RECEIVED)
        await self._send_buyer_messages()

        await self._wait_for(lambda: self._refunded, timings.refund_window, "refund window")
        if workflow.patched(REFUND_WAIT_PATCH):
            await self._complete_when_refunds_end(order_no)
            return
        while not self._refunded:
            await workflow.wait_condition(lambda: not self._open_refunds)  # open refunds hold completion
            if self._refunded:
                break
            if await workflow.execute_activity_method(OrderActivities.complete_order, order_no, **DB_STEP):
                self._set_status(OrderStatus.COMPLETED)
                await self._send_buyer_messages()
                break
            # a refund opened in the database before its workflow told us: wait for it
            await self._wait_for(lambda: bool(self._open_refunds), timedelta(minutes=1), "refund starting")

    async def _complete_when_refunds_end(self, order_no: str) -> None:
        """Complete once no refund is open. The database may know of a refund this workflow has
        not heard of yet (saved by the API just before): its own workflow, started by the
        request or by the `refunds-sweep` schedule, tells this one when it opens and ends, so
        this waits for that signal — no timer."""
        while not self._refunded:
            await workflow.wait_condition(lambda: not self._open_refunds)  # open refunds hold completion
            if self._refunded:
                break
            heard = self._refund_signals
            if await workflow.execute_activity_method(OrderActivities.complete_order, order_no,
                                                      **self._paid_step()):
                self._set_status(OrderStatus.COMPLETED)
                await self._send_buyer_messages()
                break
            await workflow.wait_condition(lambda: self._refund_signals != heard or self._refunded)

    async def _compensate(self, order_no: str, timings: OrderTimings, err: ActivityError) -> None:
        """A step after payment failed for good (a record that cannot be written, an amount that
        does not match): refund the buyer (every unit not refunded yet; a payment never recorded
        is booked in and refunded whole, the order cancelled and its stock released)."""
        cause = err.cause
        code = cause.type if isinstance(cause, ApplicationError) and cause.type else type(cause).__name__
        reason = f"{err.activity_type} failed: {code}"
        workflow.logger.error("order %s: %s; refunding the buyer", order_no, reason)
        self._progress.failure = f"PAYMENT_NOT_KEPT: {reason}"
        refund_no = compensation_refund_no(order_no)
        amount = await workflow.execute_activity_method(
            RefundActivities.open_compensation_refund, args=[refund_no, order_no, self._payment, reason],
            **DB_STEP)
        if amount:
            outcome = await workflow.execute_child_workflow(
                RefundWorkflow.run, RefundInput(
                    refund_no=refund_no, order_no=order_no, kind=RefundKind.PAYMENT_FAILED, amount_fen=amount,
                    needs_return=False, supplier_ids=sorted(self._suppliers), timings=timings.refunds),
                id=refund_workflow_id(refund_no))
            self.refund_finished(outcome)
        if not self._refunded:
            self._set_status(OrderStatus.CANCELLED)
        await self._send_buyer_messages()

    async def _end(self) -> OrderProgress:
        await workflow.wait_condition(workflow.all_handlers_finished)
        return self._progress

    # --- what the outside world sends ----------------------------------------------------
    @workflow.update
    async def payment_params(self) -> OrderProgress:
        """Answers once the WeChat Pay order exists (or placement failed): POST /orders and
        GET /orders/{no}/payment wait on this instead of polling. The same parameters while the
        prepay_id is valid, fresh ones once it expired."""
        await workflow.wait_condition(
            lambda: self._progress is not None and (
                self._progress.prepay is not None or self._progress.failure is not None
                or self._progress.status != OrderStatus.PENDING_PAYMENT))
        # GET /orders/{no}/payment after WeChat Pay's prepay_id expired: make it again
        if self._prepay_stale() and workflow.patched(PREPAY_REFRESH_PATCH):
            await self._refresh_prepay()
        return self._progress
    @workflow.signal
    def payment_notified(self, notice: PaymentNotice) -> None:
        if notice.trade_state != "SUCCESS":
            return
        if self._balance_no is not None and notice.out_trade_no == self._balance_no:
            if self._balance is None:
                self._balance = notice
            return
        if self._payment is None:
            self._payment = notice
    @workflow.update
    async def request_balance(self) -> OrderProgress:
        """A pre-sale buyer pays the balance: answers once its WeChat Pay order exists (the same
        parameters when asked again)."""
        self._balance_asked = True
        await workflow.wait_condition(
            lambda: self._progress.balance_prepay is not None or self._balance_failure is not None
            or self._progress.status != OrderStatus.DEPOSIT_PAID)
        return self._progress
    @request_balance.validator
    def _validate_balance(self) -> None:
        if self._progress is None or self._progress.presale is None:
            raise ApplicationError("this order is not a pre-sale order", type="NOT_A_PRESALE")
        if self._progress.status != OrderStatus.DEPOSIT_PAID:
            raise ApplicationError(f"order is {self._progress.status}, not awaiting its balance",
                                   type="NOT_AWAITING_BALANCE")
        if not self._progress.balance_open:
            raise ApplicationError(
                f"the balance can be paid from {self._progress.presale.balance_starts_at:%Y-%m-%d %H:%M} UTC",
                type="BALANCE_NOT_OPEN")
    @workflow.update
    async def ship(self, shipment: ShipmentInput) -> OrderProgress:
        """Answers with the order once the parcel is recorded (and tracking subscribed)."""
        self._ship_requested.add(shipment.supplier_id)
        self._shipments.append(shipment)
        if workflow.patched(SHIP_ANSWER_PATCH):
            await workflow.wait_condition(
                lambda: shipment.supplier_id in self._progress.shipped_suppliers or self._refunded)
        return self._progress
    @ship.validator
    def _validate_ship(self, shipment: ShipmentInput) -> None:
        status = self._progress.status if self._progress else None
        if (status not in (OrderStatus.PAID, OrderStatus.SHIPPED) or self._payment is None
                or self._progress.fulfilment != "delivery"):
            raise ApplicationError(f"order is {status}, not awaiting shipment", type="NOT_SHIPPABLE")
        if shipment.supplier_id in self._ship_requested:
            raise ApplicationError("this supplier has already shipped", type="ALREADY_SHIPPED")
        if shipment.supplier_id not in self._suppliers:
            raise ApplicationError("this supplier has nothing (left) to ship in the order", type="NOT_YOUR_ORDER")
        if self._open_refunds:
            raise ApplicationError("a refund is open on this order; wait for it to finish",
                                   type="REFUND_PENDING")
    @workflow.signal
    def tracking_updated(self, update: TrackingUpdate) -> None:
        self._tracking.append(update)
    @workflow.update
    def extend_receipt(self) -> OrderProgress:
        """The buyer pushes the automatic confirmation of receipt back, once."""
        self._receipt_extended = True
        self._confirm_by += self._timings.receipt_extension
        self._progress.auto_confirm_at, self._progress.receipt_extended = self._confirm_by, True
        return self._progress
    @extend_receipt.validator
    def _validate_extend(self) -> None:
        status = self._progress.status if self._progress else None
        if status not in (OrderStatus.SHIPPED, OrderStatus.DELIVERED) or self._confirm_by is None \
                or self._receipt_confirmed:
            raise ApplicationError(f"order is {status}: receipt can be extended once shipped, before it is "
                                   "confirmed", type="NOT_EXTENDABLE")
        if self._receipt_extended:
            raise ApplicationError("receipt was already extended once", type="ALREADY_EXTENDED")
    @workflow.signal
    def shop_receipt_confirmed(self) -> None:
        """The buyer confirmed receipt in the Channels shop (a shop order's workflow tells us)."""
        if self._channels:
            self._receipt_confirmed = True
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
    @workflow.update
    async def verify_pickup(self, scan: PickupScan) -> OrderProgress:
        self._pickup_scan = scan
        await workflow.wait_condition(lambda: self._progress.status != OrderStatus.PAID or self._refunded)
        return self._progress
    @verify_pickup.validator
    def _validate_pickup(self, scan: PickupScan) -> None:
        status = self._progress.status if self._progress else None
        if self._progress is None or self._progress.fulfilment != "pickup":
            raise ApplicationError("this order is delivered, not picked up", type="NOT_A_PICKUP_ORDER")
        if self._pickup_scan is not None or status != OrderStatus.PAID or self._pickup_outlet is None:
            raise ApplicationError(f"order is {status}: the code cannot be used", type="CODE_NOT_USABLE")
        if scan.outlet_id != self._pickup_outlet:
            raise ApplicationError("the goods are to be picked up at another outlet", type="WRONG_OUTLET")
        if not scan.staff_active:
            raise ApplicationError("this staff account may not verify pickups", type="STAFF_INACTIVE")
        if workflow.now() >= self._pickup_expires:
            raise ApplicationError("the pickup code has expired", type="CODE_EXPIRED")
        if self._open_refunds:
            raise ApplicationError("a refund is open on this order", type="REFUND_PENDING")
    @workflow.signal
    def refund_opened(self, refund_no: str) -> None:
        self._refund_signals += 1
        self._open_refunds.add(refund_no)
        self._publish_status()
    @workflow.signal
    def refund_finished(self, outcome: RefundOutcome) -> None:
        self._refund_signals += 1
        self._open_refunds.discard(outcome.refund_no)
        if outcome.status == RefundStatus.REFUNDED:
            self._suppliers &= set(outcome.suppliers_with_units_left)
            if outcome.order_fully_refunded and not self._refunded:
                self._refunded = True
                self._progress.status = OrderStatus.REFUNDED
        self._publish_status()
    @workflow.query
    def progress(self) -> OrderProgress | None:
        return self._progress
