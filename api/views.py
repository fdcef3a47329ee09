"""What each role sees: the one place that decides how much of an order, a refund, a promoter or
a supplier a caller gets. Routers load rows and hand them here; nothing else shapes these answers.

| who                        | order                                                          | refund                      |
|----------------------------|----------------------------------------------------------------|-----------------------------|
| buyer (their own orders)   | everything                                                     | their own, everything       |
| promoter (their window's)  | buyer masked (王*明, 138****8000, province and city), no     | none (only their own        |
|                            | WeChat Pay transaction id, history without notes               | purchases, as a buyer)      |
| supplier (orders with its  | only its own lines and their amounts, buyer masked as above,   | only refunds of its lines,  |
| lines)                     | no transaction id, no promoter/window, history without notes;  | only its lines and their    |
|                            | the full address only through GET /orders/{no}/ship-to, and    | amount, no review reasons   |
|                            | only while it still has lines to ship                          |                             |
| outlet staff               | nothing here; the scan (POST /pickups/verify) answers the      | none                        |
|                            | order number, status and the goods to hand over                |                             |
| support, operator          | everything                                                     | everything                  |

A promoter who buys from their own window is that order's buyer and sees it whole. Nobody but
the platform's staff sees another party's supplier profile (licence, contact) or promoter
profile; those are masked at rest (real name, ID number) anyway.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from pydantic import BaseModel, Field
from sqlalchemy import false, select, true

from api.auth import PLATFORM_STAFF, Principal
from api.errors import not_found
from db.models import Order, OrderLine, Promoter, Shipment, Supplier, User
from db.order_models import Refund, RefundLine
from db.storefront_models import TrackingEvent
from domain.assessment import CycleProgress
from domain.order_status import OrderStatus
from domain.privacy import mask_address
from domain.promoters import PromoterStatus
from domain.refunds import RefundStatus

SHIPPABLE = (OrderStatus.PAID, OrderStatus.SHIPPED)  # a supplier may still have lines to ship


# --- who is asking --------------------------------------------------------------------------
@dataclass(frozen=True)
class Viewer:
    principal: Principal
    promoter_id: int | None = None  # set for promoters
    supplier_id: int | None = None  # set for suppliers

    @property
    def role(self) -> str:
        return self.principal.role

    @property
    def staff(self) -> bool:
        return self.principal.role in PLATFORM_STAFF


def viewer_of(s, principal: Principal) -> Viewer:
    if principal.role == "promoter":
        return Viewer(principal, promoter_id=s.scalar(select(Promoter.id).where(Promoter.user_id == principal.user_id)))
    if principal.role == "supplier":
        return Viewer(principal, supplier_id=s.scalar(select(Supplier.id).where(
            Supplier.owner_user_id == principal.user_id)))
    return Viewer(principal)


# --- orders ---------------------------------------------------------------------------------
class LineOut(BaseModel):
    id: int
    sku_id: int
    supplier_id: int
    title: str
    unit_price_fen: int
    quantity: int
    list_fen: int
    paid_fen: int
    refund_claimed_quantity: int


class EventOut(BaseModel):
    status: str
    note: str
    at: datetime


class OrderOut(BaseModel):
    order_no: str
    status: OrderStatus
    status_label: str
    source: str
    window_id: int | None
    promoter_id: int | None
    total_fen: int
    discount_fen: int
    freight_fen: int = Field(default=0, description="delivery charge within total_fen (运费): the supplier's, "
                                                   "not commissionable")
    fulfilment: str
    outlet_id: int | None
    open_refunds: int
    shipping_address: dict | None
    transaction_id: str | None
    created_at: datetime
    paid_at: datetime | None
    completed_at: datetime | None
    lines: list[LineOut]
    history: list[EventOut]
    view: str = "full"  # full (buyer, staff), promoter or supplier: what was left out, see README


class ShipToOut(BaseModel):
    order_no: str
    address: dict
    lines: list[LineOut]


def order_scope(viewer: Viewer):
    """The SQL condition on Order for the orders this viewer may list."""
    if viewer.staff:
        return true()
    if viewer.role == "buyer":
        return Order.buyer_user_id == viewer.principal.user_id
    if viewer.role == "promoter":
        mine = Order.buyer_user_id == viewer.principal.user_id
        return mine if viewer.promoter_id is None else mine | (Order.promoter_id == viewer.promoter_id)
    if viewer.role == "supplier" and viewer.supplier_id is not None:
        return Order.order_no.in_(select(OrderLine.order_no).where(OrderLine.supplier_id == viewer.supplier_id))
    return false()


def _sees_whole(viewer: Viewer, order: Order) -> bool:
    """The platform's staff, and the order's own buyer (a promoter buying is a buyer too)."""
    return viewer.staff or (viewer.role in ("buyer", "promoter") and order.buyer_user_id == viewer.principal.user_id)


def order_visible(viewer: Viewer, order: Order) -> bool:
    if _sees_whole(viewer, order):
        return True
    if viewer.role == "promoter":
        return viewer.promoter_id is not None and order.promoter_id == viewer.promoter_id
    if viewer.role == "supplier":
        return viewer.supplier_id is not None and any(ln.supplier_id == viewer.supplier_id for ln in order.lines)
    return False


def order_view(viewer: Viewer, order: Order) -> OrderOut | None:
    """The order as this viewer may see it, or None when they may not see it at all. The order's
    `lines` and `events` must be loaded."""
    if not order_visible(viewer, order):
        return None
    status = OrderStatus(order.status)
    freight_fen = order.total_fen - sum(line.paid_fen for line in order.lines)  # no line's: the freight
    out = OrderOut(
        order_no=order.order_no, status=status,
        status_label=OrderStatus.AFTER_SALE.label if order.open_refunds else status.label,
        source=order.source, window_id=order.window_id, promoter_id=order.promoter_id,
        total_fen=order.total_fen, discount_fen=order.discount_fen, freight_fen=freight_fen,
        fulfilment=order.fulfilment,
        outlet_id=order.outlet_id, open_refunds=order.open_refunds,
        shipping_address=order.shipping_address, transaction_id=order.transaction_id,
        created_at=order.created_at, paid_at=order.paid_at, completed_at=order.completed_at,
        lines=[LineOut.model_validate(line, from_attributes=True) for line in order.lines],
        history=[EventOut.model_validate(e, from_attributes=True) for e in order.events])
    if _sees_whole(viewer, order):
        return out
    # someone else's buyer: masked, and the notes (waybills, payment ids, risk holds) left out
    out.shipping_address = mask_address(order.shipping_address)
    out.transaction_id = None
    out.history = [EventOut(status=e.status, note="", at=e.at) for e in out.history]
    if viewer.role == "promoter":
        out.view = "promoter"
        return out
    own = [line for line in out.lines if line.supplier_id == viewer.supplier_id]
    return out.model_copy(update=dict(
        view="supplier", lines=own, window_id=None, promoter_id=None,
        total_fen=sum(line.paid_fen for line in own) + freight_fen,  # an order with freight is one supplier's
        discount_fen=sum(line.list_fen - line.paid_fen for line in own)))


class TrackingEventOut(BaseModel):
    at: datetime
    context: str
    location: str


class ParcelOut(BaseModel):
    supplier_id: int
    carrier: str
    waybill_no: str
    tracking_state: str | None
    delivered_at: datetime | None
    events: list[TrackingEventOut] = Field(description="every carrier event, newest first")


def parcels_view(s, viewer: Viewer, order: Order) -> list[ParcelOut] | None:
    """The order's parcels with their full trace: the buyer and staff see all, a supplier its
    own; None for anyone else (a promoter follows the status only: the trace names places and
    couriers). Loads the order's lines."""
    if _sees_whole(viewer, order):
        mine = None
    elif viewer.role == "supplier" and order_visible(viewer, order):
        mine = viewer.supplier_id
    else:
        return None
    query = select(Shipment).where(Shipment.order_no == order.order_no).order_by(Shipment.id)
    if mine is not None:
        query = query.where(Shipment.supplier_id == mine)
    parcels = []
    for sh in s.scalars(query):
        events = s.scalars(select(TrackingEvent).where(TrackingEvent.carrier == sh.carrier,
                                                       TrackingEvent.waybill_no == sh.waybill_no)
                           .order_by(TrackingEvent.at.desc(), TrackingEvent.id.desc()).limit(200))
        parcels.append(ParcelOut(supplier_id=sh.supplier_id, carrier=sh.carrier, waybill_no=sh.waybill_no,
                                 tracking_state=sh.tracking_state, delivered_at=sh.delivered_at,
                                 events=[TrackingEventOut(at=e.at, context=e.context, location=e.location)
                                         for e in events]))
    return parcels


