"""Promoters: free onboarding (agreement + real-name check + window), referral binding,
share poster, assessment progress, revival; and the operators' commission policy."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field
from sqlalchemy import func, select, text
from sqlalchemy.exc import IntegrityError
from temporalio.client import Client, WorkflowUpdateFailedError
from temporalio.common import (
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDReusePolicy,
)
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError

from activities import commission_policy
from api.auth import Principal, issue_token, require_roles
from api.deps import sessions_of, temporal_of
from api.errors import ApiError, update_refused
from api.views import PromoterOut, ReferrerOut, promoter_view, viewer_of
from db.models import Promoter, User, Window
from db.promoter_models import (
    CommissionPolicyRow,
    PromoterProfile,
    ReferralBinding,
    Revival,
)
from db.referrals import downline_levels, upline
from db.sales import sales_total
from domain.assessment import (
    CycleProgress,
    LifecycleInput,
    LifecycleTimings,
    RevivalApproval,
    RevivalInput,
    RevivalProgress,
    RevivalTimings,
)
from domain.commission import MAX_TIERS, PolicyRefused
from domain.promoters import (
    REVIVABLE_STATUSES,
    BindingRefused,
    InvalidIdentity,
    PromoterStatus,
    check_referral_binding,
    hashes_under,
    mask_id_number,
    mask_name,
    new_referral_code,
    normalise_code,
    real_name_hash,
    share_scene,
    validate_id_number,
    validate_real_name,
)
from domain.search_attributes import BUSINESS_STATUS, PROMOTER_ID
from workflows import promoter_lifecycle, revival
from workflows.promoter_lifecycle import PromoterLifecycleWorkflow
from workflows.revival import RevivalWorkflow

router = APIRouter(prefix="/promoters", tags=["promoters"])
policy_router = APIRouter(prefix="/commission-policy", tags=["promoters"])
REFERRAL_LOCK = 7_200_002  # advisory lock id: bindings one at a time, so no two can close a loop
RECORD_WAIT_SECONDS = 10.0


# --- models --------------------------------------------------------------------------------
class PromoterSignup(BaseModel):
    agreement_version: str = Field(min_length=1, max_length=32, description="the version the user read")
    agreement_accepted: bool
    real_name: str = Field(min_length=1, max_length=30)
    id_number: str = Field(min_length=1, max_length=24, description="18-character citizen ID (GB 11643)")
    channels_finder_id: str = Field(pattern=r"^[A-Za-z0-9_\-]{3,64}$", description="视频号 finder id")
    nickname: str | None = Field(default=None, min_length=1, max_length=32)
    window_name: str | None = Field(default=None, min_length=1, max_length=32)
    referral_code: str | None = Field(default=None, max_length=16)


class SignupOut(PromoterOut):
    access_token: str
    token_type: str = "bearer"


class BindBody(BaseModel):
    code: str = Field(min_length=1, max_length=16)
    source: str = Field(default="manual", pattern=r"^(share_link|poster|qr|manual)$")


class BindOut(BaseModel):
    bound: bool
    referrer: ReferrerOut


class ShareOut(BaseModel):
    promoter_id: int
    referral_code: str
    window_id: int
    title: str
    path: str
    scene: str
    channels_finder_id: str | None


class RevivalStarted(BaseModel):
    workflow_id: str
    n: int
    target_orders: int
    window_days: float


class ApproveBody(BaseModel):
    note: str = Field(min_length=1, max_length=200)


class TierSales(BaseModel):
    tier: int
    members: int
    completed_orders: int
    gmv_fen: int


class TeamOut(BaseModel):
    promoter_id: int
    tiers: list[TierSales]
    note: str = ("tier 1 is your own window, tiers 2-3 the promoters you referred and whom they referred; "
                 "rewards come only from goods sold")


# --- helpers -------------------------------------------------------------------------------
def _my_promoter(s, principal: Principal, *, lock: bool = False) -> Promoter:
    query = select(Promoter).where(Promoter.user_id == principal.user_id)
    promoter = s.scalar(query.with_for_update() if lock else query)
    if promoter is None:
        raise ApiError(404, "NOT_A_PROMOTER", "this account has no promoter profile")
    return promoter


def _referrer_out(s, promoter_id: int) -> ReferrerOut | None:
    binding = s.get(ReferralBinding, promoter_id)
    if binding is None:
        return None
    nickname = s.scalar(select(Promoter.nickname).where(Promoter.id == binding.referrer_id))
    return ReferrerOut(promoter_id=binding.referrer_id, nickname=nickname, source=binding.source,
                       bound_at=binding.bound_at)


def _promoter_out(s, principal: Principal, promoter: Promoter) -> PromoterOut:
    profile = s.get(PromoterProfile, promoter.id)
    window = s.scalar(select(Window).where(Window.promoter_id == promoter.id))
    if profile is None or window is None:
        raise ApiError(409, "ONBOARDING_INCOMPLETE", "this promoter has no onboarding record")
    return promoter_view(viewer_of(s, principal), promoter, profile, window, _referrer_out(s, promoter.id))


def _bind(s, promoter: Promoter, code: str, source: str) -> tuple[bool, ReferrerOut]:
    """First-touch, permanent, never self, never a loop. Serialised by an advisory lock."""
    s.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": REFERRAL_LOCK})
    s.refresh(promoter, with_for_update=True)
    referrer_id = s.scalar(select(PromoterProfile.promoter_id)
                           .where(PromoterProfile.referral_code == normalise_code(code)))
    if referrer_id is None:
        raise ApiError(422, "REFERRAL_CODE_UNKNOWN", "no promoter has that referral code")
    try:
        new = check_referral_binding(promoter.id, promoter.referrer_id, referrer_id, upline(s, referrer_id))
    except BindingRefused as err:
        raise ApiError(409 if err.code == "ALREADY_BOUND" else 422, err.code, str(err)) from err
    if new:
        promoter.referrer_id = referrer_id
        s.add(ReferralBinding(promoter_id=promoter.id, referrer_id=referrer_id,
                              code=normalise_code(code), source=source))
        s.flush()
    return new, _referrer_out(s, promoter.id)


def _lifecycle_input(settings, promoter_id: int) -> LifecycleInput:
    return LifecycleInput(promoter_id=promoter_id, timings=LifecycleTimings(
        cycle=settings.assessment_cycle, target_orders=settings.assessment_target_orders,
        reminder_before=settings.assessment_reminder_before,
        refresh_every=settings.assessment_refresh_every))


async def _ensure_lifecycle(request: Request, promoter_id: int) -> None:
    settings = request.app.state.settings
    client = await temporal_of(request)
    try:
        await client.start_workflow(
            PromoterLifecycleWorkflow.run, _lifecycle_input(settings, promoter_id),
            id=promoter_lifecycle.workflow_id(promoter_id), task_queue=settings.task_queue,
            search_attributes=TypedSearchAttributes([
                SearchAttributePair(PROMOTER_ID, str(promoter_id)),
                SearchAttributePair(BUSINESS_STATUS, PromoterStatus.ACTIVE.value)]),
            id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE_FAILED_ONLY)
    except WorkflowAlreadyStartedError:
        pass
    except RPCError as err:
        raise ApiError(503, "TEMPORAL_UNAVAILABLE", "you are a promoter, but the assessment cycle "
                       "could not start yet; send the request again") from err


async def _cycle_progress(client: Client, promoter_id: int) -> CycleProgress | None:
    try:
        return await client.get_workflow_handle(promoter_lifecycle.workflow_id(promoter_id)).query(
            PromoterLifecycleWorkflow.progress)
    except RPCError:
        return None


# --- onboarding ----------------------------------------------------------------------------
@router.post("", status_code=201, response_model=SignupOut,
             summary="A buyer becomes a promoter: agreement, real-name check, window. Free.")
async def become_promoter(body: PromoterSignup, request: Request,
                          principal: Principal = Depends(require_roles("buyer"))) -> SignupOut:
    settings = request.app.state.settings

    def create() -> PromoterOut:
        if not body.agreement_accepted:
            raise ApiError(422, "AGREEMENT_REQUIRED", "accept the promoter agreement to continue")
        if body.agreement_version != settings.promoter_agreement_version:
            raise ApiError(422, "AGREEMENT_OUTDATED",
                           f"the current agreement is version {settings.promoter_agreement_version}")
        today = datetime.now(ZoneInfo(settings.settlement_timezone)).date()
        try:
            name = validate_real_name(body.real_name)
            number = validate_id_number(body.id_number, today)
        except InvalidIdentity as err:
            raise ApiError(422, "REAL_NAME_CHECK_FAILED", str(err)) from err
        ring = settings.identity_hash_keys
        digest, *earlier = hashes_under(number, ring.all)
        now = datetime.now(UTC)
        try:
            with sessions_of(request).begin() as s:
                user = s.get(User, principal.user_id, with_for_update=True)
                if user is None or not user.active:
                    raise ApiError(401, "UNAUTHORIZED", "user no longer exists")
                if s.scalar(select(Promoter.id).where(Promoter.user_id == user.id)) is not None:
                    raise ApiError(409, "ALREADY_PROMOTER", "this account is already a promoter")
                if user.role != "buyer":
                    raise ApiError(403, "FORBIDDEN", "only a buyer account can become a promoter")
                if s.scalar(select(PromoterProfile.promoter_id)
                            .where(PromoterProfile.id_number_hash.in_([digest, *earlier]))) is not None:
                    raise ApiError(409, "IDENTITY_IN_USE", "this ID number already belongs to a promoter")
                nickname = body.nickname or user.display_name or f"推客{user.id}"
                promoter = Promoter(user_id=user.id, nickname=nickname[:64], status=PromoterStatus.ACTIVE)
                s.add(promoter)
                s.flush()
                s.add(Window(promoter_id=promoter.id, name=body.window_name or f"{nickname[:28]}的橱窗",
                             channels_finder_id=body.channels_finder_id))
                code = new_referral_code()
                while s.scalar(select(PromoterProfile.promoter_id).where(PromoterProfile.referral_code == code)):
                    code = new_referral_code()
                s.add(PromoterProfile(
                    promoter_id=promoter.id, referral_code=code, agreement_version=body.agreement_version,
                    agreement_accepted_at=now, real_name_masked=mask_name(name),
                    real_name_hash=real_name_hash(name, ring.current),
                    id_number_masked=mask_id_number(number), id_number_hash=digest,
                    real_name_verified_at=now))
                s.flush()
                if body.referral_code:
                    _bind(s, promoter, body.referral_code, "signup")
                user.role = "promoter"
                s.flush()
                return _promoter_out(s, principal, promoter)
        except IntegrityError as err:  # a concurrent sign-up with the same account or ID number
            raise ApiError(409, "ALREADY_PROMOTER", "this account or ID number is already a promoter") from err

    try:
        out = await run_in_threadpool(create)
    except ApiError as err:
        if err.code == "ALREADY_PROMOTER":  # a retry after Temporal was down: make sure it runs
            promoter_id = await run_in_threadpool(_promoter_id_of, request, principal.user_id)
            if promoter_id is not None:
                await _ensure_lifecycle(request, promoter_id)
        raise
    await _ensure_lifecycle(request, out.promoter_id)
    token = await run_in_threadpool(_promoter_token, request, principal.user_id)
    return SignupOut(**out.model_dump(), access_token=token)


def _promoter_token(request: Request, user_id: int) -> str:
    """The buyer's token stops working once the role changed: a promoter one replaces it."""
    with sessions_of(request).begin() as s:
        return issue_token(request.app.state.settings, s, user_id, "promoter")


