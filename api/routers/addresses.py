"""The buyer's address book (收货地址): add, edit, delete, pick the default. Each buyer sees and
changes only their own (someone else's address is indistinguishable from a missing one). Kept
like an order's shipping address; never logged. Checkout (POST /cart/checkout) takes an id
from here instead of a typed address; region_code (GB/T 2260) is what freight is charged by."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter, Depends, Path, Request
from pydantic import BaseModel, Field
from sqlalchemy import func, select, text, update
from sqlalchemy.orm import Session

from api.auth import Principal, require_roles
from api.deps import sessions_of
from api.errors import ApiError, not_found
from db.storefront_models import Address
from domain.orders import ShippingAddress
from domain.regions import BadRegion, check_address_code

router = APIRouter(prefix="/addresses", tags=["addresses"])
OWNERS = ("buyer", "promoter")  # whoever buys keeps addresses: a promoter buying is a buyer too
ADDRESS_ID = Path(ge=1, le=2**31 - 1)
BOOK_LOCK = 71_901  # advisory lock namespace of address books


class AddressBody(ShippingAddress):
    region_code: str = Field(pattern=r"^\d{6}$", description="GB/T 2260 code of the county (or city), as the "
                                                             "mini program's region picker gives it, e.g. 310115")
    is_default: bool = Field(default=False, description="make it the default (the first address always is)")


class AddressOut(AddressBody):
    id: int
    created_at: datetime
    updated_at: datetime


def address_of(s: Session, principal: Principal, address_id: int, *, lock: bool = False) -> Address:
    """The principal's own address, or 404 (another buyer's looks missing)."""
    address = s.get(Address, address_id, with_for_update=lock)
    if address is None or address.user_id != principal.user_id:
        raise not_found(f"address {address_id}")
    return address


def shipping_address(address: Address) -> ShippingAddress:
    return ShippingAddress(receiver=address.receiver, phone=address.phone, province=address.province,
                           city=address.city, district=address.district, detail=address.detail)


def _view(address: Address) -> AddressOut:
    return AddressOut.model_validate(address, from_attributes=True)


def _checked(body: AddressBody) -> AddressBody:
    try:
        check_address_code(body.region_code, body.province)
    except BadRegion as err:
        raise ApiError(422, "BAD_REGION", str(err)) from err
    return body


def _make_default(s: Session, user_id: int, address: Address) -> None:
    s.execute(update(Address).where(Address.user_id == user_id, Address.is_default, Address.id != address.id)
              .values(is_default=False))
    s.flush()
    address.is_default = True


def _lock_book(s: Session, user_id: int) -> None:
    """One change to a buyer's book at a time (the default and the size are per book)."""
    s.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": BOOK_LOCK * 2**32 + user_id})


@router.get("", response_model=list[AddressOut], summary="My addresses, the default first")
def list_addresses(request: Request, principal: Principal = Depends(require_roles(*OWNERS))) -> list[AddressOut]:
    with sessions_of(request)() as s:
        rows = s.scalars(select(Address).where(Address.user_id == principal.user_id)
                         .order_by(Address.is_default.desc(), Address.id.desc()))
        return [_view(a) for a in rows]


@router.post("", status_code=201, response_model=AddressOut, summary="Add an address",
             responses={409: {"description": "ADDRESS_BOOK_FULL"}})
def add_address(body: AddressBody, request: Request,
                principal: Principal = Depends(require_roles(*OWNERS))) -> AddressOut:
    _checked(body)
    limit = request.app.state.settings.address_book_size
    with sessions_of(request).begin() as s:
        _lock_book(s, principal.user_id)
        count = s.scalar(select(func.count()).select_from(Address).where(Address.user_id == principal.user_id))
        if count >= limit:
            raise ApiError(409, "ADDRESS_BOOK_FULL", f"an address book holds at most {limit} addresses")
        address = Address(user_id=principal.user_id, is_default=False,
                          **body.model_dump(exclude={"is_default"}))
        s.add(address)
        s.flush()
        if body.is_default or count == 0:
            _make_default(s, principal.user_id, address)
        s.flush()
        return _view(address)


@router.get("/{address_id}", response_model=AddressOut, summary="One of my addresses")
def get_address(request: Request, address_id: int = ADDRESS_ID,
                principal: Principal = Depends(require_roles(*OWNERS))) -> AddressOut:
    with sessions_of(request)() as s:
        return _view(address_of(s, principal, address_id))


@router.put("/{address_id}", response_model=AddressOut, summary="Change one of my addresses",
            description="Orders already placed keep the address they were placed with.")
def edit_address(body: AddressBody, request: Request, address_id: int = ADDRESS_ID,
                 principal: Principal = Depends(require_roles(*OWNERS))) -> AddressOut:
    _checked(body)
    with sessions_of(request).begin() as s:
        _lock_book(s, principal.user_id)
        address = address_of(s, principal, address_id, lock=True)
        for field, value in body.model_dump(exclude={"is_default"}).items():
            setattr(address, field, value)
        address.updated_at = datetime.now(UTC)
        if body.is_default:
            _make_default(s, principal.user_id, address)
        s.flush()
        return _view(address)


@router.put("/{address_id}/default", response_model=AddressOut, summary="Make one of my addresses the default")
def set_default(request: Request, address_id: int = ADDRESS_ID,
                principal: Principal = Depends(require_roles(*OWNERS))) -> AddressOut:
    with sessions_of(request).begin() as s:
        _lock_book(s, principal.user_id)
        address = address_of(s, principal, address_id, lock=True)
        _make_default(s, principal.user_id, address)
        s.flush()
        return _view(address)


@router.delete("/{address_id}", status_code=204,
               summary="Delete one of my addresses (the newest other one becomes the default)")
def delete_address(request: Request, address_id: int = ADDRESS_ID,
                   principal: Principal = Depends(require_roles(*OWNERS))) -> None:
    with sessions_of(request).begin() as s:
        _lock_book(s, principal.user_id)
        address = address_of(s, principal, address_id, lock=True)
        was_default = address.is_default
        s.delete(address)
        s.flush()
        if was_default:
            newest = s.scalar(select(Address).where(Address.user_id == principal.user_id)
                              .order_by(Address.id.desc()).limit(1))
            if newest is not None:
                newest.is_default = True
