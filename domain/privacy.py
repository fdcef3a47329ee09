"""Masked forms of a buyer's personal data, for parties who may know *that* someone bought but
not who: 王*明, 138****8000, province and city only."""

from __future__ import annotations

MASKED_ADDRESS_FIELDS = ("receiver", "phone", "province", "city")


def mask_person_name(name: str) -> str:
    """王小明 → 王*明, 王明 → 王*, 欧阳小明 → 欧**明; Latin names keep first and last letter."""
    name = (name or "").strip()
    if len(name) <= 1:
        return "*" if name else ""
    if len(name) == 2:
        return name[0] + "*"
    return name[0] + "*" * (len(name) - 2) + name[-1]


def mask_phone(phone: str) -> str:
    """13800138000 → 138****8000; anything shorter than 8 characters is hidden whole."""
    phone = (phone or "").strip()
    if len(phone) < 8:
        return "*" * len(phone)
    return phone[:3] + "*" * (len(phone) - 7) + phone[-4:]


def mask_address(address: dict | None) -> dict | None:
    """Receiver and phone masked, province and city kept; district and street detail dropped."""
    if address is None:
        return None
    return {"receiver": mask_person_name(str(address.get("receiver", ""))),
            "phone": mask_phone(str(address.get("phone", ""))),
            "province": address.get("province", ""), "city": address.get("city", "")}