def _promoter_id_of(request: Request, user_id: int) -> int | None:
    with sessions_of(request)() as s:
        return s.scalar(select(Promoter.id).where(Promoter.user_id == user_id))


@router.get("/me", response_model=PromoterOut, summary="My promoter profile, referrer and cycle progress")
async def me(request: Request, principal: Principal = Depends(require_roles("promoter"))) -> PromoterOut:
    def load() -> PromoterOut:
        with sessions_of(request)() as s:
            return _promoter_out(s, principal, _my_promoter(s, principal))

    out = await run_in_threadpool(load)
    out.progress = await _cycle_progress(await temporal_of(request), out.promoter_id)
    return out


@router.post("/me/referrer", response_model=BindOut,
             summary="Bind who referred me by their code: first-touch and permanent")
def bind_referrer(body: BindBody, request: Request,
                  principal: Principal = Depends(require_roles("promoter"))) -> BindOut:
    with sessions_of(request).begin() as s:
        promoter = _my_promoter(s, principal)  # _bind locks, advisory lock first
        new, referrer = _bind(s, promoter, body.code, body.source)
        return BindOut(bound=new, referrer=referrer)


@router.get("/me/share", response_model=ShareOut, summary="What a share poster / mini-program code carries")
def share(request: Request, principal: Principal = Depends(require_roles("promoter"))) -> ShareOut:
    with sessions_of(request)() as s:
        out = _promoter_out(s, principal, _my_promoter(s, principal))
    return ShareOut(promoter_id=out.promoter_id, referral_code=out.referral_code, window_id=out.window_id,
                    title=out.window_name,
                    path=f"pages/window/index?window_id={out.window_id}&ref={out.referral_code}",
                    scene=share_scene(out.window_id, out.referral_code),
                    channels_finder_id=out.channels_finder_id)