def ship_to_view(s, viewer: Viewer, order: Order) -> ShipToOut | str:
    """The full address for a supplier with lines still to ship (or staff); else the reason
    code why not. Loads the order's lines."""
    if viewer.role == "supplier":
        if not any(ln.supplier_id == viewer.supplier_id for ln in order.lines):
            return "NOT_FOUND"
        if order.fulfilment != "delivery" or order.shipping_address is None:
            return "NOT_DELIVERED_BY_SUPPLIER"
        shipped = s.scalar(select(Shipment.id).where(Shipment.order_no == order.order_no,
                                                     Shipment.supplier_id == viewer.supplier_id).limit(1))
        lines = [ln for ln in order.lines
                 if ln.supplier_id == viewer.supplier_id and ln.refund_claimed_quantity < ln.quantity]
        if OrderStatus(order.status) not in SHIPPABLE or shipped is not None or not lines:
            return "NOTHING_TO_SHIP"
    elif viewer.staff:
        if order.shipping_address is None:
            return "NOT_DELIVERED_BY_SUPPLIER"
        lines = list(order.lines)
    else:
        return "NOT_FOUND"
    return ShipToOut(order_no=order.order_no, address=order.shipping_address,
                     lines=[LineOut.model_validate(ln, from_attributes=True) for ln in lines])


