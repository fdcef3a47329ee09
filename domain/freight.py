"""Freight (运费模板): what a supplier charges to deliver an order, and when it comes back.

A supplier's template charges by the piece or by weight (grams, the SKU's weight): the first
`first_units` cost `first_fee_fen`, every further `additional_units` begun cost
`additional_fee_fen`. A region rule (GB/T 2260 codes of provinces, cities or counties) overrides
the template's default for the addresses inside it, the most specific region winning; regions in
`excluded_regions` are not delivered to at all. Goods of the template worth `free_above_fen` or
more (their price before coupons) ship free.

Freight is part of what the buyer pays, belongs to the supplier and is never commissionable: it
is kept apart from the order's lines, so fee and commission (computed per line) never see it.

Returning it (`freight_refund`) — one rule: freight comes back with the refund that leaves no
unit of the order kept, when nothing of the order had shipped yet, or when that refund is a
quality claim (the supplier's fault), or when the platform could not keep the payment. A refund
of some units only never returns freight, and neither does a no-reason return after shipment:
the parcel did travel."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, model_validator

from domain.regions import BadRegion, check_code, contains, level
from domain.refunds import RefundKind

KINDS = ("piece", "weight")
# refunds that return freight even after shipment, when they leave nothing of the order kept
FREIGHT_BACK_AFTER_SHIPMENT = (RefundKind.QUALITY_RETURN, RefundKind.QUALITY_REFUND, RefundKind.PAYMENT_FAILED)


class NotDeliverable(Exception):
    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code, self.message = code, message


class Charge(BaseModel):
    """First units and their fee, then a fee per further block of units begun. Units are pieces,
    or grams for a by-weight template."""

    first_units: int = Field(ge=1, le=1_000_000)
    first_fee_fen: int = Field(ge=0, le=10_000_000)
    additional_units: int = Field(ge=1, le=1_000_000)
    additional_fee_fen: int = Field(ge=0, le=10_000_000)

    def fee(self, units: int) -> int:
        if units <= 0:
            return 0
        extra = max(0, units - self.first_units)
        blocks = -(-extra // self.additional_units)  # every block begun is charged
        return self.first_fee_fen + blocks * self.additional_fee_fen


class RegionCharge(Charge):
    regions: list[str] = Field(min_length=1, max_length=500, description="GB/T 2260 codes it applies to")


class TemplateRules(BaseModel):
    kind: Literal["piece", "weight"]
    default: Charge
    regions: list[RegionCharge] = Field(default_factory=list, max_length=100)
    free_above_fen: int | None = Field(default=None, ge=1, description="goods of this template worth this much "
                                                                       "or more (before coupons) ship free")
    excluded_regions: list[str] = Field(default_factory=list, max_length=500,
                                        description="GB/T 2260 codes not delivered to (e.g. remote regions)")

    @model_validator(mode="after")
    def _codes(self) -> TemplateRules:
        seen: set[str] = set()
        for code in [c for rule in self.regions for c in rule.regions] + self.excluded_regions:
            try:
                check_code(code)
            except BadRegion as err:
                raise ValueError(str(err)) from err
            if code in seen:
                raise ValueError(f"region {code} appears twice in the template")
            seen.add(code)
        return self

    def charge_for(self, address_code: str) -> Charge:
        """The charge for an address, or NotDeliverable when the address is excluded."""
        if any(contains(region, address_code) for region in self.excluded_regions):
            raise NotDeliverable("NOT_DELIVERABLE", f"the supplier does not deliver to region {address_code}")
        best: tuple[int, Charge] | None = None
        for rule in self.regions:
            for region in rule.regions:
                if contains(region, address_code) and (best is None or level(region) > best[0]):
                    best = (level(region), rule)
        return best[1] if best else self.default


class FreightItem(BaseModel):
    """One line as freight sees it: its template (None: ships free), units and price."""

    template_id: int | None
    quantity: int = Field(gt=0)
    weight_g: int = Field(default=0, ge=0)
    goods_fen: int = Field(ge=0)


def order_freight(templates: dict[int, TemplateRules], items: list[FreightItem], address_code: str) -> int:
    """The freight of one supplier's order to `address_code`: each template charges for its own
    lines (pieces, or their total weight), free when their goods reach its free_above_fen; the
    parts add up. NotDeliverable when any line's template excludes the address."""
    by_template: dict[int, list[FreightItem]] = {}
    for item in items:
        if item.template_id is not None:
            by_template.setdefault(item.template_id, []).append(item)
    total = 0
    for template_id, group in sorted(by_template.items()):
        rules = templates[template_id]
        charge = rules.charge_for(address_code)
        goods = sum(i.goods_fen for i in group)
        if rules.free_above_fen is not None and goods >= rules.free_above_fen:
            continue
        units = sum(i.quantity * (i.weight_g if rules.kind == "weight" else 1) for i in group)
        total += charge.fee(units)
    return total


def freight_refund(freight_fen: int, *, kind: RefundKind, shipped: bool, nothing_kept: bool) -> int:
    """How much of the order's freight a refund returns (the rule in the module docstring):
    all of it or nothing."""
    if freight_fen <= 0 or not nothing_kept:
        return 0
    if not shipped or kind in FREIGHT_BACK_AFTER_SHIPMENT:
        return freight_fen
    return 0
