"""Logistics side effects: subscribe to a waybill's tracking pushes (快递100-style), and poll
it when the pushes stop."""

from __future__ import annotations

from temporalio import activity

from activities.errors import business_error
from domain.orders import TrackingUpdate
from integrations import logistics
from integrations.errors import PartnerRejected
from settings import Settings


class LogisticsActivities:
    def __init__(self, settings: Settings):
        self.settings = settings

    @activity.defn
    async def subscribe_tracking(self, carrier: str, waybill_no: str) -> None:
        callback = f"{self.settings.resolved_public_base_url}/webhooks/logistics"
        await logistics.subscribe(carrier, waybill_no, callback, self.settings)

    @activity.defn
    async def poll_tracking(self, carrier: str, waybill_no: str) -> TrackingUpdate:
        """The fallback when pushes stop coming: ask the carrier directly."""
        try:
            result = await logistics.query(carrier, waybill_no, self.settings)
        except PartnerRejected as err:
            raise business_error(f"LOGISTICS_{err.code}", str(err)) from err
        return TrackingUpdate(carrier=carrier, waybill_no=waybill_no, state=result.state or "",
                              delivered=result.delivered)
