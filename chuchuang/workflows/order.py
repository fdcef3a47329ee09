"""OrderWorkflow (`order-{order_no}`): one order from placement to completed commission.

    place (reserve stock, apply coupon) → WeChat Pay JSAPI order → wait for the payment notice
      (timeout: ask WeChat Pay, then close and release stock; paid after all → refunded)
    → record payment + pending commission
    → delivery: each supplier ships (late → alert) → tracking pushes, polling when they stop
        → buyer confirms receipt or auto-confirm
      pickup: code issued → outlet staff scan it → picked up; unclaimed → expires → refunded
    → refund window (refunds still open hold it) → completed: commission available

Pre-sale orders (a SKU on pre-sale) pay twice: the deposit (`{order_no}D`) under the same
rules as any payment, then, once the balance window opens and the buyer was reminded, the
balance (`{order_no}B`, created on the buyer's request, with its own timeout); a balance not paid
by the end closes the order and refunds the deposit (chuchuang/domain/presale.py).

Refunds run in their own RefundWorkflow and tell this one when they open and end; an order
whose every unit was refunded ends REFUNDED. Each state change the buyer follows is also sent
as a subscribe message (the notification outbox, chuchuang/activities/messages.py); orders from
the Channels shop have their shipments sent to the shop too.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from pydantic import BaseModel
from temporalio import workflow
from temporalio.common import SearchAttributeKey
from temporalio.exceptions import ActivityError, ApplicationError
from temporalio.workflow import ParentClosePolicy

from chuchuang.workflows.options import DB_STEP, MESSAGE_SEND, PARTNER_CALL
from chuchuang.workflows.refund import RefundWorkflow
from chuchuang.workflows.refund import workflow_id as refund_workflow_id

with workflow.unsafe.imports_passed_through():
    from chuchuang.activities.channels_delivery import ChannelsDeliveryActivities
    from chuchuang.activities.logistics import LogisticsActivities
    from chuchuang.activities.messages import MessageActivities
    from chuchuang.activities.orders import FulfilmentAlerts, OrderActivities
    from chuchuang.activities.payments import PaymentActivities
    from chuchuang.activities.pickup import PickupActivities
    from chuchuang.activities.presale import PresaleActivities
    from chuchuang.activities.refunds import RefundActivities
    from chuchuang.domain.order_status import OrderStatus
    from chuchuang.domain.orders import (
        OrderProgress,
        PaymentNotice,
        PickupScan,
        PlaceOrderInput,
        ShipmentInput,
        TrackingUpdate,
    )
    from chuchuang.domain.presale import (
        PartPayment,
        balance_trade_no,
        deposit_trade_no,
        lapse_refund_no,
    )
    from chuchuang.domain.refunds import (
        RefundInput,
        RefundKind,
        RefundOutcome,
        RefundStatus,
        RefundTimings,
        late_payment_refund_no,
        pickup_refund_no,
    )

ORDER_NO = SearchAttributeKey.for_keyword("OrderNo")
PROMOTER_ID = SearchAttributeKey.for_keyword("PromoterId")
SUPPLIER_ID = SearchAttributeKey.for_keyword_list("SupplierId")
BUSINESS_STATUS = SearchAttributeKey.for_keyword("BusinessStatus")
MESSAGES_PATCH = "order-subscribe-messages"


class OrderTimings(BaseModel):
    payment_timeout: timedelta
    auto_confirm_after: timedelta
    refund_window: timedelta
    pickup_code_valid: timedelta = timedelta(days=7)
    shipment_sla: timedelta = timedelta(hours=48)
    tracking_poll_every: timedelta = timedelta(hours=6)
    refunds: RefundTimings = RefundTimings(return_ship_timeout=timedelta(days=7),
                                           return_receipt_timeout=timedelta(days=10),
                                           refund_poll_every=timedelta(minutes=10))


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

    # --- the process ---------------------------------------------------------------------
    @workflow.run
    async def run(self, inp: OrderWorkflowInput) -> OrderProgress:
        order_no, timings = inp.order.order_no, inp.timings
        self._channels = inp.order.source == "channels" and bool(inp.order.channels_order_id)
        self._progress = OrderProgress(order_no=order_no, status=OrderStatus.PENDING_PAYMENT,
                                       fulfilment=inp.order.fulfilment)
        self._set_status(OrderStatus.PENDING_PAYMENT)
        try:
            placed = await workflow.execute_activity_method(
                OrderActivities.place_order, inp.order, **DB_STEP)
        except ActivityError as err:
            return self._fail(err)
        self._suppliers = set(placed.supplier_ids)
        self._progress.total_fen = placed.total_fen
        workflow.upsert_search_attributes([SUPPLIER_ID.value_set([str(s) for s in placed.supplier_ids])])
        if placed.presale is not None:
            if not await self._presale_payments(placed, timings):
                return self._progress
        else:
            try:
                self._progress.prepay = await workflow.execute_activity_method(
                    PaymentActivities.create_payment, placed, **PARTNER_CALL)
            except ActivityError as err:
                await self._cancel_unpaid(order_no, "WeChat Pay refused the order")
                return self._fail(err)

            if not await self._wait_for_payment(order_no, timings):
                return self._progress
            await workflow.execute_activity_method(OrderActivities.record_payment, self._payment, **DB_STEP)
        if inp.order.fulfilment == "pickup":
            await self._issue_pickup_code(order_no, timings)
        self._set_status(OrderStatus.PAID)
        await self._tell_buyer()

        if inp.order.fulfilment == "pickup":
            await self._pickup(order_no, timings)
        else:
            await self._fulfil(order_no, timings)
            if not self._refunded:
                await self._auto_confirm(timings.auto_confirm_after)
                how = "buyer confirmed receipt" if self._receipt_confirmed else "auto-confirmed"
                await workflow.execute_activity_method(OrderActivities.mark_received, args=[order_no, how], **DB_STEP)
        if self._refunded:
            return self._progress
        self._set_status(OrderStatus.RECEIVED)
        await self._tell_buyer()

        await self._until(lambda: self._refunded, timings.refund_window, "refund window")
        while not self._refunded:
            await workflow.wait_condition(lambda: not self._open_refunds)  # open refunds hold completion
            if self._refunded:
                break
            if await workflow.execute_activity_method(OrderActivities.complete_order, order_no, **DB_STEP):
                self._set_status(OrderStatus.COMPLETED)
                await self._tell_buyer()
                break
            # a refund opened in the database before its workflow told us: wait for it
            await self._until(lambda: bool(self._open_refunds), timedelta(minutes=1), "refund starting")
        return self._progress

    async def _wait_for_payment(self, order_no: str, timings: OrderTimings, out_trade_no: str | None = None) -> bool:
        """The order's payment (a pre-sale order's deposit: `out_trade_no`) within the timeout."""
        trade_no = out_trade_no or order_no
        if await self._until(lambda: self._payment is not None, timings.payment_timeout, "payment timeout"):
            return True
        # The notice may have been lost: WeChat Pay's own record decides.
        notice = await workflow.execute_activity_method(
            PaymentActivities.query_payment, trade_no, **PARTNER_CALL)
        if notice.trade_state == "SUCCESS":
            self._payment = notice
            return True
        try:
            await workflow.execute_activity_method(PaymentActivities.close_payment, trade_no, **PARTNER_CALL)
        except ActivityError as err:
            if not _is(err, "WECHATPAY_ORDERPAID"):
                raise
            # paid between our query and the close: it is a normal payment
            self._payment = await workflow.execute_activity_method(
                PaymentActivities.query_payment, trade_no, **PARTNER_CALL)
            return True
        await self._cancel_unpaid(order_no, "payment timed out; WeChat Pay order closed")
        if self._payment is not None:
            # the notice came while we were closing: the buyer's money goes back
            await self._refund_late_payment(order_no, self._payment, timings)
        return False

    # --- pre-sale ------------------------------------------------------------------------
    async def _presale_payments(self, placed, timings: OrderTimings) -> bool:
        """Deposit, then (window open, buyer reminded, balance asked for) the balance. False when
        the order ended here: deposit unpaid (cancelled) or balance unpaid (closed, deposit refunded)."""
        order_no, presale = placed.order_no, placed.presale
        self._progress.presale = presale
        self._balance_no = balance_trade_no(order_no)
        try:
            self._progress.prepay = await workflow.execute_activity_method(
                PaymentActivities.create_part_payment, PartPayment(
                    order_no=order_no, out_trade_no=deposit_trade_no(order_no), kind="deposit",
                    amount_fen=presale.deposit_fen, description=f"{placed.description} 定金"[:120],
                    buyer_openid=placed.buyer_openid), **PARTNER_CALL)
        except ActivityError as err:
            await self._cancel_unpaid(order_no, "WeChat Pay refused the order")
            self._fail(err)
            return False
        if not await self._wait_for_payment(order_no, timings, deposit_trade_no(order_no)):
            return False
        await workflow.execute_activity_method(PresaleActivities.record_deposit, self._payment, **DB_STEP)
        self._set_status(OrderStatus.DEPOSIT_PAID)
        await self._tell_buyer()

        opens_in = presale.balance_starts_at - workflow.now()
        if opens_in > timedelta(0):
            await workflow.sleep(opens_in, summary="balance window opens")
        await workflow.execute_activity_method(PresaleActivities.open_balance, order_no, **DB_STEP)
        self._progress.balance_open = True
        self._show()
        await self._tell_buyer()

        ends_in = max(presale.balance_ends_at - workflow.now(), timedelta(seconds=1))
        if await self._until(lambda: self._balance_asked or self._balance is not None, ends_in, "balance window ends"):
            try:
                self._progress.balance_prepay = await workflow.execute_activity_method(
                    PaymentActivities.create_part_payment, PartPayment(
                        order_no=order_no, out_trade_no=self._balance_no, kind="balance",
                        amount_fen=presale.balance_fen, description=f"{placed.description} 尾款"[:120],
                        buyer_openid=placed.buyer_openid), **PARTNER_CALL)
            except ActivityError as err:
                cause = err.cause
                self._balance_failure = cause.type if isinstance(cause, ApplicationError) else "FAILED"
            # asked for near the end, the buyer still has the whole payment timeout
            due = max(presale.balance_ends_at, workflow.now() + timings.payment_timeout)
            self._progress.balance_due_at = due
            self._show()
            paid = await self._until(lambda: self._balance is not None,
                                     max(due - workflow.now(), timedelta(seconds=1)), "balance payment timeout")
            if not paid and self._balance_failure is None:
                paid = await self._balance_at_wechat()
        else:
            paid = False
        if not paid:
            await self._lapse(order_no, timings)
            return False
        await workflow.execute_activity_method(PresaleActivities.record_balance, self._balance, **DB_STEP)
        return True

    async def _balance_at_wechat(self) -> bool:
        """The balance's deadline passed with no notice: ask WeChat Pay, then close it."""
        notice = await workflow.execute_activity_method(
            PaymentActivities.query_payment, self._balance_no, **PARTNER_CALL)
        if notice.trade_state == "SUCCESS":
            self._balance = notice
            return True
        try:
            await workflow.execute_activity_method(PaymentActivities.close_payment, self._balance_no, **PARTNER_CALL)
        except ActivityError as err:
            if not _is(err, "WECHATPAY_ORDERPAID"):
                raise
            self._balance = await workflow.execute_activity_method(
                PaymentActivities.query_payment, self._balance_no, **PARTNER_CALL)
            return True
        return False

    async def _lapse(self, order_no: str, timings: OrderTimings) -> None:
        """Balance unpaid: the order is closed and the deposit refunded (stock given back)."""
        amount = await workflow.execute_activity_method(
            PresaleActivities.lapse_presale, args=[order_no, "balance not paid by the end of its window"], **DB_STEP)
        self._set_status(OrderStatus.CANCELLED)
        await self._tell_buyer()
        refund_no = lapse_refund_no(order_no)
        outcome = await workflow.execute_child_workflow(
            RefundWorkflow.run, RefundInput(
                refund_no=refund_no, order_no=order_no, kind=RefundKind.PRESALE_LAPSED, amount_fen=amount,
                needs_return=False, supplier_ids=sorted(self._suppliers), timings=timings.refunds),
            id=refund_workflow_id(refund_no))
        self.refund_finished(outcome)
        if self._balance is not None:
            # the balance was paid after its order was closed: it goes back too
            await self._refund_late_payment(order_no, self._balance, timings)

    async def _tell_buyer(self) -> None:
        """Send the outbox's subscribe messages (this change's among them); never blocks the order."""
        if not workflow.patched(MESSAGES_PATCH):
            return
        try:
            await workflow.execute_activity_method(MessageActivities.deliver_messages, **MESSAGE_SEND)
        except ActivityError:
            workflow.logger.warning("subscribe messages not sent now; the next drain sends them")

    async def _refund_late_payment(self, order_no: str, notice: PaymentNotice, timings: OrderTimings) -> None:
        refund_no = late_payment_refund_no(notice.out_trade_no)
        await workflow.execute_child_workflow(
            RefundWorkflow.run, RefundInput(
                refund_no=refund_no, order_no=order_no, kind=RefundKind.LATE_PAYMENT,
                amount_fen=notice.amount_fen, needs_return=False, timings=timings.refunds,
                late_payment=notice),
            id=refund_workflow_id(refund_no), parent_close_policy=ParentClosePolicy.ABANDON)

    async def _cancel_unpaid(self, order_no: str, reason: str) -> None:
        await workflow.execute_activity_method(
            OrderActivities.cancel_unpaid, args=[order_no, reason], **DB_STEP)
        self._set_status(OrderStatus.CANCELLED)
        await self._tell_buyer()

    # --- delivery --------------------------------------------------------------------------
    async def _fulfil(self, order_no: str, timings: OrderTimings) -> None:
        """Each supplier ships its part; tracking pushes arrive until every parcel is signed
        for (the carrier is asked directly when pushes stop). The buyer may confirm receipt at
        any point after shipping. A supplier late to ship is reported once."""
        shipped: set[int] = set()
        sla_deadline = workflow.now() + timings.shipment_sla
        alerted = False
        while True:
            late = not alerted and not self._suppliers <= shipped
            timeout = max(sla_deadline - workflow.now(), timedelta(seconds=1)) if late else (
                timings.tracking_poll_every if self._waybills - self._waybills_delivered else None)
            woke = await self._until(
                lambda: bool(self._shipments or self._tracking) or self._refunded or self._fulfilled(shipped),
                timeout, "shipment SLA" if late else "tracking poll")
            if self._refunded:
                return
            if not woke:
                if late:
                    alerted = True
                    await workflow.execute_activity_method(
                        FulfilmentAlerts.shipment_overdue, args=[order_no, sorted(self._suppliers - shipped)],
                        **DB_STEP)
                else:
                    await self._poll_tracking()
                continue
            while self._shipments:
                shipment = self._shipments.pop(0)
                await workflow.execute_activity_method(
                    OrderActivities.record_shipment, args=[order_no, shipment], **DB_STEP)
                await workflow.execute_activity_method(
                    LogisticsActivities.subscribe_tracking, args=[shipment.carrier, shipment.waybill_no],
                    **PARTNER_CALL)
                if self._channels:
                    await self._send_to_channels(order_no, shipment)
                shipped.add(shipment.supplier_id)
                self._waybills.add(f"{shipment.carrier}:{shipment.waybill_no}")
                self._progress.shipped_suppliers = sorted(shipped)
                if self._suppliers <= shipped:
                    self._set_status(OrderStatus.SHIPPED)
                await self._tell_buyer()
            while self._tracking:
                update = self._tracking.pop(0)
                await workflow.execute_activity_method(
                    OrderActivities.record_tracking, args=[order_no, update], **DB_STEP)
                if update.delivered:
                    self._waybills_delivered.add(f"{update.carrier}:{update.waybill_no}")
            if self._fulfilled(shipped):
                if self._all_delivered():
                    self._progress.delivered = True
                    self._set_status(OrderStatus.DELIVERED)
                    await self._tell_buyer()
                return

    async def _send_to_channels(self, order_no: str, shipment: ShipmentInput) -> None:
        """A Channels shop order: the shop gets the parcel too (idempotent at the shop)."""
        try:
            await workflow.execute_activity_method(
                ChannelsDeliveryActivities.send_channels_delivery, args=[order_no, shipment], **PARTNER_CALL)
        except ActivityError as err:
            # the shop refused it (e.g. its order was cancelled there): the parcel is still ours
            workflow.logger.warning("Channels shop refused the delivery of %s: %s", order_no, err.cause)

    async def _poll_tracking(self) -> None:
        for waybill in sorted(self._waybills - self._waybills_delivered):
            carrier, number = waybill.split(":", 1)
            update = await workflow.execute_activity_method(
                LogisticsActivities.poll_tracking, args=[carrier, number], **PARTNER_CALL)
            if update.state:
                self._tracking.append(update)

    def _all_delivered(self) -> bool:
        return bool(self._waybills) and self._waybills <= self._waybills_delivered

    def _fulfilled(self, shipped: set[int]) -> bool:
        if not self._suppliers <= shipped or self._shipments or self._tracking:
            return False
        return self._receipt_confirmed or self._all_delivered()

    async def _auto_confirm(self, after: timedelta) -> None:
        await self._until(lambda: self._receipt_confirmed or self._refunded, after, "auto-confirm receipt")

    # --- pickup ----------------------------------------------------------------------------
    async def _issue_pickup_code(self, order_no: str, timings: OrderTimings) -> None:
        self._pickup_expires = workflow.now() + timings.pickup_code_valid
        self._pickup_outlet = await workflow.execute_activity_method(
            PickupActivities.issue_pickup_code, args=[order_no, self._pickup_expires], **DB_STEP)
        self._progress.pickup_expires_at = self._pickup_expires

    async def _pickup(self, order_no: str, timings: OrderTimings) -> None:
        """Wait for the outlet's scan until the code expires; unclaimed goods are refunded."""
        if await self._until(lambda: self._pickup_scan is not None or self._refunded,
                             timings.pickup_code_valid, "pickup code valid"):
            if self._pickup_scan is not None:
                await workflow.execute_activity_method(
                    PickupActivities.record_pickup, args=[order_no, self._pickup_scan.staff_user_id], **DB_STEP)
            return
        await workflow.wait_condition(lambda: not self._open_refunds)
        if self._refunded:
            return
        refund_no = pickup_refund_no(order_no)
        amount = await workflow.execute_activity_method(
            RefundActivities.open_system_refund,
            args=[refund_no, order_no, RefundKind.PICKUP_EXPIRED, "pickup code expired unclaimed"], **DB_STEP)
        outcome = await workflow.execute_child_workflow(
            RefundWorkflow.run, RefundInput(
                refund_no=refund_no, order_no=order_no, kind=RefundKind.PICKUP_EXPIRED, amount_fen=amount,
                needs_return=False, supplier_ids=sorted(self._suppliers), timings=timings.refunds),
            id=refund_workflow_id(refund_no))
        self.refund_finished(outcome)

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
    def ship(self, shipment: ShipmentInput) -> OrderProgress:
        self._ship_requested.add(shipment.supplier_id)
        self._shipments.append(shipment)
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
        self._open_refunds.add(refund_no)
        self._show()

    @workflow.signal
    def refund_finished(self, outcome: RefundOutcome) -> None:
        self._open_refunds.discard(outcome.refund_no)
        if outcome.status == RefundStatus.REFUNDED:
            self._suppliers &= set(outcome.suppliers_with_units_left)
            if outcome.order_fully_refunded and not self._refunded:
                self._refunded = True
                self._progress.status = OrderStatus.REFUNDED
        self._show()

    @workflow.query
    def progress(self) -> OrderProgress | None:
        return self._progress

    # --- bookkeeping ---------------------------------------------------------------------
    async def _until(self, condition, timeout: timedelta | None, summary: str) -> bool:
        """Wait for `condition`; False when `timeout` passed first."""
        try:
            await workflow.wait_condition(condition, timeout=timeout, timeout_summary=summary)
            return True
        except TimeoutError:
            return False

    def _set_status(self, status: OrderStatus) -> None:
        if self._refunded:
            return
        self._progress.status = status
        self._show()

    def _show(self) -> None:
        """BusinessStatus: the order's state, or AFTER_SALE while a refund is open."""
        self._progress.updated_at = workflow.now()
        self._progress.open_refunds = sorted(self._open_refunds)
        shown = OrderStatus.AFTER_SALE if self._open_refunds and not self._refunded else self._progress.status
        workflow.upsert_search_attributes([BUSINESS_STATUS.value_set(shown.value)])

    def _fail(self, err: ActivityError) -> OrderProgress:
        cause = err.cause
        self._progress.failure = cause.type if isinstance(cause, ApplicationError) else "FAILED"
        self._set_status(OrderStatus.CANCELLED)
        return self._progress


def _is(err: ActivityError, code: str) -> bool:
    return isinstance(err.cause, ApplicationError) and err.cause.type == code
