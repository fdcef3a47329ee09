"""Money is integer fen (分); rates are basis points (1 bp = 0.01%). Never floats."""

from __future__ import annotations

BPS_WHOLE = 10_000


def apply_bps(amount_fen: int, bps: int) -> int:
    """`amount × bps / 10000`, rounded down (the remainder stays with the platform)."""
    if amount_fen < 0 or not 0 <= bps <= BPS_WHOLE:
        raise ValueError(f"apply_bps needs amount >= 0 and 0 <= bps <= 10000, got {amount_fen}, {bps}")
    return amount_fen * bps // BPS_WHOLE


def yuan(fen: int) -> str:
    """Display only: 12345 → '123.45'."""
    sign = "-" if fen < 0 else ""
    return f"{sign}{abs(fen) // 100}.{abs(fen) % 100:02d}"
