"""The delivery path of an order: each supplier ships its part (late → one alert), tracking
pushes arrive (the carrier is polled when they stop), and the buyer confirms receipt or it is
confirmed automatically. Orders from the Channels shop have their parcels sent to the shop."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.exceptions import ActivityError

from workflows.options import DB_STEP, PARTNER_CALL
from workflows.order_state import OrderState

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
        any point after shipping. A supplier late to ship is reported once."""
        shipped: set[int] = set()
        sla_deadline = workflow.now() + timings.shipment_sla
        alerted = False
        while True:
            late = not alerted and not self._suppliers <= shipped
            timeout = max(sla_deadline - workflow.now(), timedelta(seconds=1)) if late else (
                timings.tracking_poll_every if self._waybills - self._waybills_delivered else None)
            woke = await self._wait_for(
                lambda: bool(self._shipments or self._tracking) or self._refunded or self._delivery_done(shipped),
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
                await self._send_buyer_messages()
            while self._tracking:
                update = self._tracking.pop(0)
                await workflow.execute_activity_method(
                    OrderActivities.record_tracking, args=[order_no, update], **DB_STEP)
                if update.delivered:
                    self._waybills_delivered.add(f"{update.carrier}:{update.waybill_no}")
            if self._delivery_done(shipped):
                if self._all_delivered():
                    self._progress.delivered = True
                    self._set_status(OrderStatus.DELIVERED)
                    await self._send_buyer_messages()
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
    def _delivery_done(self, shipped: set[int]) -> bool:
        if not self._suppliers <= shipped or self._shipments or self._tracking:
            return False
        return self._receipt_confirmed or self._all_delivered()
    async def _auto_confirm(self, after: timedelta) -> None:
        await self._wait_for(lambda: self._receipt_confirmed or self._refunded, after, "auto-confirm receipt")
