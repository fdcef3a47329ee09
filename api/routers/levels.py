"""Levels, team and regional bonuses (operators), fake-trade findings (support), a promoter's
level and leaving. Everything extra is off until an operator configures it, and stays inside
the pay rules: levels by own sales only, bonuses on sales only, every upline pay (commission tiers
and team bonus) never deeper than COMMISSION_TIERS (default 1, at most 3)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field
from sqlalchemy import func, select
from temporalio.service import RPCError

from activities import bonuses
from activities.promoters import set_status
from api.auth import PLATFORM_STAFF, Principal, require_roles
from api.deps import sessions_of, temporal_of
from api.errors import ApiError, not_found
from db.bonus_models import (
    BonusPolicyRow,
    FakeTradeFinding,
    OrderLevel,
    RegionalAgent,
    TeamBonus,
    TeamBonusSale,
    WindowClosure,
)
from db.models import Promoter, Window
from domain.bonuses import Level, region_key
from domain.commission import PolicyRefused
from domain.promoters import PromoterStatus
from workflows import promoter_lifecycle
from workflows.promoter_lifecycle import PromoterLifecycleWorkflow

policy_router = APIRouter(prefix="/bonus-policy", tags=["levels"])
agents_router = APIRouter(prefix="/regional-agents", tags=["levels"])
promoter_router = APIRouter(prefix="/promoters", tags=["levels"])
findings_router = APIRouter(prefix="/risk", tags=["risk"])
routers = (policy_router, agents_router, promoter_router, findings_router)


# --- bonus policy ------------------------------------------------------------------------------
class LevelBody(BaseModel):
    name: str = Field(min_length=1, max_length=20, description="e.g. 达人, 团长, 联创, 运营中心")
    min_gmv_fen: int = Field(description="own completed sales (GMV, fen) over LEVEL_PERIOD that reach it")
    uplift_bps: int = Field(default=0, description="extra own rate, of what is paid for each line")
    team_bonus_bps: int = Field(default=0, description="monthly, of the downline's sales from tier 2 down to "
                                "team_bonus_depth, never deeper than COMMISSION_TIERS (with 1 tier: refused)")


class RegionalRates(BaseModel):
    province: int = 0
    city: int = 0
    county: int = 0


class BonusPolicyBody(BaseModel):
    levels: list[LevelBody] = Field(default=[], max_length=20)
    team_bonus_depth: int = Field(default=3, description="2 or 3: the deepest tier a team bonus reaches; a team "
                                  "bonus is refused when COMMISSION_TIERS (the ceiling of all upline pay) is below it")
    regional_bps: RegionalRates = RegionalRates()
    note: str = Field(default="", max_length=200)


class BonusPolicyOut(BaseModel):
    version: int
    levels: list[LevelBody]
    team_bonus_depth: int
    regional_bps: RegionalRates
    note: str
    created_at: datetime


class BonusPolicyHistory(BaseModel):
    current: BonusPolicyOut
    versions: list[BonusPolicyOut]


def _policy_out(row: BonusPolicyRow) -> BonusPolicyOut:
    return BonusPolicyOut(version=row.version, levels=[LevelBody(**lv) for lv in row.levels],
                          team_bonus_depth=row.team_bonus_depth, regional_bps=RegionalRates(**row.regional_bps),
                          note=row.note, created_at=row.created_at)


@policy_router.get("", response_model=BonusPolicyHistory, summary="Levels and bonus rates in force, and history")
def get_bonus_policy(request: Request, _: Principal = Depends(require_roles("operator", "support"))):
    with sessions_of(request).begin() as s:
        versions = [_policy_out(r) for r in bonuses.history(s)]
    return BonusPolicyHistory(current=versions[-1], versions=versions)


@policy_router.put("", response_model=BonusPolicyOut,
                   summary="Set a new levels/bonus version (refused if it could pay beyond the pay rules)")
def put_bonus_policy(body: BonusPolicyBody, request: Request,
                     principal: Principal = Depends(require_roles("operator"))) -> BonusPolicyOut:
    settings = request.app.state.settings
    try:
        with sessions_of(request).begin() as s:
            row = bonuses.set_policy(
                s, levels=[Level(**lv.model_dump()) for lv in body.levels], team_bonus_depth=body.team_bonus_depth,
                regional_bps=body.regional_bps.model_dump(), min_service_fee_bps=settings.supplier_service_fee_bps_min,
                max_service_fee_bps=settings.supplier_service_fee_bps_max, by_user_id=principal.user_id,
                tier_ceiling=settings.commission_tiers, note=body.note)
            return _policy_out(row)
    except PolicyRefused as err:
        raise ApiError(422, "POLICY_REFUSED", str(err)) from err


# --- regional agents ---------------------------------------------------------------------------
class AgentBody(BaseModel):
    level: Literal["province", "city", "county"]
    province: str = Field(min_length=1, max_length=40)
    city: str | None = Field(default=None, max_length=60)
    county: str | None = Field(default=None, max_length=60, description="区/县, as in the address's district")
    promoter_id: int


class AgentOut(BaseModel):
    id: int
    level: str
    region: str
    promoter_id: int
    active: bool
    appointed_at: datetime
    revoked_at: datetime | None


def _agent_out(a: RegionalAgent) -> AgentOut:
    return AgentOut(id=a.id, level=a.level, region=a.region_key, promoter_id=a.promoter_id, active=a.active,
                    appointed_at=a.appointed_at, revoked_at=a.revoked_at)


@agents_router.put("", response_model=AgentOut,
                   summary="Appoint a promoter the agent of a province, city or county (replaces the current one)")
def appoint_agent(body: AgentBody, request: Request,
                  principal: Principal = Depends(require_roles("operator"))) -> AgentOut:
    try:
        key = region_key(body.level, body.province, body.city, body.county)
    except PolicyRefused as err:
        raise ApiError(422, "BAD_REGION", str(err)) from err
    with sessions_of(request).begin() as s:
        promoter = s.get(Promoter, body.promoter_id)
        if promoter is None or promoter.status != PromoterStatus.ACTIVE:
            raise ApiError(422, "PROMOTER_NOT_ACTIVE", f"promoter {body.promoter_id} is not an active promoter")
        current = s.scalar(select(RegionalAgent).where(RegionalAgent.region_key == key, RegionalAgent.active)
                           .with_for_update())
        if current is not None:
            if current.promoter_id == body.promoter_id:
                return _agent_out(current)
            current.active, current.revoked_at = False, datetime.now(UTC)
            s.flush()
        agent = RegionalAgent(level=body.level, region_key=key, promoter_id=body.promoter_id, active=True,
                              appointed_by_user_id=principal.user_id)
        s.add(agent)
        s.flush()
        return _agent_out(agent)


@agents_router.get("", response_model=list[AgentOut], summary="Regional agents (active ones unless all=true)")
def list_agents(request: Request, all: bool = False,
                _: Principal = Depends(require_roles("operator", "support"))) -> list[AgentOut]:
    query = select(RegionalAgent).order_by(RegionalAgent.id)
    if not all:
        query = query.where(RegionalAgent.active)
    with sessions_of(request)() as s:
        return [_agent_out(a) for a in s.scalars(query)]


@agents_router.delete("/{agent_id}", response_model=AgentOut, summary="End an appointment")
def revoke_agent(agent_id: int, request: Request, _: Principal = Depends(require_roles("operator"))) -> AgentOut:
    with sessions_of(request).begin() as s:
        agent = s.get(RegionalAgent, agent_id, with_for_update=True)
        if agent is None:
            raise not_found(f"regional agent {agent_id}")
        if agent.active:
            agent.active, agent.revoked_at = False, datetime.now(UTC)
            s.flush()
        return _agent_out(agent)


# --- a promoter's own level, leaving ---------------------------------------------------------------
class LevelOut(BaseModel):
    promoter_id: int
    own_gmv_fen: int
    period_days: float
    level: str | None
    rank: int | None
    uplift_bps: int
    team_bonus_bps: int
    next_level: str | None
    next_min_gmv_fen: int | None
    note: str = "levels are reached by your own completed sales only; no fee or purchase is ever needed"


def _my_promoter(s, principal: Principal) -> Promoter:
    promoter = s.scalar(select(Promoter).where(Promoter.user_id == principal.user_id))
    if promoter is None:
        raise ApiError(404, "NOT_A_PROMOTER", "this account has no promoter profile")
    return promoter


@promoter_router.get("/me/level", response_model=LevelOut, summary="My level, from my own completed sales")
def my_level(request: Request, principal: Principal = Depends(require_roles("promoter"))) -> LevelOut:
    period = request.app.state.settings.level_period
    with sessions_of(request).begin() as s:
        promoter = _my_promoter(s, principal)
        _, policy = bonuses.current_policy(s)
        gmv = bonuses.sales_gmv(s, [promoter.id], datetime.now(UTC) - period, datetime.now(UTC)).get(promoter.id, 0)
        reached = bonuses.level_for(policy, gmv) if policy.levels else None
        rank = reached[0] if reached else 0
        nxt = policy.levels[rank] if rank < len(policy.levels) else None
        return LevelOut(promoter_id=promoter.id, own_gmv_fen=gmv, period_days=period.total_seconds() / 86_400,
                        level=reached[1].name if reached else None, rank=reached[0] if reached else None,
                        uplift_bps=reached[1].uplift_bps if reached else 0,
                        # a team bonus beyond the ceiling COMMISSION_TIERS is never paid: shown as 0
                        team_bonus_bps=reached[1].team_bonus_bps
                        if reached and policy.team_depth(request.app.state.settings.commission_tiers) >= 2 else 0,
                        next_level=nxt.name if nxt else None, next_min_gmv_fen=nxt.min_gmv_fen if nxt else None)


class OrderLevelOut(BaseModel):
    order_no: str
    level: str | None
    rank: int | None
    own_gmv_fen: int = Field(description="own sales over LEVEL_PERIOD when the order was paid")
    uplift_bps: int
    uplift_fen: int
    recorded_at: datetime


@promoter_router.get("/me/level/orders", response_model=list[OrderLevelOut],
                     summary="The level each order sold through my window was paid at, and the uplift it added")
def my_order_levels(request: Request, limit: int = 50,
                    principal: Principal = Depends(require_roles("promoter"))) -> list[OrderLevelOut]:
    with sessions_of(request)() as s:
        promoter = _my_promoter(s, principal)
        rows = s.scalars(select(OrderLevel).where(OrderLevel.promoter_id == promoter.id)
                         .order_by(OrderLevel.recorded_at.desc(), OrderLevel.order_no.desc())
                         .limit(max(1, min(limit, 200)))).all()
        return [OrderLevelOut(order_no=r.order_no, level=r.level_name, rank=r.level_rank, own_gmv_fen=r.own_gmv_fen,
                              uplift_bps=r.uplift_bps, uplift_fen=r.uplift_fen, recorded_at=r.recorded_at)
                for r in rows]


class TeamBonusOut(BaseModel):
    month: str
    level: str
    team_bonus_bps: int
    own_gmv_fen: int
    downline_gmv_fen: int = Field(description="the month's sales of the downline the bonus reached")
    amount_fen: int
    orders: int = Field(description="orders the bonus was paid on")
    refunded_fen: int = Field(description="of those orders' GMV, refunded since (the bonus on it was taken back)")


@promoter_router.get("/me/team-bonuses", response_model=list[TeamBonusOut],
                     summary="My team bonuses, month by month, and the sales each was paid on")
def my_team_bonuses(request: Request, principal: Principal = Depends(require_roles("promoter"))) -> list[TeamBonusOut]:
    with sessions_of(request)() as s:
        promoter = _my_promoter(s, principal)
        sales = {month: (n, refunded) for month, n, refunded in s.execute(
            select(TeamBonusSale.month, func.count(), func.coalesce(func.sum(TeamBonusSale.refunded_fen), 0))
            .where(TeamBonusSale.promoter_id == promoter.id).group_by(TeamBonusSale.month)).all()}
        rows = s.scalars(select(TeamBonus).where(TeamBonus.promoter_id == promoter.id)
                         .order_by(TeamBonus.month.desc())).all()
        return [TeamBonusOut(month=r.month, level=r.level_name, team_bonus_bps=r.team_bonus_bps,
                             own_gmv_fen=r.own_gmv_fen, downline_gmv_fen=r.downline_gmv_fen, amount_fen=r.amount_fen,
                             orders=sales.get(r.month, (0, 0))[0], refunded_fen=int(sales.get(r.month, (0, 0))[1]))
                for r in rows]


class LeaveOut(BaseModel):
    promoter_id: int
    status: str
    note: str = "commission already earned stays yours and can be withdrawn"


@promoter_router.post("/me/leave", status_code=202, response_model=LeaveOut,
                      summary="Stop being a promoter (earned money stays withdrawable)")
async def leave(request: Request, principal: Principal = Depends(require_roles("promoter"))) -> LeaveOut:
    def load() -> tuple[int, str]:
        with sessions_of(request)() as s:
            promoter = _my_promoter(s, principal)
            return promoter.id, promoter.status

    promoter_id, status = await run_in_threadpool(load)
    if status == PromoterStatus.LEFT:
        raise ApiError(409, "ALREADY_LEFT", "you have already left")
    try:  # the lifecycle records it (mark_left) and ends
        await (await temporal_of(request)).get_workflow_handle(
            promoter_lifecycle.workflow_id(promoter_id)).signal(PromoterLifecycleWorkflow.leave)
        return LeaveOut(promoter_id=promoter_id, status="leaving")
    except RPCError:  # no cycle running (never started, or ended): record it here
        def mark() -> None:
            with sessions_of(request).begin() as s:
                promoter = s.get(Promoter, promoter_id, with_for_update=True)
                set_status(s, promoter, PromoterStatus.LEFT)

        await run_in_threadpool(mark)
        return LeaveOut(promoter_id=promoter_id, status=PromoterStatus.LEFT.value)


# --- fake-trade findings (support) -----------------------------------------------------------------
class FindingBody(BaseModel):
    note: str = Field(min_length=1, max_length=500)
    order_nos: list[str] = Field(default=[], max_length=50)


class FindingReview(BaseModel):
    status: Literal["confirmed", "dismissed"]
    note: str = Field(min_length=1, max_length=500)


class FindingOut(BaseModel):
    id: int
    promoter_id: int
    status: str
    note: str
    order_nos: list[str]
    review_note: str | None
    reviewed_at: datetime | None
    created_at: datetime
    confirmed_findings: int
    window_closed: bool


def _finding_out(s, f: FakeTradeFinding) -> FindingOut:

    confirmed = s.scalar(select(func.count()).select_from(FakeTradeFinding).where(
        FakeTradeFinding.promoter_id == f.promoter_id, FakeTradeFinding.status == "confirmed")) or 0
    window = s.scalar(select(Window.id).where(Window.promoter_id == f.promoter_id))
    return FindingOut(id=f.id, promoter_id=f.promoter_id, status=f.status, note=f.note, order_nos=list(f.order_nos),
                      review_note=f.review_note, reviewed_at=f.reviewed_at, created_at=f.created_at,
                      confirmed_findings=confirmed,
                      window_closed=window is not None and s.get(WindowClosure, window) is not None)


@findings_router.post("/promoters/{promoter_id}/fake-trade-findings", status_code=201, response_model=FindingOut,
                      summary="Record a fake-trade finding on a promoter (confirmed or dismissed later)")
def record_finding(promoter_id: int, body: FindingBody, request: Request,
                   principal: Principal = Depends(require_roles("support"))) -> FindingOut:
    with sessions_of(request).begin() as s:
        if s.get(Promoter, promoter_id) is None:
            raise not_found(f"promoter {promoter_id}")
        finding = FakeTradeFinding(promoter_id=promoter_id, status="open", note=body.note.strip(),
                                   order_nos=[n.strip() for n in body.order_nos], recorded_by_user_id=principal.user_id)
        s.add(finding)
        s.flush()
        return _finding_out(s, finding)


@findings_router.get("/promoters/{promoter_id}/fake-trade-findings", response_model=list[FindingOut],
                     summary="A promoter's fake-trade findings")
def list_findings(promoter_id: int, request: Request,
                  _: Principal = Depends(require_roles(*PLATFORM_STAFF))) -> list[FindingOut]:
    with sessions_of(request)() as s:
        rows = s.scalars(select(FakeTradeFinding).where(FakeTradeFinding.promoter_id == promoter_id)
                         .order_by(FakeTradeFinding.id)).all()
        return [_finding_out(s, f) for f in rows]


@findings_router.post("/fake-trade-findings/{finding_id}/review", response_model=FindingOut,
                      summary="Confirm or dismiss a finding; the third confirmed one closes the window")
def review_finding(finding_id: int, body: FindingReview, request: Request,
                   principal: Principal = Depends(require_roles("support"))) -> FindingOut:
    threshold = request.app.state.settings.fake_trade_findings_to_close
    with sessions_of(request).begin() as s:
        finding = s.get(FakeTradeFinding, finding_id, with_for_update=True)
        if finding is None:
            raise not_found(f"fake-trade finding {finding_id}")
        if finding.status != "open":
            raise ApiError(409, "ALREADY_REVIEWED", f"finding {finding_id} was already {finding.status}")
        # one promoter's findings one at a time, so two confirmations cannot both miss the threshold
        s.get(Promoter, finding.promoter_id, with_for_update=True)
        bonuses.review_finding(s, finding, confirmed=body.status == "confirmed", note=body.note.strip(),
                               by_user_id=principal.user_id, threshold=threshold)
        return _finding_out(s, finding)

