"""Levels, team and regional bonuses, frozen commission and fake-trade findings, in the
database. Functions take the caller's session (one database transaction per business event);
`BonusActivities` is the commission settlement run's step that pays the month's team bonuses.

Ledger postings (see domain/ledger.py for the accounts):

    level uplift     Dr orders:held        Cr promoter:{seller}:pending   in the tier-1 commission
    regional bonus   Dr orders:held        Cr promoter:{agent}:pending    `order:{no}:regional:{agent}` (tier 0)
      released       Dr promoter:pending   Cr promoter:available          `order:{no}:regional:{agent}:release`
    team bonus       Dr platform:revenue   Cr promoter:{id}:available     `team_bonus:{YYYY-MM}:{id}`
      refunded after Dr promoter:available Cr platform:revenue            in `refund:{refund_no}`
    frozen, then confirmed as fake
                     Dr promoter:pending   Cr platform:revenue (completed) or orders:held (not yet)
                                                                          `order:{no}:commission:forfeit`

Frozen commission has no table of its own: an order with an open risk flag on it (shared device,
IP or address; flags on a buyer's refunds hold nothing) is frozen. Its
commission is not released at completion (so it is in no statement) until support clears every
flag on the order (released then, by the same keys completion uses) or confirms one (forfeited
to the platform). Nothing else about the order changes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import exists, func, select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session, sessionmaker
from temporalio import activity

from activities import ledger
from activities.catalog import take_off_windows
from activities.order_events import record_event
from activities.promoters import notify
from db.bonus_models import (
    BonusPolicyRow,
    FakeTradeFinding,
    OrderLevel,
    RegionalAgent,
    TeamBonus,
    TeamBonusSale,
    WindowClosure,
)
from db.models import (
    LedgerAccount,
    LedgerEntry,
    LedgerTransaction,
    Order,
    OrderLine,
    Promoter,
    Window,
    WindowProduct,
)
from db.referrals import downline
from db.risk_models import RiskFlag
from db.sales import order_sales, sales_by_promoter
from domain import ledger as rules
from domain.bonuses import (
    REGION_LEVELS,
    BonusPolicy,
    Level,
    level_for,
    line_extras,
    order_region_keys,
    team_bonus,
    team_bonus_taken_back,
    validate,
)
from domain.commission import MAX_TIERS
from domain.money import yuan
from domain.order_status import OrderStatus
from domain.risk import RiskStatus
from domain.settlement import month_bounds

BONUS_LOCK = 7_200_010  # advisory lock id serialising bonus config changes
FREEZING = (RiskStatus.OPEN.value, RiskStatus.CONFIRMED.value)
OFF_WINDOW_CLOSED = "window_closed"
DEFAULT_LEVEL_PERIOD = timedelta(days=90)


# --- config versions ---------------------------------------------------------------------------
def _policy(row: BonusPolicyRow) -> BonusPolicy:
    return BonusPolicy(levels=tuple(Level(**lv) for lv in row.levels), team_bonus_depth=row.team_bonus_depth,
                       regional_bps={k: int(row.regional_bps.get(k, 0)) for k in REGION_LEVELS})


def ensure_initial(s: Session) -> None:
    """Version 1: no levels, no regional rates — nothing extra is paid until an operator says so."""
    s.execute(insert(BonusPolicyRow).values(
        version=1, levels=[], team_bonus_depth=3, regional_bps={k: 0 for k in REGION_LEVELS},
        note="default: off").on_conflict_do_nothing(index_elements=["version"]))


def current_policy(s: Session) -> tuple[int, BonusPolicy]:
    row = s.scalar(select(BonusPolicyRow).order_by(BonusPolicyRow.version.desc()).limit(1))
    if row is None:
        ensure_initial(s)
        row = s.get(BonusPolicyRow, 1)
    return row.version, _policy(row)


def history(s: Session) -> list[BonusPolicyRow]:
    current_policy(s)
    return list(s.scalars(select(BonusPolicyRow).order_by(BonusPolicyRow.version)))


def set_policy(s: Session, *, levels: list[Level], team_bonus_depth: int, regional_bps: dict[str, int],
               min_service_fee_bps: int, max_service_fee_bps: int, by_user_id: int | None,
               tier_ceiling: int, note: str = "") -> BonusPolicyRow:
    """Add a version; PolicyRefused (nothing written) for a config outside the pay rules,
    a team bonus deeper than the ceiling COMMISSION_TIERS (`tier_ceiling`) included."""
    policy = validate(levels, regional_bps, team_bonus_depth=team_bonus_depth,
                      max_service_fee_bps=max_service_fee_bps, min_service_fee_bps=min_service_fee_bps,
                      tier_ceiling=tier_ceiling)
    s.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": BONUS_LOCK})
    current_policy(s)
    version = (s.scalar(select(func.max(BonusPolicyRow.version))) or 0) + 1
    row = BonusPolicyRow(version=version, levels=[lv.__dict__ | {"name": lv.name.strip()} for lv in policy.levels],
                         team_bonus_depth=policy.team_bonus_depth, regional_bps=policy.regional_bps,
                         set_by_user_id=by_user_id, note=note)
    s.add(row)
    s.flush()
    return row


# --- sales (the one rule: domain/sales.py, its query: db/sales.py) ---------------------------------
def sales_gmv(s: Session, promoter_ids: list[int] | None, start: datetime, end: datetime) -> dict[int, int]:
    """promoter id → GMV of their sales completed in [start, end)."""
    return {pid: gmv for pid, (_, gmv) in sales_by_promoter(s, promoter_ids, start, end).items() if gmv}


def promoter_level(s: Session, promoter_id: int, at: datetime, period: timedelta,
                   policy: BonusPolicy) -> tuple[int, tuple[int, Level] | None]:
    """(own GMV over the period ending `at`, the level it reaches)."""
    if not policy.levels:
        return 0, None
    gmv = sales_gmv(s, [promoter_id], at - period, at).get(promoter_id, 0)
    return gmv, level_for(policy, gmv)


def team_bonus_reversals(s: Session, order_no: str, refund_fen: int) -> list[rules.Posting]:
    """A refund reaching an order that team bonuses were already paid on takes each earner's
    share of it back (from `available`; a negative balance is carried like any reversal) to the
    platform that paid it. Refunds before the month's bonus was posted need nothing: its GMV
    was already net of them. Goes into the refund's own ledger transaction."""
    postings: list[rules.Posting] = []
    for sale in s.scalars(select(TeamBonusSale).where(TeamBonusSale.order_no == order_no)
                          .order_by(TeamBonusSale.month, TeamBonusSale.promoter_id).with_for_update()):
        refunded, back = team_bonus_taken_back(bps=sale.team_bonus_bps, gmv_fen=sale.gmv_fen,
                                               refunded_before_fen=sale.refunded_fen, refund_fen=refund_fen)
        sale.refunded_fen += refunded
        postings += rules.transfer(rules.promoter_available(sale.promoter_id), rules.PLATFORM_REVENUE, back,
                                   rule=f"team_bonus_reversal:{sale.month}")
    return postings