# --- refunds --------------------------------------------------------------------------------
class RefundLineOut(BaseModel):
    order_line_id: int
    quantity: int
    amount_fen: int


class RefundOut(BaseModel):
    refund_no: str
    order_no: str
    kind: str
    status: RefundStatus
    amount_fen: int
    needs_return: bool
    review_reasons: str
    review_note: str
    return_carrier: str | None
    return_waybill_no: str | None
    created_at: datetime
    finished_at: datetime | None
    review_deadline_at: datetime | None = Field(
        default=None, description="under review: approved automatically if support has not decided by then")
    reviewed_by: str | None = Field(default=None, description="who decided the review: a support member, or "
                                                              "the deadline (approved automatically)")
    reviewed_at: datetime | None = None
    lines: list[RefundLineOut]
    view: str = "full"


def refund_scope(viewer: Viewer):
    if viewer.staff:
        return true()
    if viewer.role == "supplier":
        if viewer.supplier_id is None:
            return false()
        return Refund.refund_no.in_(
            select(RefundLine.refund_no).join(OrderLine, OrderLine.id == RefundLine.order_line_id)
            .where(OrderLine.supplier_id == viewer.supplier_id))
    if viewer.role in ("buyer", "promoter"):
        return Refund.buyer_user_id == viewer.principal.user_id
    return false()


def _reviewer(s, refund: Refund) -> str | None:
    if refund.reviewed_at is None:
        return None
    staff = s.get(User, refund.reviewed_by_user_id) if refund.reviewed_by_user_id else None
    return f"support: {staff.display_name or f'#{staff.id}'}" if staff else "deadline: approved automatically"


def refund_view(s, viewer: Viewer, refund: Refund) -> RefundOut | None:
    rows = s.execute(select(RefundLine, OrderLine.supplier_id)
                     .join(OrderLine, OrderLine.id == RefundLine.order_line_id)
                     .where(RefundLine.refund_no == refund.refund_no).order_by(RefundLine.id)).all()
    fields = {k: getattr(refund, k) for k in RefundOut.model_fields if k not in ("lines", "view", "reviewed_by")}
    fields["reviewed_by"] = _reviewer(s, refund)
    if viewer.staff or (viewer.role in ("buyer", "promoter") and refund.buyer_user_id == viewer.principal.user_id):
        return RefundOut(**fields, lines=[RefundLineOut.model_validate(ln, from_attributes=True) for ln, _ in rows])
    if viewer.role == "supplier" and viewer.supplier_id is not None:
        own = [RefundLineOut.model_validate(ln, from_attributes=True) for ln, sid in rows if sid == viewer.supplier_id]
        if not own:
            return None
        return RefundOut(**fields | dict(amount_fen=sum(ln.amount_fen for ln in own), review_reasons=""),
                         lines=own, view="supplier")
    return None


