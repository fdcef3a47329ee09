"""Promoter levels, team bonus and regional agents (DESIGN.md pay rules). Pure: no I/O.

Everything here is off by default and operator-configured, and stays inside the pay rules:

* a **level** is reached by the promoter's own sales only (GMV of completed, non-refunded orders
  sold through their window over `level_period`), never by team size, head-count or purchases;
  no fee and no purchase reaches or keeps a level. A level may raise the seller's own rate
  (`uplift_bps` of what was paid for each line, on top of the SKU commission);
* a **team bonus** (`team_bonus_bps`) is paid monthly on the *sales* (GMV, domain/sales.py) of
  the promoter's downline from tier 2 down to `team_bonus_depth` — the promoter is tier 1 — and
  never deeper than the one ceiling of all upline pay, `COMMISSION_TIERS` (default 1: no team
  bonus at all; at most 3); never on recruiting; it is paid by the platform out of its own
  revenue;
* a **regional agent**, appointed by operators for one province, city or county, earns a rate
  of what was paid for goods shipped to that region.

Commission, uplift and regional bonus come out of the line's price less the platform's service
fee; a line never pays more than that (each share rounds down; what cannot be paid stays with
the platform and the supplier, recorded). A config that could pay more is refused.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from domain.commission import MAX_TIERS, PolicyRefused
from domain.money import BPS_WHOLE, apply_bps

REGION_LEVELS = ("province", "city", "county")
MAX_LEVELS = 10
ADDRESS_FIELDS = {"province": "province", "city": "city", "county": "district"}


@dataclass(frozen=True)
class Level:
    name: str
    min_gmv_fen: int          # own completed sales over the level period that reach it
    uplift_bps: int = 0       # extra own rate, of what was paid for each line
    team_bonus_bps: int = 0   # monthly, of the downline's sales, tier 2 to the depth (never beyond COMMISSION_TIERS)


@dataclass(frozen=True)
class BonusPolicy:
    levels: tuple[Level, ...] = ()
    team_bonus_depth: int = MAX_TIERS      # deepest tier a team bonus reaches (the promoter is tier 1)
    regional_bps: dict[str, int] = field(default_factory=lambda: {k: 0 for k in REGION_LEVELS})

    def team_depth(self, tier_ceiling: int) -> int:
        """The deepest tier a team bonus reaches under the ceiling COMMISSION_TIERS now (below 2:
        no team bonus is paid), whatever depth the version was stored with."""
        return min(self.team_bonus_depth, tier_ceiling, MAX_TIERS)

    @property
    def is_off(self) -> bool:
        return (not any(lv.uplift_bps or lv.team_bonus_bps for lv in self.levels)
                and not any(self.regional_bps.values()))


def validate(levels: list[Level] | tuple[Level, ...], regional_bps: dict[str, int], *, team_bonus_depth: int,
             max_service_fee_bps: int, min_service_fee_bps: int, tier_ceiling: int = MAX_TIERS) -> BonusPolicy:
    """An operator's config, or PolicyRefused (nothing written). `tier_ceiling` is
    COMMISSION_TIERS: a team bonus reaching deeper than it is refused."""
    levels = tuple(levels)
    if len(levels) > MAX_LEVELS:
        raise PolicyRefused(f"at most {MAX_LEVELS} levels")
    names = [lv.name.strip() for lv in levels]
    if any(not n or len(n) > 20 for n in names) or len(set(names)) != len(names):
        raise PolicyRefused("each level needs its own name (1-20 characters)")
    for previous, lv in zip((None, *levels), levels):
        if lv.min_gmv_fen <= 0:
            raise PolicyRefused(f"level {lv.name}: the threshold is own sales GMV and must be above 0 "
                                "(a level is earned by selling, never given for joining)")
        if previous is not None and lv.min_gmv_fen <= previous.min_gmv_fen:
            raise PolicyRefused("levels are ordered by strictly rising sales thresholds")
        if not 0 <= lv.uplift_bps <= BPS_WHOLE or not 0 <= lv.team_bonus_bps <= BPS_WHOLE:
            raise PolicyRefused(f"level {lv.name}: rates are 0..{BPS_WHOLE} bps")
    if not 2 <= team_bonus_depth <= MAX_TIERS:
        raise PolicyRefused(f"team bonus depth {team_bonus_depth} refused: a team bonus reaches tier 2 or 3, "
                            f"never deeper than {MAX_TIERS} tiers; the platform pays for selling goods, "
                            "never for recruiting")
    unknown = set(regional_bps) - set(REGION_LEVELS)
    if unknown:
        raise PolicyRefused(f"regional rates are per {', '.join(REGION_LEVELS)}; not {sorted(unknown)}")
    regional = {k: int(regional_bps.get(k, 0)) for k in REGION_LEVELS}
    if any(v < 0 for v in regional.values()):
        raise PolicyRefused("regional rates must be >= 0")
    room = BPS_WHOLE - max_service_fee_bps
    most_uplift = max((lv.uplift_bps for lv in levels), default=0)
    if most_uplift + sum(regional.values()) > room:
        raise PolicyRefused(
            f"level uplift ({most_uplift} bps) plus regional rates ({sum(regional.values())} bps) could make a "
            f"line pay more than its price less the platform fee (at most {room} bps)")
    # The team bonus is the platform's own money: two uplines (tiers 2 and 3) may each earn it on
    # one sale, and together never more than the smallest service fee that sale brought in.
    most_team = max((lv.team_bonus_bps for lv in levels), default=0)
    payers = team_bonus_depth - 1
    if most_team * payers > min_service_fee_bps:
        raise PolicyRefused(
            f"team bonus {most_team} bps on {payers} tier(s) would exceed the platform's "
            f"minimum service fee ({min_service_fee_bps} bps) on the same sales")
    # one ceiling for every upline pay: COMMISSION_TIERS
    if any(lv.team_bonus_bps for lv in levels):
        if tier_ceiling < 2:
            raise PolicyRefused("team bonus refused: COMMISSION_TIERS is 1, so no pay reaches beyond the seller's "
                                "own sales (a team bonus is paid on tier-2 and deeper sales)")
        if team_bonus_depth > tier_ceiling:
            raise PolicyRefused(f"team bonus depth {team_bonus_depth} refused: COMMISSION_TIERS caps every upline "
                                f"pay at {tier_ceiling} tiers")
    return BonusPolicy(levels=levels, team_bonus_depth=team_bonus_depth, regional_bps=regional)


def level_for(policy: BonusPolicy, own_gmv_fen: int) -> tuple[int, Level] | None:
    """(rank from 1, level) the promoter's own sales reach, or None."""
    reached = None
    for rank, lv in enumerate(policy.levels, start=1):
        if own_gmv_fen >= lv.min_gmv_fen:
            reached = (rank, lv)
    return reached


