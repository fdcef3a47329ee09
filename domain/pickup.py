"""Pickup (O2O 核销) codes and outlet distance.

A code is derived from the order number with a server key (HMAC), so it is unguessable, can be
shown again to the buyer without being stored, and only its keyed hash is kept for lookups.
`attempt` moves to the next code in the unlikely case two orders' codes collide."""

from __future__ import annotations

import hashlib
import hmac
import math

CODE_DIGITS = 12


def pickup_code(key: str, order_no: str, attempt: int = 0) -> str:
    digest = hmac.new(key.encode(), f"pickup:{order_no}:{attempt}".encode(), hashlib.sha256).digest()
    return f"{int.from_bytes(digest[:8], 'big') % 10**CODE_DIGITS:0{CODE_DIGITS}d}"


def code_hash(key: str, code: str) -> str:
    return hmac.new(key.encode(), f"code:{code}".encode(), hashlib.sha256).hexdigest()


def qr_payload(order_no: str, code: str) -> str:
    """What the buyer's QR code encodes; outlet scanners send the code part."""
    return f"CCPK1:{order_no}:{code}"


def normalise_code(scanned: str) -> str:
    """Accept a typed code (spaces allowed) or a scanned QR payload."""
    text = scanned.strip()
    if text.startswith("CCPK1:"):
        text = text.rsplit(":", 1)[-1]
    return "".join(ch for ch in text if not ch.isspace())


def distance_km(lat1: float, lng1: float, lat2: float, lng2: float) -> float:
    """Great-circle (haversine) distance."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lng2 - lng1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    # rounding can lift `a` a hair above 1 for antipodal points: asin would raise
    return 6371.0088 * 2 * math.asin(min(1.0, math.sqrt(a)))
