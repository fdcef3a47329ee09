"""Risk rules: who looks like one person behind many buyer accounts, who returns too often.

A finding is a flag for support to review — never a block: the order or refund it points at
goes on exactly as it would have. Devices, IP addresses and shipping addresses are kept only
as keyed fingerprints (HMAC), enough to see that two accounts share one, not what it is.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from datetime import timedelta
from enum import StrEnum

from pydantic import BaseModel


class RiskKind(StrEnum):
    SHARED_DEVICE = "shared_device"
    SHARED_IP = "shared_ip"
    SHARED_ADDRESS = "shared_address"
    FREQUENT_RETURNS = "frequent_returns"
    LARGE_REFUND = "large_refund"          # noted for support; the refund itself goes ahead


class RiskStatus(StrEnum):
    OPEN = "open"
    CLEARED = "cleared"        # looked at: nothing wrong
    CONFIRMED = "confirmed"    # looked at: a real finding


class RiskRules(BaseModel):
    window: timedelta = timedelta(days=30)
    accounts_per_device: int = 3
    accounts_per_ip: int = 5
    accounts_per_address: int = 3


def fingerprint(key: str, kind: str, value: str | None) -> str | None:
    """A keyed hash of a device id, IP or address; None for nothing given."""
    if value is None or not value.strip():
        return None
    return hmac.new(f"chuchuang:risk:{key}".encode(), f"{kind}:{value.strip()}".encode(),
                    hashlib.sha256).hexdigest()


_NOISE = re.compile(r"[\s,，.。#号室\-]+")


def address_key(address: dict | None) -> str | None:
    """One string per physical address however it was typed (spaces, punctuation, 号/室),
    without the receiver's name or phone: two accounts shipping to one door look alike."""
    if not address:
        return None
    parts = [str(address.get(k) or "") for k in ("province", "city", "district", "detail")]
    joined = _NOISE.sub("", "".join(parts)).lower()
    return joined or None


def threshold(rules: RiskRules, kind: RiskKind) -> int:
    return {RiskKind.SHARED_DEVICE: rules.accounts_per_device, RiskKind.SHARED_IP: rules.accounts_per_ip,
            RiskKind.SHARED_ADDRESS: rules.accounts_per_address}[kind]


def findings(rules: RiskRules, accounts_sharing: dict[RiskKind, int]) -> list[tuple[RiskKind, str]]:
    """Which sharing counts (distinct buyer accounts on one fingerprint in the window, this
    order's buyer included) reach their threshold, with a note for the reviewer."""
    return [(kind, f"{count} buyer accounts on one {kind.value.removeprefix('shared_')} "
                   f"in {rules.window.days} days (threshold {threshold(rules, kind)})")
            for kind, count in accounts_sharing.items() if count >= threshold(rules, kind)]