# --- at payment ------------------------------------------------------------------------------
def regional_agents_for(s: Session, address: dict | None, buyer_user_id: int) -> dict[str, tuple[int, str]]:
    """region level → (agent promoter id, region key) of the active agents whose region the
    address is in. An agent buying for themselves earns nothing on it."""
    keys = order_region_keys(address)
    if not keys:
        return {}
    rows = s.execute(select(RegionalAgent.level, RegionalAgent.region_key, RegionalAgent.promoter_id)
                     .join(Promoter, Promoter.id == RegionalAgent.promoter_id)
                     .where(RegionalAgent.active, RegionalAgent.region_key.in_(list(keys.values())),
                            Promoter.status == "active", Promoter.user_id != buyer_user_id)).all()
    return {level: (int(pid), key) for level, key, pid in rows if keys.get(level) == key}


def extras_at_payment(s: Session, order: Order, commission: list, *, earns: bool,
                      level_period: timedelta | None = None):
    """At payment, with the commission postings: the seller's level (recorded with the order)
    and its uplift added to the tier-1 commission; each regional agent's bonus as its own
    transaction. Every extra is added to the line's `commission_fen` (what the supplier's
    share is net of), never beyond the price less the service fee. Returns (commission with
    the uplift, [(0, agent id, postings)])."""
    version, policy = current_policy(s)
    now = datetime.now(UTC)
    seller = s.get(Promoter, order.promoter_id) if order.promoter_id is not None else None
    gmv, reached = 0, None
    if seller is not None and earns and seller.status == "active":
        gmv, reached = promoter_level(s, seller.id, now, level_period or DEFAULT_LEVEL_PERIOD, policy)
    uplift_bps = reached[1].uplift_bps if reached else 0
    agents = regional_agents_for(s, order.shipping_address, order.buyer_user_id) \
        if any(policy.regional_bps.values()) else {}
    uplift: list[rules.Posting] = []
    regional: dict[int, list[rules.Posting]] = {}
    total_uplift = total_regional = 0
    if uplift_bps or agents:
        for line in s.scalars(select(OrderLine).where(OrderLine.order_no == order.order_no).order_by(OrderLine.id)):
            extra = line_extras(paid_fen=line.paid_fen, service_fee_fen=line.service_fee_fen,
                                commission_fen=line.commission_fen, uplift_bps=uplift_bps,
                                regional_bps=policy.regional_bps, agents=set(agents))
            if extra.uplift_fen:
                rank, lv = reached
                uplift += rules.transfer(rules.ORDERS_HELD, rules.promoter_pending(seller.id), extra.uplift_fen,
                                         order_line_id=line.id, tier=1,
                                         rule=f"level:{rank}:{lv.name}:uplift:{uplift_bps}bps:b{version}")
            for region_level, amount in extra.regional_fen.items():
                agent, key = agents[region_level]
                regional.setdefault(agent, []).extend(rules.transfer(
                    rules.ORDERS_HELD, rules.promoter_pending(agent), amount, order_line_id=line.id, tier=0,
                    rule=f"regional:{region_level}:{key}:{policy.regional_bps[region_level]}bps:b{version}"[:80]))
            total_uplift += extra.uplift_fen
            total_regional += sum(extra.regional_fen.values())
            line.commission_fen += extra.total_fen
    s.add(OrderLevel(order_no=order.order_no, bonus_version=version,
                     promoter_id=seller.id if seller is not None else None,
                     level_rank=reached[0] if reached else None, level_name=reached[1].name if reached else None,
                     uplift_bps=uplift_bps, own_gmv_fen=gmv, uplift_fen=total_uplift, regional_fen=total_regional))
    if uplift:
        commission = list(commission)
        at = next((i for i, (tier, _, _) in enumerate(commission) if tier == 1), None)
        if at is None:
            commission.insert(0, (1, seller.id, uplift))
        else:
            commission[at] = (1, seller.id, [*commission[at][2], *uplift])
    return commission, [(0, agent, postings) for agent, postings in sorted(regional.items())]