@dataclass(frozen=True)
class LineExtras:
    uplift_fen: int
    regional_fen: dict[str, int]  # region level -> amount, only where an agent is appointed

    @property
    def total_fen(self) -> int:
        return self.uplift_fen + sum(self.regional_fen.values())


def line_extras(*, paid_fen: int, service_fee_fen: int, commission_fen: int, uplift_bps: int,
                regional_bps: dict[str, int], agents: set[str]) -> LineExtras:
    """What a line pays on top of its SKU commission: the seller's level uplift first, then each
    appointed regional agent (province, city, county), each rounded down and never beyond what
    is left of the price less the platform fee and the commission."""
    room = max(0, paid_fen - service_fee_fen - commission_fen)
    uplift = min(apply_bps(paid_fen, uplift_bps), room) if uplift_bps > 0 else 0
    room -= uplift
    regional: dict[str, int] = {}
    for level in REGION_LEVELS:
        bps = regional_bps.get(level, 0)
        if level not in agents or bps <= 0:
            continue
        amount = min(apply_bps(paid_fen, bps), room)
        room -= amount
        if amount > 0:
            regional[level] = amount
    return LineExtras(uplift_fen=uplift, regional_fen=regional)


def team_bonus(gmv_fen: int, level: Level | None) -> int:
    """A month's team bonus on the downline's sales it reaches (rounded down)."""
    if level is None or level.team_bonus_bps <= 0 or gmv_fen <= 0:
        return 0
    return apply_bps(gmv_fen, level.team_bonus_bps)


def team_bonus_taken_back(*, bps: int, gmv_fen: int, refunded_before_fen: int, refund_fen: int) -> tuple[int, int]:
    """(fen of the order newly refunded, bonus taken back for it) when a refund reaches an order a
    team bonus was paid on. Taken back cumulatively per order, rounded down like the bonus, so
    all an order's refunds together never take back more than its share of the bonus."""
    refunded = min(refund_fen, gmv_fen - refunded_before_fen)
    if refunded <= 0 or bps <= 0:
        return 0, 0
    return refunded, apply_bps(refunded_before_fen + refunded, bps) - apply_bps(refunded_before_fen, bps)


def region_of(address: dict | None) -> dict[str, str]:
    """The order's region names as stored with its shipping address (province, city, district)."""
    if not address:
        return {}
    out = {}
    for level, key in ADDRESS_FIELDS.items():
        value = str(address.get(key) or "").strip()
        if value:
            out[level] = value
    return out


def region_key(level: str, province: str, city: str | None = None, county: str | None = None) -> str:
    """One key per region: `province/city/county`, as far down as the level goes."""
    if level not in REGION_LEVELS:
        raise PolicyRefused(f"a region is a {', '.join(REGION_LEVELS)}")
    parts = [province, city, county][: REGION_LEVELS.index(level) + 1]
    if any(not (p or "").strip() for p in parts):
        raise PolicyRefused(f"a {level} needs " + ", ".join(REGION_LEVELS[: REGION_LEVELS.index(level) + 1]))
    return "/".join(p.strip() for p in parts)


def order_region_keys(address: dict | None) -> dict[str, str]:
    """region level -> key of the regions an order shipped to `address` is in."""
    names = region_of(address)
    keys, parts = {}, []
    for level in REGION_LEVELS:
        if level not in names:
            break
        parts.append(names[level])
        keys[level] = "/".join(parts)
    return keys

