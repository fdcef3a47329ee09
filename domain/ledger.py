"""Double-entry bookkeeping rules: account names, which side is normal, and the postings
each business event makes. Signed amounts: debit > 0, credit < 0; a transaction sums to zero.

    payment      Dr wechatpay:clearing            Cr orders:held
    commission   Dr orders:held                   Cr promoter:{id}:pending      (per line, tier)
    completion   Dr promoter:{id}:pending         Cr promoter:{id}:available
                 Dr orders:held                   Cr supplier:{id}:payable, platform:revenue
    withdrawal   Dr promoter:{id}:available       Cr promoter:{id}:withdrawing
      paid       Dr promoter:{id}:withdrawing     Cr wechatpay:clearing         (money left us)
      returned   Dr promoter:{id}:withdrawing     Cr promoter:{id}:available
    split        Dr supplier:{id}:payable         Cr wechatpay:clearing         (profit sharing paid the
                                                                                  supplier: money left us)

    shop payment Dr channels:clearing             Cr orders:held                (paid in the Channels
                                                                                  shop; its refunds
                                                                                  credit it back)

So Σ credit-side balances == wechatpay:clearing + channels:clearing == payments − refunds −
payouts − splits, always.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

CLEARING = "wechatpay:clearing"
# what buyers paid in the Channels shop (视频号小店), owed to us by the shop's settlement
CHANNELS_CLEARING = "channels:clearing"
DEBIT_ACCOUNTS = (CLEARING, CHANNELS_CLEARING)
ORDERS_HELD = "orders:held"
PLATFORM_REVENUE = "platform:revenue"


def promoter_pending(promoter_id: int) -> str:
    return f"promoter:{promoter_id}:pending"


def promoter_available(promoter_id: int) -> str:
    return f"promoter:{promoter_id}:available"


def promoter_withdrawing(promoter_id: int) -> str:
    """Withdrawals on their way to WeChat change: out of `available` at request, then out to
    `wechatpay:clearing` when paid or back to `available` when not."""
    return f"promoter:{promoter_id}:withdrawing"


def supplier_payable(supplier_id: int) -> str:
    return f"supplier:{supplier_id}:payable"


def normal_side(code: str) -> str:
    return "debit" if code in DEBIT_ACCOUNTS else "credit"


def owner_of(code: str) -> tuple[str, int | None]:
    parts = code.split(":")
    if parts[0] in ("promoter", "supplier"):
        return parts[0], int(parts[1])
    return "platform", None


@dataclass(frozen=True)
class Posting:
    account: str
    amount_fen: int  # debit > 0, credit < 0
    order_line_id: int | None = None
    tier: int | None = None
    rule: str = ""


class Unbalanced(ValueError):
    pass


def transfer(debit: str, credit: str, amount_fen: int, **detail) -> list[Posting]:
    """Move `amount_fen` from the credit-normal `debit` account into `credit`."""
    if amount_fen <= 0:
        return []
    return [Posting(debit, amount_fen, **detail), Posting(credit, -amount_fen, **detail)]


def check_balanced(postings: list[Posting]) -> None:
    if not postings:
        raise Unbalanced("a transaction needs entries")
    if sum(p.amount_fen for p in postings) != 0:
        raise Unbalanced(f"entries sum to {sum(p.amount_fen for p in postings)}, not 0")
    if any(p.amount_fen == 0 for p in postings):
        raise Unbalanced("zero-amount entry")


def balance_delta(code: str, amount_fen: int) -> int:
    """How an entry moves the account's balance on its normal side."""
    return amount_fen if normal_side(code) == "debit" else -amount_fen


def entry_hash(prev_hash: str, *, key: str, account: str, amount_fen: int, line: int | None,
               tier: int | None, rule: str) -> str:
    payload = json.dumps(
        [prev_hash, key, account, amount_fen, line, tier, rule], separators=(",", ":")
    )
    return hashlib.sha256(payload.encode()).hexdigest()