# --- release, freeze, forfeit -----------------------------------------------------------------
def is_frozen(s: Session, order_no: str) -> bool:
    """An anomaly flag on the order itself (shared device, IP or address) not yet cleared."""
    return bool(s.scalar(select(exists().where(RiskFlag.order_no == order_no, RiskFlag.subject_type == "order",
                                               RiskFlag.status.in_(FREEZING)))))


def pending_on_order(s: Session, order_no: str) -> dict[tuple[int, int], int]:
    """(tier or 0, promoter id) → what the order's entries left on promoters' pending accounts."""
    rows = s.execute(
        select(LedgerAccount.owner_id, LedgerEntry.tier, func.sum(LedgerEntry.amount_fen))
        .join(LedgerEntry, LedgerEntry.account_id == LedgerAccount.id)
        .where(LedgerEntry.order_no == order_no, LedgerAccount.code.like("promoter:%:pending"))
        .group_by(LedgerAccount.owner_id, LedgerEntry.tier)).all()
    out: dict[tuple[int, int], int] = {}
    for owner, tier, amount in rows:
        key = (tier or 0, int(owner))
        out[key] = out.get(key, 0) - int(amount)
    return {k: v for k, v in out.items() if v}


def release_key(order_no: str, tier: int, promoter_id: int) -> tuple[str, str]:
    if tier:
        return f"order:{order_no}:commission:tier{tier}:release", "commission_release"
    return f"order:{order_no}:regional:{promoter_id}:release", "regional_release"


def release_commission(s: Session, order_no: str, pending: dict[tuple[int, int | None], int],
                       memo: str = "refund window closed") -> bool:
    """Pending → available for a completed order, unless a risk flag freezes it (False)."""
    if not pending:
        return True
    if is_frozen(s, order_no):
        return False
    credited: dict[int, int] = {}
    for (tier, promoter_id), amount in sorted(pending.items()):
        key, kind = release_key(order_no, tier, promoter_id)
        if ledger.post(s, key, kind, rules.transfer(rules.promoter_pending(promoter_id),
                                                    rules.promoter_available(promoter_id), amount,
                                                    tier=tier or None),
                       order_no=order_no, memo=memo):
            credited[promoter_id] = credited.get(promoter_id, 0) + amount
    for promoter_id, amount in sorted(credited.items()):
        notify(s, promoter_id, "commission_credited",
               f"订单{order_no[-6:]}佣金 {yuan(amount)} 元已到账，可提现",
               f"order:{order_no}:commission:{promoter_id}:credited")
    return True


