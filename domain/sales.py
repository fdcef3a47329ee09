"""What a "sale" is: one rule for the assessment, revival, levels, the team bonus and the team
view (DESIGN.md pay rules). Pure: the query that applies it is db/sales.py.

An order is a sale of the promoter whose window it was sold through when:

1. it is **completed** (its refund window closed);
2. it is **not self-purchased**: the buyer is neither the seller nor anyone up the seller's
   referral chain (`SELF_PURCHASE_DEPTH` promoters, the seller first). An upline buying through a
   downline's window buys for themselves: such an order earns nobody commission, level uplift or
   team bonus, and counts for nobody's assessment, revival, level or team figures;
3. no risk flag on the order is **open** (or confirmed): a flagged order counts once support has
   cleared every flag on it, never while one awaits review;
4. it counts for **what was paid less what was refunded**; an order refunded in full is no sale.

"Orders" counts such orders, "GMV" adds up what each counts for.
"""

from __future__ import annotations

from collections.abc import Iterable

from domain.commission import MAX_TIERS

SELF_PURCHASE_DEPTH = MAX_TIERS  # the seller and the uplines any pay could ever reach


def is_self_purchase(buyer_user_id: int, chain_user_ids: Iterable[int | None]) -> bool:
    """The buyer is the seller or one of the seller's uplines (`chain_user_ids`, seller first)."""
    return any(uid == buyer_user_id for uid in list(chain_user_ids)[:SELF_PURCHASE_DEPTH])


def net_sale_fen(paid_fen: int, refunded_fen: int) -> int:
    """What an order counts for: paid less refunded, never below 0 (0: not a sale)."""
    return max(0, paid_fen - refunded_fen)
