"""O2O pickup: outlets near the buyer, the buyer's pickup code, and the outlet's scan."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Depends, Query, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field
from sqlalchemy import func, select

from activities.pickup import code_for_buyer, order_of_code
from api.access import public
from api.auth import Principal, require_roles
from api.deps import run_update, sessions_of
from api.errors import ApiError, not_found
from api.views import PickupScanOut, pickup_scan_view
from db.models import Order, Supplier, User
from db.order_models import Outlet, OutletStaff
from domain.orders import PickupScan
from domain.pickup import distance_km, normalise_code, qr_payload
from workflows.order import OrderWorkflow, workflow_id

router = APIRouter(tags=["pickup"])


class OutletBody(BaseModel):
    name: str = Field(min_length=1, max_length=64)
    address: str = Field(min_length=1, max_length=200)
    latitude: float = Field(ge=-90, le=90)
    longitude: float = Field(ge=-180, le=180)
    supplier_id: int | None = Field(default=None, description="operators only; suppliers add their own")


class OutletOut(BaseModel):
    id: int
    supplier_id: int
    name: str
    address: str
    latitude: float
    longitude: float
    active: bool
    distance_km: float | None = None


class StaffBody(BaseModel):
    user_id: int
    active: bool = True


class PickupOut(BaseModel):
    order_no: str
    code: str
    qr_payload: str
    status: str
    expires_at: datetime
    outlet: OutletOut


class VerifyBody(BaseModel):
    code: str = Field(min_length=6, max_length=80, description="the typed code or the scanned QR payload")


def _own_supplier(s, principal: Principal, supplier_id: int | None) -> int:
    if principal.role == "operator":
        if supplier_id is None or s.get(Supplier, supplier_id) is None:
            raise ApiError(422, "SUPPLIER_REQUIRED", "operators name an existing supplier_id")
        return supplier_id
    own = s.scalar(select(Supplier.id).where(Supplier.owner_user_id == principal.user_id))
    if own is None or (supplier_id is not None and supplier_id != own):
        raise ApiError(403, "FORBIDDEN", "suppliers manage their own outlets")
    return own


@router.post("/outlets", status_code=201, response_model=OutletOut, summary="Open a pickup outlet")
def create_outlet(body: OutletBody, request: Request,
                  principal: Principal = Depends(require_roles("supplier", "operator"))) -> OutletOut:
    with sessions_of(request).begin() as s:
        outlet = Outlet(supplier_id=_own_supplier(s, principal, body.supplier_id), name=body.name,
                        address=body.address, latitude=body.latitude, longitude=body.longitude)
        s.add(outlet)
        s.flush()
        return OutletOut.model_validate(outlet, from_attributes=True)


@router.post("/outlets/{outlet_id}/staff", status_code=204, summary="Let a user verify pickups at an outlet")
def set_staff(outlet_id: int, body: StaffBody, request: Request,
              principal: Principal = Depends(require_roles("supplier", "operator"))) -> None:
    with sessions_of(request).begin() as s:
        outlet = s.get(Outlet, outlet_id)
        if outlet is None:
            raise not_found(f"outlet {outlet_id}")
        _own_supplier(s, principal, outlet.supplier_id)
        user = s.get(User, body.user_id)
        if user is None or user.role != "outlet_staff":
            raise ApiError(422, "NOT_OUTLET_STAFF", "the user must have the outlet_staff role")
        staff = s.get(OutletStaff, body.user_id)
        if staff is None:
            s.add(OutletStaff(user_id=body.user_id, outlet_id=outlet_id, active=body.active))
        else:
            staff.outlet_id, staff.active = outlet_id, body.active


@router.get("/outlets", response_model=list[OutletOut], summary="Open outlets, nearest first")
def list_outlets(request: Request, _: None = Depends(public("outlets are shops open to the public; buyers "
                                                           "pick one before they log in")),
                 lat: float | None = Query(default=None, ge=-90, le=90),
                 lng: float | None = Query(default=None, ge=-180, le=180), supplier_id: int | None = None,
                 limit: int = Query(default=20, ge=1, le=100)) -> list[OutletOut]:
    if (lat is None) != (lng is None):
        raise ApiError(422, "POSITION_INCOMPLETE", "give both lat and lng, or neither")
    with sessions_of(request)() as s:
        query = select(Outlet).where(Outlet.active)
        if supplier_id is not None:
            query = query.where(Outlet.supplier_id == supplier_id)
        if lat is not None:
            # an equirectangular estimate orders candidates in SQL; haversine gives the distance
            dx = (Outlet.longitude - lng) * func.cos(func.radians(lat))
            query = query.order_by((Outlet.latitude - lat) * (Outlet.latitude - lat) + dx * dx)
        outlets = s.scalars(query.order_by(Outlet.id).limit(limit)).all()
        out = [OutletOut.model_validate(o, from_attributes=True) for o in outlets]
        if lat is not None:
            for o in out:
                o.distance_km = round(distance_km(lat, lng, o.latitude, o.longitude), 3)
            out.sort(key=lambda o: o.distance_km)
        return out


@router.get("/orders/{order_no}/pickup", response_model=PickupOut, summary="My pickup code and where to use it")
def my_pickup(order_no: str, request: Request,
              principal: Principal = Depends(require_roles("buyer", "promoter"))) -> PickupOut:
    with sessions_of(request)() as s:
        order = s.get(Order, order_no)
        found = code_for_buyer(s, request.app.state.settings.pickup_code_keys, order_no) if (
            order is not None and order.buyer_user_id == principal.user_id) else None
        if found is None:
            raise not_found(f"pickup code for order {order_no}")
        pickup, code = found
        outlet = s.get(Outlet, pickup.outlet_id)
        return PickupOut(order_no=order_no, code=code, qr_payload=qr_payload(order_no, code), status=pickup.status,
                         expires_at=pickup.expires_at, outlet=OutletOut.model_validate(outlet, from_attributes=True))


@router.post("/pickups/verify", response_model=PickupScanOut,
             summary="Outlet staff scan a pickup code (核销): what to hand over, nothing about the buyer")
async def verify(body: VerifyBody, request: Request,
                 principal: Principal = Depends(require_roles("outlet_staff"))) -> PickupScanOut:
    keys = request.app.state.settings.pickup_code_keys

    def look_up() -> tuple[str, PickupScan]:
        with sessions_of(request)() as s:
            order_no = order_of_code(s, keys, normalise_code(body.code))
            if order_no is None:
                raise ApiError(404, "PICKUP_CODE_NOT_FOUND", "no order has this pickup code")
            staff = s.get(OutletStaff, principal.user_id)
            if staff is None:
                raise ApiError(403, "NOT_OUTLET_STAFF", "this account works at no outlet")
            return order_no, PickupScan(staff_user_id=principal.user_id, outlet_id=staff.outlet_id,
                                        staff_active=staff.active)

    order_no, scan = await run_in_threadpool(look_up)
    progress = await run_update(request, workflow_id(order_no), OrderWorkflow.verify_pickup, scan)

    def answer() -> PickupScanOut:
        with sessions_of(request)() as s:
            return pickup_scan_view(s, order_no, progress.status, scan.outlet_id)

    return await run_in_threadpool(answer)