@dataclass(frozen=True)
class CommissionState:
    released: set[tuple[int, int]]
    forfeited: set[tuple[int, int]]

    def account(self, tier: int, promoter_id: int) -> str | None:
        """Where a refund takes this commission back from (None: forfeited, the platform has it)."""
        if (tier, promoter_id) in self.forfeited:
            return None
        if (tier, promoter_id) in self.released:
            return rules.promoter_available(promoter_id)
        return rules.promoter_pending(promoter_id)


def commission_state(s: Session, order_no: str) -> CommissionState:
    rows = s.execute(
        select(LedgerAccount.owner_id, LedgerEntry.tier, LedgerTransaction.kind)
        .join(LedgerEntry, LedgerEntry.account_id == LedgerAccount.id)
        .join(LedgerTransaction, LedgerEntry.transaction_id == LedgerTransaction.id)
        .where(LedgerTransaction.order_no == order_no, LedgerAccount.code.like("promoter:%:pending"),
               LedgerTransaction.kind.in_(["commission_release", "regional_release", "commission_forfeit"]))).all()
    released = {(tier or 0, int(owner)) for owner, tier, kind in rows if kind != "commission_forfeit"}
    forfeited = {(tier or 0, int(owner)) for owner, tier, kind in rows if kind == "commission_forfeit"}
    return CommissionState(released=released, forfeited=forfeited)


def forfeit_commission(s: Session, order: Order, why: str) -> int:
    """A confirmed finding: the order's commission still pending goes back to the platform."""
    pending = pending_on_order(s, order.order_no)
    if not pending:
        return 0
    to = rules.PLATFORM_REVENUE if order.completed_at is not None else rules.ORDERS_HELD
    total = sum(pending.values())
    postings = [rules.Posting(rules.promoter_pending(pid), amount, tier=tier, rule="commission_forfeit")
                for (tier, pid), amount in sorted(pending.items())]
    postings.append(rules.Posting(to, -total, rule="commission_forfeit"))
    ledger.lock_accounts(s, {p.account for p in postings})
    ledger.post(s, f"order:{order.order_no}:commission:forfeit", "commission_forfeit", postings,
                order_no=order.order_no, memo=why[:200])
    return total


def flag_reviewed(s: Session, flag: RiskFlag) -> None:
    """After support decided a flag, in the same transaction: a confirmed flag forfeits the
    order's pending commission; the last flag cleared on a completed order releases it."""
    if not flag.order_no or flag.subject_type != "order":
        return  # a flag on a buyer's refunds holds nothing
    order = s.get(Order, flag.order_no, with_for_update=True, populate_existing=True)
    if order is None:
        return
    no = order.order_no
    if flag.status == RiskStatus.CONFIRMED:
        fen = forfeit_commission(s, order, f"risk flag {flag.id} ({flag.kind}) confirmed")
        if fen:
            record_event(s, no, order.status, f"risk flag {flag.id} confirmed: {fen} fen commission forfeited",
                         f"order:{no}:commission:forfeit")
    elif flag.status == RiskStatus.CLEARED and order.status == OrderStatus.COMPLETED and not is_frozen(s, no):
        pending = pending_on_order(s, no)
        if pending:
            ledger.lock_accounts(s, {code(pid) for _, pid in pending
                                     for code in (rules.promoter_pending, rules.promoter_available)})
            release_commission(s, no, pending, memo=f"risk flag {flag.id} cleared")
            record_event(s, no, order.status, f"risk flag {flag.id} cleared: commission available",
                         f"order:{no}:commission:unfrozen")


# --- fake-trade findings ---------------------------------------------------------------------
def review_finding(s: Session, finding: FakeTradeFinding, *, confirmed: bool, note: str, by_user_id: int,
                   threshold: int) -> WindowClosure | None:
    """Confirm or dismiss; the `threshold`-th confirmed finding closes the promoter's window."""
    finding.status = "confirmed" if confirmed else "dismissed"
    finding.review_note, finding.reviewed_by_user_id, finding.reviewed_at = note, by_user_id, datetime.now(UTC)
    s.flush()
    if not confirmed:
        return None
    count = s.scalar(select(func.count()).select_from(FakeTradeFinding).where(
        FakeTradeFinding.promoter_id == finding.promoter_id, FakeTradeFinding.status == "confirmed")) or 0
    if count < threshold:
        return None
    return close_window(s, finding.promoter_id, count)


