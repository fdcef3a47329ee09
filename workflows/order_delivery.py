"""The delivery path of an order: each supplier ships its part (late → one alert), tracking
pushes arrive (the carrier is polled when they stop), and the buyer confirms receipt or it is
confirmed automatically. Orders from the Channels shop have their parcels sent to the shop."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.exceptions import ActivityError

from workflows.options import DB_STEP, PARTNER_CALL
from workflows.order_state import SHIP_CLOCK_PATCH, OrderState

with workflow.unsafe.imports_passed_through():
    from activities.channels_delivery import ChannelsDeliveryActivities
    from activities.logistics import LogisticsActivities
    from activities.orders import FulfilmentAlerts, OrderActivities
    from domain.order_process import OrderTimings
    from domain.order_status import OrderStatus
    from domain.orders import ShipmentInput


class DeliveryPath(OrderState):
    async def _deliver(self, order_no: str, timings: OrderTimings) -> None:
        """Each supplier ships its part; tracking pushes arrive until every parcel is signed
        for (the carrier is asked directly when pushes stop). The buyer may confirm receipt at
        any point after shipping. A supplier late to ship is reported once.

        The auto-confirm clock starts when the last parcel ships: when it runs out, delivery is
        over whatever the carrier says (tracking that never reports delivery cannot hold the
        order), so polling the carrier is bounded by it too."""
        clock = workflow.patched(SHIP_CLOCK_PATCH)
        shipped: set[int] = set()
        sla_deadline = workflow.now() + timings.shipment_sla
        alerted = False
        while True:
            if clock and self._confirm_by is None and shipped and self._suppliers <= shipped:
                self._start_confirm_clock(timings)
            late = not alerted and not self._suppliers <= shipped
            timeout = max(sla_deadline - workflow.now(), timedelta(seconds=1)) if late else (
                timings.tracking_poll_every if self._waybills - self._waybills_delivered else None)
            if self._confirm_by is not None:
                left = max(self._confirm_by - workflow.now(), timedelta(seconds=1))
                timeout = left if timeout is None else min(timeout, left)
            woke = await self._wait_for(
                lambda: bool(self._shipments or self._tracking) or self._refunded or self._delivery_done(shipped),
                timeout, "shipment SLA" if late else "tracking poll")
            if self._refunded:
                return
            if self._clock_ran_out():
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
                    OrderActivities.record_shipment, args=[order_no, shipment], **self._paid_step())
                await self._subscribe(shipment)
                if self._channels:
                    await self._send_to_channels(order_no, shipment)
                shipped.add(shipment.supplier_id)
                self._waybills.add(f"{shipment.carrier}:{shipment.waybill_no}")
                self._progress.shipped_suppliers = sorted(shipped)
                if self._suppliers <= shipped:
                    self._set_status(OrderStatus.SHIPPED)
                    if clock and self._confirm_by is None:
                        self._start_confirm_clock(timings)
                await self._send_buyer_messages()
            while self._tracking:
                update = self._tracking.pop(0)
                await workflow.execute_activity_method(
                    OrderActivities.record_tracking, args=[order_no, update], **self._paid_step())
                if update.delivered:
                    self._waybills_delivered.add(f"{update.carrier}:{update.waybill_no}")
            if self._delivery_done(shipped):
                if self._all_delivered():
                    self._progress.delivered = True
                    self._set_status(OrderStatus.DELIVERED)
                    await self._send_buyer_messages()
                return
    def _start_confirm_clock(self, timings: OrderTimings) -> None:
        self._confirm_by = workflow.now() + timings.auto_confirm_after
        self._progress.auto_confirm_at = self._confirm_by
    def _clock_ran_out(self) -> bool:
        return (self._confirm_by is not None and workflow.now() >= self._confirm_by
                and not self._shipments and not self._tracking)
    async def _subscribe(self, shipment: ShipmentInput) -> None:
        """Tracking pushes for the parcel; a carrier refusing the subscription only leaves the
        order to polling and the auto-confirm clock."""
        try:
            await workflow.execute_activity_method(
                LogisticsActivities.subscribe_tracking, args=[shipment.carrier, shipment.waybill_no],
                **PARTNER_CALL)
        except ActivityError as err:
            workflow.logger.warning("tracking subscription for %s refused: %s", shipment.waybill_no, err.cause)
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
    def _delivery_done(self, shipped: set[int]) -> bool:
        if not self._suppliers <= shipped or self._shipments or self._tracking:
            return False
        return self._receipt_confirmed or self._all_delivered()
    async def _auto_confirm(self, timings: OrderTimings) -> None:
        """Wait for the buyer's confirmation until the auto-confirm clock runs out (counted from
        the last shipment, pushed back once if the buyer extends it); orders from before the
        clock count auto_confirm_after from delivery."""
        if self._confirm_by is None:
            await self._wait_for(lambda: self._receipt_confirmed or self._refunded, timings.auto_confirm_after,
                                 "auto-confirm receipt")
            return
        while not (self._receipt_confirmed or self._refunded):
            deadline = self._confirm_by
            if workflow.now() >= deadline:
                return
            await self._wait_for(lambda: self._receipt_confirmed or self._refunded or self._confirm_by != deadline,
                                 deadline - workflow.now(), "auto-confirm receipt")
