"""Shipments of orders that came from the WeChat Channels shop (source `channels`) are also
sent to the shop (`/channels/ec/order/delivery/send`), so the shop shows the parcel and the
buyer's Channels order moves to 待收货. Idempotent: the shop's order is read first, and a
parcel it already has (or an order it already counts as shipped) is success."""

from __future__ import annotations

import asyncio

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from temporalio import activity

from activities.errors import business_error
from activities.payments import as_activity_error
from db.catalog_models import ChannelsListing
from db.models import Order, OrderLine
from domain.orders import ShipmentInput
from integrations.channels import ChannelsClient, ChannelsOrder, Delivery
from integrations.channels import OrderStatus as ShopStatus
from integrations.errors import PartnerRejected

# 快递100 carrier codes (ours) → the Channels shop's delivery company ids.
CHANNELS_DELIVERY_IDS = {"shunfeng": "SF", "yuantong": "YTO", "zhongtong": "ZTO", "yunda": "YD",
                         "shentong": "STO", "jd": "JD", "ems": "EMS", "jtexpress": "JTSD", "debangwuliu": "DBL"}
SHIPPED_STATES = {ShopStatus.SHIPPED, ShopStatus.COMPLETED}


def channels_delivery_id(carrier: str) -> str:
    return CHANNELS_DELIVERY_IDS.get(carrier, carrier.upper())


def _has_waybill(order: ChannelsOrder, waybill_no: str) -> bool:
    sent = order.order_detail.get("delivery_info", {}).get("delivery_product_info", [])
    return any(d.get("waybill_id") == waybill_no for d in sent)


class ChannelsDeliveryActivities:
    def __init__(self, sessions: sessionmaker[Session], channels: ChannelsClient | None):
        self.sessions = sessions
        self.channels = channels

    def _shop_products(self, order_no: str, supplier_id: int) -> tuple[str | None, set[str]]:
        with self.sessions() as s:
            channels_order_id = s.scalar(select(Order.channels_order_id).where(Order.order_no == order_no))
            products = set(s.scalars(
                select(ChannelsListing.channels_product_id)
                .join(OrderLine, OrderLine.product_id == ChannelsListing.product_id)
                .where(OrderLine.order_no == order_no, OrderLine.supplier_id == supplier_id,
                       ChannelsListing.channels_product_id.is_not(None))))
            return channels_order_id, products

    @activity.defn
    async def send_channels_delivery(self, order_no: str, shipment: ShipmentInput) -> str:
        """sent | already (the shop had it) | none (not a Channels order, nothing of this supplier)."""
        channels_order_id, products = await asyncio.to_thread(self._shop_products, order_no, shipment.supplier_id)
        if not channels_order_id or self.channels is None:
            return "none"
        try:
            shop_order = await self.channels.get_order(channels_order_id)
            if _has_waybill(shop_order, shipment.waybill_no) or shop_order.status in SHIPPED_STATES:
                return "already"
            shipped: dict[tuple[str, str], int] = {}
            for d in shop_order.order_detail.get("delivery_info", {}).get("delivery_product_info", []):
                for p in d.get("product_infos", []):
                    k = (p["product_id"], p["sku_id"])
                    shipped[k] = shipped.get(k, 0) + int(p["product_cnt"])
            mine = [(p.product_id, p.sku_id, p.sku_cnt - shipped.get((p.product_id, p.sku_id), 0))
                    for p in shop_order.products if not products or p.product_id in products]
            mine = [m for m in mine if m[2] > 0]
            if not mine:
                return "none"
            try:
                await self.channels.send_delivery(channels_order_id, [Delivery(
                    delivery_id=channels_delivery_id(shipment.carrier), waybill_id=shipment.waybill_no,
                    products=mine)])
            except PartnerRejected:
                # sent by an earlier attempt whose answer was lost? The shop's order says.
                again = await self.channels.get_order(channels_order_id)
                if _has_waybill(again, shipment.waybill_no) or again.status in SHIPPED_STATES:
                    return "already"
                raise
        except PartnerRejected as err:
            raise business_error(f"CHANNELS_{err.code}", str(err)) from err
        except Exception as err:  # noqa: BLE001 - retryable unless the shop refused
            raise as_activity_error(err) from err
        return "sent"