def close_window(s: Session, promoter_id: int, confirmed: int) -> WindowClosure | None:
    window = s.scalar(select(Window).where(Window.promoter_id == promoter_id))
    if window is None or s.get(WindowClosure, window.id) is not None:
        return None
    closure = WindowClosure(window_id=window.id, promoter_id=promoter_id, confirmed_findings=confirmed,
                            reason=f"{confirmed} confirmed fake-trade findings")
    s.add(closure)
    s.flush()
    products = list(s.scalars(select(WindowProduct.product_id).where(WindowProduct.window_id == window.id)))
    take_off_windows(s, products, OFF_WINDOW_CLOSED, window_ids=[window.id])
    notify(s, promoter_id, "window_closed",
           f"经核实存在 {confirmed} 次虚假交易，你的橱窗「{window.name}」已关闭，商品已下架；已获得的佣金不受影响",
           f"promoter:{promoter_id}:window_closed")
    return closure


def window_closed(s: Session, window_id: int | None) -> bool:
    return window_id is not None and s.get(WindowClosure, window_id) is not None


# --- the commission settlement run's step ------------------------------------------------------
class BonusActivities:
    def __init__(self, sessions: sessionmaker[Session], level_period: timedelta = DEFAULT_LEVEL_PERIOD,
                 tier_ceiling: Callable[[], int] = lambda: MAX_TIERS):
        self.sessions = sessions
        self.level_period = level_period
        self.tier_ceiling = tier_ceiling  # COMMISSION_TIERS, read at every run

    @activity.defn
    def post_team_bonuses(self, month: str, timezone: str) -> int:
        """The month's team bonuses, once per (month, promoter): for each active promoter whose
        level (own sales over the level period to the month's end) has a team-bonus rate, that
        rate of the sales (domain/sales.py) completed in the month of their downline from tier 2
        down to the version's depth, never deeper than COMMISSION_TIERS now (tier 1 is them; with
        1 tier nothing is paid). Paid by the platform into `available`. Returns the fen posted."""
        start, end = month_bounds(month, timezone)
        with self.sessions.begin() as s:
            version, policy = current_policy(s)
            depth = policy.team_depth(self.tier_ceiling())
            paying = [lv for lv in policy.levels if lv.team_bonus_bps > 0]
            if not paying or depth < 2:
                return 0
            own = {pid: g for pid, g in sales_gmv(s, None, end - self.level_period, end).items()
                   if g >= min(lv.min_gmv_fen for lv in paying)}
            active = set(s.scalars(select(Promoter.id).where(Promoter.id.in_(list(own)), Promoter.status == "active")))
            plan = []
            for pid in sorted(active):
                reached = level_for(policy, own[pid])
                if reached is None:
                    continue
                sales = order_sales(s, downline(s, pid, depth - 1), start, end)
                gmv = sum(sales.values())
                amount = team_bonus(gmv, reached[1])
                if amount > 0:
                    plan.append((pid, reached[1], own[pid], gmv, amount, sales))
            if not plan:
                return 0
            ledger.lock_accounts(s, {rules.PLATFORM_REVENUE} | {rules.promoter_available(p[0]) for p in plan})
            total = 0
            for pid, lv, own_gmv, gmv, amount, sales in plan:
                if ledger.post(s, f"team_bonus:{month}:{pid}", "team_bonus",
                               rules.transfer(rules.PLATFORM_REVENUE, rules.promoter_available(pid), amount,
                                              rule=f"team_bonus:{lv.name}:{lv.team_bonus_bps}bps:b{version}"),
                               memo=f"{month} team bonus: {lv.team_bonus_bps} bps of {gmv} fen "
                                    f"tier 2-{depth} sales"):
                    s.add(TeamBonus(month=month, promoter_id=pid, bonus_version=version, level_name=lv.name,
                                    team_bonus_bps=lv.team_bonus_bps, own_gmv_fen=own_gmv, downline_gmv_fen=gmv,
                                    amount_fen=amount))
                    s.add_all(TeamBonusSale(month=month, promoter_id=pid, order_no=no, team_bonus_bps=lv.team_bonus_bps,
                                            gmv_fen=fen, refunded_fen=0) for no, fen in sales.items())
                    notify(s, pid, "commission_credited", f"{month} 团队奖励 {yuan(amount)} 元已到账，可提现",
                           f"team_bonus:{month}:{pid}:credited")
                    total += amount
            return total

    def all(self) -> list:
        return [self.post_team_bonuses]