@router.get("/me/progress", response_model=CycleProgress,
            summary='This cycle\'s assessment, e.g. "2 of 3 orders, 9 days left"')
async def progress(request: Request, principal: Principal = Depends(require_roles("promoter"))) -> CycleProgress:
    promoter_id = await run_in_threadpool(_promoter_id_of, request, principal.user_id)
    if promoter_id is None:
        raise ApiError(404, "NOT_A_PROMOTER", "this account has no promoter profile")
    found = await _cycle_progress(await temporal_of(request), promoter_id)
    if found is None:
        raise ApiError(404, "NO_CYCLE", "no assessment cycle is running yet")
    return found


@router.get("/me/team", response_model=TeamOut,
            summary="Sales per tier of my chain: tier 1 is me, tiers 2-3 whom I referred and whom they referred")
def team(request: Request, principal: Principal = Depends(require_roles("promoter"))) -> TeamOut:
    with sessions_of(request)() as s:
        me_ = _my_promoter(s, principal)
        tiers = []
        # never deeper than 3 tiers, me included
        # sales as domain/sales.py defines them, the same figures the assessment and levels use
        for tier, level in enumerate([[me_.id], *downline_levels(s, me_.id, MAX_TIERS - 1)], start=1):
            orders, gmv = sales_total(s, level)
            tiers.append(TierSales(tier=tier, members=len(level), completed_orders=orders, gmv_fen=gmv))
        return TeamOut(promoter_id=me_.id, tiers=tiers)