# --- promoters and suppliers ------------------------------------------------------------------
class ReferrerOut(BaseModel):
    promoter_id: int
    nickname: str
    source: str
    bound_at: datetime


class PromoterOut(BaseModel):
    promoter_id: int
    user_id: int
    nickname: str
    status: PromoterStatus
    referral_code: str
    window_id: int
    window_name: str
    channels_finder_id: str | None
    agreement_version: str
    agreement_accepted_at: datetime
    real_name: str
    id_number: str
    referrer: ReferrerOut | None = None
    progress: CycleProgress | None = None


def promoter_view(viewer: Viewer, promoter, profile, window, referrer: ReferrerOut | None) -> PromoterOut:
    """A promoter's profile (masked real name and ID number, agreement, referrer): the promoter
    and the platform's staff only; anyone else gets 404, as if it did not exist."""
    if not (viewer.staff or viewer.principal.user_id == promoter.user_id):
        raise not_found(f"promoter {promoter.id}")
    return PromoterOut(
        promoter_id=promoter.id, user_id=promoter.user_id, nickname=promoter.nickname,
        status=promoter.status, referral_code=profile.referral_code, window_id=window.id,
        window_name=window.name, channels_finder_id=window.channels_finder_id,
        agreement_version=profile.agreement_version, agreement_accepted_at=profile.agreement_accepted_at,
        real_name=profile.real_name_masked, id_number=profile.id_number_masked, referrer=referrer)


class SupplierOut(BaseModel):
    id: int
    owner_user_id: int
    name: str
    status: str
    service_fee_bps: int | None
    kind: str | None = None
    licence_no: str | None = None
    contact_name: str | None = None
    contact_phone: str | None = None
    categories: list[str] = []
    documents: list[dict] = []
    review_note: str = ""
    resubmissions: int = 0
    escalations: int = 0
    suspended_reason: str | None = None
    reviewed_at: datetime | None = None


def supplier_view(viewer: Viewer, supplier: Supplier, profile) -> SupplierOut:
    """A supplier's profile (licence, contact name and phone, documents, fee): its owner and the
    platform's staff only; anyone else gets 404."""
    if not (viewer.staff or viewer.principal.user_id == supplier.owner_user_id):
        raise not_found(f"supplier {supplier.id}")
    out = SupplierOut(id=supplier.id, owner_user_id=supplier.owner_user_id, name=supplier.name,
                      status=supplier.status,
                      service_fee_bps=supplier.service_fee_bps if supplier.status in ("active", "suspended") else None)
    if profile is not None:
        out = out.model_copy(update=dict(
            kind=profile.kind, licence_no=profile.licence_no, contact_name=profile.contact_name,
            contact_phone=profile.contact_phone, categories=profile.categories, documents=profile.documents,
            review_note=profile.review_note, resubmissions=profile.resubmissions,
            escalations=profile.escalations, suspended_reason=profile.suspended_reason,
            reviewed_at=profile.reviewed_at))
    return out


# --- outlet staff -----------------------------------------------------------------------------
class HandOverLine(BaseModel):
    title: str
    quantity: int


class PickupScanOut(BaseModel):
    """What the outlet's scan needs: which order, that it is now picked up, what to hand over.
    Nothing about the buyer."""

    order_no: str
    status: OrderStatus
    outlet_id: int
    hand_over: list[HandOverLine]


def pickup_scan_view(s, order_no: str, status: OrderStatus, outlet_id: int) -> PickupScanOut:
    lines = s.execute(select(OrderLine.title, OrderLine.quantity, OrderLine.refund_claimed_quantity)
                      .where(OrderLine.order_no == order_no).order_by(OrderLine.id)).all()
    return PickupScanOut(order_no=order_no, status=status, outlet_id=outlet_id,
                         hand_over=[HandOverLine(title=t, quantity=q - r) for t, q, r in lines if q > r])
