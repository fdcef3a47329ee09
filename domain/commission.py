"""Commission rules (DESIGN.md pay rules).

Commission is paid for selling goods, computed only from what was actually paid for the line,
never deeper than the ceiling `COMMISSION_TIERS` (default 1: the seller's own window; at most
`MAX_TIERS` = 3). The ceiling binds every policy version: a version deeper than it is refused,
and one stored before the ceiling was lowered pays only down to it. Every tier a policy has
needs an explicit rate above 0. Nobody earns on a purchase made inside the seller's chain
(domain/sales.py). Every share rounds down; whatever a tier cannot pay, and every rounding
remainder, stays with the platform.
"""

from __future__ import annotations

from dataclasses import dataclass

from domain.money import BPS_WHOLE, apply_bps

MAX_TIERS = 3


class PolicyRefused(ValueError):
    pass


@dataclass(frozen=True)
class CommissionPolicy:
    """Tiers and their rates (share of a line's commission pool, tier 1 = the seller). There is
    no switch for self-purchase commission: a purchase made inside the seller's chain earns
    nobody anything (domain/sales.py)."""

    tiers: int = 1
    tier_rates_bps: tuple[int, ...] = (BPS_WHOLE,)

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


def within_ceiling(policy: CommissionPolicy, ceiling: int) -> CommissionPolicy:
    """The policy as it pays under the ceiling: a version stored when the ceiling was higher
    pays only down to the ceiling (the deeper tiers' shares stay with the platform)."""
    ceiling = max(1, min(ceiling, MAX_TIERS))
    if policy.tiers <= ceiling:
        return policy
    return CommissionPolicy(tiers=ceiling, tier_rates_bps=policy.tier_rates_bps[:ceiling])


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
                      ceiling: int = MAX_TIERS) -> CommissionPolicy:
    """Validate a policy (an operator's version, or the settings' first one): deeper than the
    ceiling `COMMISSION_TIERS` (itself at most 3), a tier without an explicit rate above 0, or
    rates over 100% of the pool, is refused."""
    ceiling = min(ceiling, MAX_TIERS)
    if not 1 <= tiers <= MAX_TIERS:
        raise PolicyRefused(f"commission depth {tiers} refused: at most {MAX_TIERS} tiers; the "
                            "platform pays for selling goods, never for recruiting")
    if tiers > ceiling:
        raise PolicyRefused(f"commission depth {tiers} refused: COMMISSION_TIERS caps every policy at "
                            f"{ceiling} tier{'s' if ceiling > 1 else ''}")
    if len(tier_rates_bps) != tiers:
        raise PolicyRefused(f"give exactly one rate per tier: {tiers} tier{'s' if tiers > 1 else ''}, "
                            f"{len(tier_rates_bps)} rate{'s' if len(tier_rates_bps) != 1 else ''} given")
    missing = [i + 1 for i, rate in enumerate(tier_rates_bps) if rate <= 0]
    if missing:
        raise PolicyRefused(f"tier {', '.join(map(str, missing))} has no rate: give every tier a rate above 0 "
                            "(in basis points of the SKU commission), or use fewer tiers")
    return CommissionPolicy(tiers=tiers, tier_rates_bps=tuple(tier_rates_bps))
