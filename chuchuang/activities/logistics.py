"""Logistics side effects: subscribe to a waybill's tracking pushes (快递100-style)."""

from __future__ import annotations

from temporalio import activity

from chuchuang.integrations import logistics
from chuchuang.settings import Settings


class LogisticsActivities:
    def __init__(self, settings: Settings):
        self.settings = settings

    @activity.defn
    async def subscribe_tracking(self, carrier: str, waybill_no: str) -> None:
        callback = f"{self.settings.resolved_public_base_url}/webhooks/logistics"
        await logistics.subscribe(carrier, waybill_no, callback, self.settings)
