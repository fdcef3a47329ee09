"""Logistics side effects: subscribe to a waybill's tracking pushes (快递100-style), poll it
when the pushes stop, and keep every carrier event once (the buyer's tracking trace)."""

from __future__ import annotations

import asyncio
import hashlib

from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session, sessionmaker
from temporalio import activity

from activities.errors import business_error
from db.storefront_models import TrackingEvent
from domain.orders import TrackingUpdate
from integrations import logistics
from integrations.errors import PartnerRejected
from settings import Settings


def keep_trace(s: Session, result: logistics.TrackingResult) -> int:
    """Each carrier event of the result, kept once (a push repeats the whole trace every time);
    how many were new."""
    rows = [dict(carrier=result.carrier, waybill_no=result.waybill_no, at=step.time, context=step.context[:2000],
                 location=step.location[:200],
                 event_key=hashlib.sha256(f"{result.carrier}|{result.waybill_no}|{step.time.isoformat()}|"
                                          f"{step.context}".encode()).hexdigest())
            for step in result.steps]
    if not rows:
        return 0
    return len(s.execute(insert(TrackingEvent).values(rows).on_conflict_do_nothing(index_elements=["event_key"])
                         .returning(TrackingEvent.id)).all())


class LogisticsActivities:
    def __init__(self, settings: Settings, sessions: sessionmaker[Session] | None = None):
        self.settings = settings
        self.sessions = sessions

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
        if self.sessions is not None:
            await asyncio.to_thread(self._keep, result)
        return TrackingUpdate(carrier=carrier, waybill_no=waybill_no, state=result.state or "",
                              delivered=result.delivered)

    def _keep(self, result: logistics.TrackingResult) -> None:
        with self.sessions.begin() as s:
            keep_trace(s, result)
