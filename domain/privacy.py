"""Masked forms of a buyer's personal data, for parties who may know *that* someone bought but
not who: 王*明, 138****8000, province and city only."""

from __future__ import annotations

import hashlib
import hmac

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


def phone_hash(phone: str, key: str) -> str:
    """A bound phone number, keyed (identity-hash key, so it rotates with ID numbers): enough to
    see that two accounts bound one number, never the number. Digits only, with the country code
    (86-13800138000), so however it was written it hashes the same."""
    digits = "-".join("".join(ch for ch in part if ch.isdigit()) for part in phone.split("-", 1))
    return hmac.new(f"chuchuang:phone:{key}".encode(), digits.encode(), hashlib.sha256).hexdigest()
