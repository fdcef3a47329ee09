"""Commission rules (DESIGN.md pay rules).

Commission is paid for selling goods, computed only from what was actually paid for the line,
at most 3 tiers deep (default 1: the seller's own window). Every share rounds down; whatever a
tier cannot pay, and every rounding remainder, stays with the platform.
"""

from __future__ import annotations

from dataclasses import dataclass

from domain.money import BPS_WHOLE, apply_bps

MAX_TIERS = 3


class PolicyRefused(ValueError):
    pass


@dataclass(frozen=True)
class CommissionPolicy:
    """`self_purchase_commission` off (default): an order a promoter buys from their own window
    earns nobody any commission — buying is never a way to earn."""

    tiers: int = 1
    tier_rates_bps: tuple[int, ...] = (BPS_WHOLE,)
    self_purchase_commission: bool = False

    def __post_init__(self) -> None:
        if not 1 <= self.tiers <= MAX_TIERS:
            raise PolicyRefused(f"commission depth {self.tiers} refused: at most {MAX_TIERS} tiers")
        if len(self.tier_rates_bps) < self.tiers:
            raise PolicyRefused("a rate is needed for every tier")
        rates = self.tier_rates_bps[: self.tiers]
        if any(r < 0 for r in rates) or sum(rates) > BPS_WHOLE:
            raise PolicyRefused("tier rates must be >= 0 and add up to at most 100% of the pool")


@dataclass(frozen=True)
class SkuCommission:
    """A SKU pays either a rate of the paid amount or a fixed amount per unit."""

    rate_bps: int | None = None
    fixed_fen_per_unit: int | None = None


def line_commission_pool(paid_fen: int, quantity: int, rule: SkuCommission) -> int:
    """The commission a line generates, never more than what was paid for it."""
    if rule.fixed_fen_per_unit is not None:
        pool = rule.fixed_fen_per_unit * quantity
    elif rule.rate_bps is not None:
        pool = apply_bps(paid_fen, rule.rate_bps)
    else:
        pool = 0
    return min(pool, paid_fen)


def split_by_tier(pool_fen: int, policy: CommissionPolicy, chain_length: int) -> list[int]:
    """Shares for tier 1..n of the referral chain present (`chain_length` promoters, the seller
    first). Tiers beyond the policy or the chain get nothing; their share stays with the platform."""
    paid_tiers = min(policy.tiers, chain_length)
    return [apply_bps(pool_fen, policy.tier_rates_bps[i]) for i in range(paid_tiers)]


@dataclass(frozen=True)
class PolicyVersion:
    """A policy as an operator set it. Versions are kept; each paid order records the version
    in force when it was paid and is settled by it."""

    version: int
    policy: CommissionPolicy


def policy_from_rates(tiers: int, tier_rates_bps: list[int] | tuple[int, ...],
                      self_purchase_commission: bool = False) -> CommissionPolicy:
    """Validate an operator's change: more than 3 tiers, or rates over 100%, is refused."""
    if not 1 <= tiers <= MAX_TIERS:
        raise PolicyRefused(f"commission depth {tiers} refused: at most {MAX_TIERS} tiers; the "
                            "platform pays for selling goods, never for recruiting")
    if len(tier_rates_bps) != tiers:
        raise PolicyRefused(f"give exactly one rate per tier ({tiers})")
    return CommissionPolicy(tiers=tiers, tier_rates_bps=tuple(tier_rates_bps),
                            self_purchase_commission=self_purchase_commission)