# --- revival -------------------------------------------------------------------------------
@router.post("/me/revival", status_code=202, response_model=RevivalStarted,
             summary="A paused or lapsed promoter asks to come back. No fee, no purchase.")
async def start_revival(request: Request,
                        principal: Principal = Depends(require_roles("promoter"))) -> RevivalStarted:
    settings = request.app.state.settings

    def next_n() -> tuple[int, int]:
        with sessions_of(request)() as s:
            promoter = _my_promoter(s, principal)
            if promoter.status not in REVIVABLE_STATUSES:
                raise ApiError(409, "NOT_REVIVABLE", f"revival is for paused or lapsed promoters; you are {promoter.status}")
            if s.scalar(select(Revival.id).where(Revival.promoter_id == promoter.id, Revival.status == "open")):
                raise ApiError(409, "REVIVAL_OPEN", "a revival is already under way")
            n = (s.scalar(select(func.max(Revival.n)).where(Revival.promoter_id == promoter.id)) or 0) + 1
            return promoter.id, n

    promoter_id, n = await run_in_threadpool(next_n)
    inp = RevivalInput(promoter_id=promoter_id, n=n, timings=RevivalTimings(
        window=settings.revival_window, target_orders=settings.revival_target_orders,
        refresh_every=settings.revival_refresh_every))
    wid = revival.workflow_id(promoter_id, n)
    try:
        await (await temporal_of(request)).start_workflow(
            RevivalWorkflow.run, inp, id=wid, task_queue=settings.task_queue,
            search_attributes=TypedSearchAttributes([
                SearchAttributePair(PROMOTER_ID, str(promoter_id)),
                SearchAttributePair(BUSINESS_STATUS, "revival_open")]),
            id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE_FAILED_ONLY)
    except WorkflowAlreadyStartedError as err:
        raise ApiError(409, "REVIVAL_OPEN", "a revival is already under way") from err
    # Answer once the workflow has recorded it, so what we return is what support sees.
    delay, waited = 0.02, 0.0
    while waited < RECORD_WAIT_SECONDS:
        row = await run_in_threadpool(_latest_revival, request, promoter_id)
        if row is not None and row.n == n:
            break
        await asyncio.sleep(delay)
        waited += delay
        delay = min(delay * 2, 0.5)
    return RevivalStarted(workflow_id=wid, n=n, target_orders=settings.revival_target_orders,
                          window_days=settings.revival_window.total_seconds() / 86_400)


def _latest_revival(request: Request, promoter_id: int) -> Revival | None:
    with sessions_of(request)() as s:
        return s.scalar(select(Revival).where(Revival.promoter_id == promoter_id)
                        .order_by(Revival.n.desc()).limit(1))


async def _revival_progress(request: Request, promoter_id: int) -> RevivalProgress:
    row = await run_in_threadpool(_latest_revival, request, promoter_id)
    if row is None:
        raise ApiError(404, "NO_REVIVAL", "no revival has been started")
    handle = (await temporal_of(request)).get_workflow_handle(revival.workflow_id(promoter_id, row.n))
    try:
        found = await handle.query(RevivalWorkflow.progress)
        if found is not None:
            return found
    except RPCError:
        pass
    return RevivalProgress(promoter_id=promoter_id, n=row.n, status=row.status, started_at=row.started_at,
                           deadline=row.deadline, target_orders=row.target_orders,
                           completed_orders=row.completed_orders, how=row.how)


@router.get("/me/revival", response_model=RevivalProgress, summary="My latest revival")
async def my_revival(request: Request, principal: Principal = Depends(require_roles("promoter"))) -> RevivalProgress:
    promoter_id = await run_in_threadpool(_promoter_id_of, request, principal.user_id)
    if promoter_id is None:
        raise ApiError(404, "NOT_A_PROMOTER", "this account has no promoter profile")
    return await _revival_progress(request, promoter_id)


@router.post("/{promoter_id}/revival/approve", response_model=RevivalProgress,
             summary="Support approves a promoter's open revival")
async def approve_revival(promoter_id: int, body: ApproveBody, request: Request,
                          principal: Principal = Depends(require_roles("support"))) -> RevivalProgress:
    row = await run_in_threadpool(_latest_revival, request, promoter_id)
    if row is None or row.status != "open":
        raise ApiError(409, "REVIVAL_NOT_OPEN", "this promoter has no open revival")
    handle = (await temporal_of(request)).get_workflow_handle(revival.workflow_id(promoter_id, row.n))
    try:
        return await handle.execute_update(
            RevivalWorkflow.approve, RevivalApproval(support_user_id=principal.user_id, note=body.note))
    except WorkflowUpdateFailedError as err:
        raise update_refused(err) from err
    except RPCError as err:
        raise ApiError(409, "REVIVAL_NOT_OPEN", "this revival is no longer running") from err


# --- commission policy (operators) ---------------------------------------------------------
class PolicyBody(BaseModel):
    tiers: int = Field(description="1..COMMISSION_TIERS (the ceiling, at most 3); deeper is refused")
    tier_rates_bps: list[int] = Field(max_length=10, description="share of the SKU commission per tier: "
                                                                 "exactly one rate above 0 per tier")
    self_purchase_commission: bool = Field(default=False, description="only false is accepted: nobody earns on "
                                                                      "their own purchase, at any tier")
    note: str = Field(default="", max_length=200)


class PolicyOut(BaseModel):
    version: int
    tiers: int
    tier_rates_bps: list[int]
    paid_tiers: int = Field(description="the tiers this version pays under today's ceiling COMMISSION_TIERS")
    self_purchase_commission: bool = Field(default=False, description="always false: never paid, whatever an "
                                                                      "old version stored")
    note: str
    created_at: datetime


class PolicyHistoryOut(BaseModel):
    current: PolicyOut
    versions: list[PolicyOut]


def _default_policy(request: Request):
    return request.app.state.first_commission_policy


def _policy_out(row, ceiling: int) -> PolicyOut:
    return PolicyOut(version=row.version, tiers=row.tiers, tier_rates_bps=list(row.tier_rates_bps),
                     paid_tiers=min(row.tiers, ceiling), note=row.note, created_at=row.created_at)


@policy_router.get("", response_model=PolicyHistoryOut, summary="Commission policy in force and its history")
def get_policy(request: Request, _: Principal = Depends(require_roles("operator", "support"))) -> PolicyHistoryOut:
    with sessions_of(request).begin() as s:
        ceiling = request.app.state.settings.commission_tiers
        versions = [_policy_out(row, ceiling) for _, row in commission_policy.history(s, _default_policy(request))]
    return PolicyHistoryOut(current=versions[-1], versions=versions)


@policy_router.put("", response_model=PolicyOut,
                   summary="Set a new commission policy version (deeper than COMMISSION_TIERS, a tier without "
                           "a rate, or self-purchase commission is refused)")
def put_policy(body: PolicyBody, request: Request,
               principal: Principal = Depends(require_roles("operator"))) -> PolicyOut:
    ceiling = request.app.state.settings.commission_tiers
    try:
        if body.self_purchase_commission:
            raise PolicyRefused("self-purchase commission cannot be switched on: nobody earns on a purchase "
                                "they made themselves, at any tier")
        with sessions_of(request).begin() as s:
            version = commission_policy.set_policy(
                s, _default_policy(request), tiers=body.tiers, tier_rates_bps=body.tier_rates_bps,
                ceiling=ceiling, by_user_id=principal.user_id, note=body.note)
            return _policy_out(s.get(CommissionPolicyRow, version.version), ceiling)
    except PolicyRefused as err:
        raise ApiError(422, "POLICY_REFUSED", str(err)) from err
