"""Withdrawals: promoters move available commission to their WeChat change (零钱). Each is a
WithdrawalWorkflow; support reviews large ones, the mini program confirms receipt with
wx.requestMerchantTransfer, WeChat Pay's MCHTRANSFER.BILL.FINISHED notice ends it."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import structlog
from fastapi import APIRouter, Depends, Header, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field, StrictInt
from sqlalchemy import select
from temporalio.common import (
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDReusePolicy,
)
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from activities.withdrawals import open_withdrawal
from api.auth import PLATFORM_STAFF, Principal, require_roles
from api.deps import run_update, sessions_of, temporal_of
from api.errors import ApiError, not_found
from db.models import Promoter, User
from db.promoter_models import PromoterProfile
from db.withdrawal_models import Withdrawal
from domain.keys import KeyRing
from domain.promoters import (
    InvalidIdentity,
    hashes_under,
    real_name_hash,
    validate_real_name,
)
from domain.search_attributes import BUSINESS_STATUS, PROMOTER_ID
from domain.withdrawals import (
    REAL_NAME_REQUIRED_FROM_FEN,
    CancelRequest,
    TransferState,
    WithdrawalDecision,
    WithdrawalInput,
    WithdrawalProgress,
    WithdrawalRefused,
    WithdrawalStatus,
    check_amount,
    needs_real_name,
    withdrawal_id_of,
)
from integrations.wechatpay import TransferBill
from workflows.withdrawal import WithdrawalWorkflow, workflow_id

router = APIRouter(prefix="/withdrawals", tags=["withdrawals"])
log = structlog.get_logger()


class WithdrawalBody(BaseModel):
    amount_fen: StrictInt = Field(gt=0, description="integer fen, at least settings.withdrawal_min_fen")
    real_name: str | None = Field(
        default=None, max_length=30,
        description=f"the payee's real name, required from {REAL_NAME_REQUIRED_FROM_FEN} fen "
                    "(WeChat Pay checks it against the WeChat account); not kept after the transfer")


class TransferParams(BaseModel):
    """What the mini program passes to wx.requestMerchantTransfer (mchId, appId, package)."""

    mchid: str
    appid: str
    package_info: str


class WithdrawalOut(BaseModel):
    id: int
    promoter_id: int
    amount_fen: int
    status: WithdrawalStatus
    needs_review: bool
    review_decision: str | None
    review_note: str
    out_bill_no: str | None
    bill_state: str | None
    fail_reason: str | None
    created_at: datetime
    finished_at: datetime | None
    transfer: TransferParams | None = Field(
        default=None, description="only while WAIT_USER_CONFIRM, and only to the promoter it pays")


class ReviewBody(BaseModel):
    approve: bool
    note: str = Field(default="", max_length=500)


class CancelBody(BaseModel):
    reason: str = Field(default="", max_length=200)


def _out(request: Request, w: Withdrawal, *, owner: bool) -> WithdrawalOut:
    out = WithdrawalOut.model_validate(w, from_attributes=True)
    if owner and w.status == WithdrawalStatus.WAIT_USER_CONFIRM and w.package_info:
        config = request.app.state.pay.config
        out.transfer = TransferParams(mchid=config.mchid, appid=config.appid, package_info=w.package_info)
    return out


def _promoter(s, principal: Principal) -> Promoter:
    promoter = s.scalar(select(Promoter).where(Promoter.user_id == principal.user_id))
    if promoter is None:
        raise ApiError(404, "NOT_A_PROMOTER", "this account has no promoter profile")
    return promoter


def _payee_name(s, promoter: Promoter, amount_fen: int, raw: str | None, keys: KeyRing) -> str | None:
    """From 2,000 yuan WeChat Pay wants the payee's real name (and checks it against the
    WeChat account's); it must be the name verified at onboarding, compared by the keyed hash
    of the full name (under the identity-hash key or one still in its grace period), never by
    its masked form."""
    if not needs_real_name(amount_fen):
        return None
    if not raw:
        raise ApiError(422, "REAL_NAME_REQUIRED",
                       f"withdrawals from {REAL_NAME_REQUIRED_FROM_FEN // 100} yuan need your real name")
    try:
        name = validate_real_name(raw)
    except InvalidIdentity as err:
        raise ApiError(422, "REAL_NAME_MISMATCH", str(err)) from err
    profile = s.get(PromoterProfile, promoter.id)
    if profile is None or profile.real_name_hash is None:
        raise ApiError(409, "REAL_NAME_NOT_ON_FILE",
                       "no full real name was verified for this promoter; contact support to verify it again")
    if profile.real_name_hash not in hashes_under(name, keys.all, real_name_hash):
        raise ApiError(422, "REAL_NAME_MISMATCH", "the name does not match the one verified at onboarding")
    return name


@router.post("", status_code=201, response_model=WithdrawalOut,
             summary="Withdraw available commission to WeChat change (Idempotency-Key: a retry is the same withdrawal)")
async def request_withdrawal(body: WithdrawalBody, request: Request, response: Response,
                             principal: Principal = Depends(require_roles("promoter")),
                             idempotency_key: str | None = Header(default=None, min_length=1, max_length=64)
                             ) -> WithdrawalOut:
    settings = request.app.state.settings
    local_day = datetime.now(ZoneInfo(settings.settlement_timezone)).date()

    def claim() -> tuple[WithdrawalOut, WithdrawalInput, bool]:
        with sessions_of(request).begin() as s:
            promoter = _promoter(s, principal)
            try:
                check_amount(body.amount_fen, settings.withdrawal_rules)
                if not s.scalar(select(User.openid).where(User.id == promoter.user_id)):
                    raise ApiError(409, "NO_WECHAT_ACCOUNT",
                                   "log in with WeChat first: the money goes to your WeChat change")
                payee_name = _payee_name(s, promoter, body.amount_fen, body.real_name, settings.identity_hash_keys)
                w, created = open_withdrawal(s, promoter_id=promoter.id, amount_fen=body.amount_fen,
                                             request_key=idempotency_key, local_day=local_day,
                                             rules_=settings.withdrawal_rules, payee_name=payee_name)
            except WithdrawalRefused as err:
                raise ApiError(err.status, err.code, err.message) from err
            inp = WithdrawalInput(withdrawal_id=w.id, promoter_id=promoter.id, amount_fen=w.amount_fen,
                                  needs_review=w.needs_review, timings=settings.withdrawal_timings())
            return _out(request, w, owner=True), inp, created

    out, inp, created = await run_in_threadpool(claim)
    if not created:
        response.status_code = 200
    try:
        # The withdrawal and its money are committed first; a retried request with the same
        # Idempotency-Key finds them and starts the workflow if a crash came in between.
        await (await temporal_of(request)).start_workflow(
            WithdrawalWorkflow.run, inp, id=workflow_id(inp.withdrawal_id), task_queue=settings.task_queue,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            search_attributes=TypedSearchAttributes([
                SearchAttributePair(PROMOTER_ID, str(inp.promoter_id)),
                SearchAttributePair(BUSINESS_STATUS, f"WITHDRAWAL_{WithdrawalStatus.REQUESTED.value}")]))
    except WorkflowAlreadyStartedError:
        if created:  # an id used before: the database was reset or restored under a live Temporal
            log.error("withdrawal.workflow_id_taken", withdrawal_id=inp.withdrawal_id)
    return out


@router.get("", response_model=list[WithdrawalOut],
            summary="My withdrawals, newest first (support and operators: everyone's, e.g. status=REVIEWING)")
def list_withdrawals(request: Request, status: WithdrawalStatus | None = None,
                     limit: int = Query(default=20, ge=1, le=100), offset: int = Query(default=0, ge=0),
                     principal: Principal = Depends(require_roles("promoter", *PLATFORM_STAFF))) -> list[WithdrawalOut]:
    with sessions_of(request)() as s:
        query = select(Withdrawal)
        if principal.role == "promoter":
            query = query.where(Withdrawal.promoter_id == _promoter(s, principal).id)
        if status:
            query = query.where(Withdrawal.status == status)
        rows = s.scalars(query.order_by(Withdrawal.id.desc()).limit(limit).offset(offset))
        return [_out(request, w, owner=principal.role == "promoter") for w in rows]


class AutoPayout(BaseModel):
    enabled: bool = Field(description="after each monthly statement, pay the available balance out to WeChat "
                                      "change (below the real-name amount; you confirm receipt in the mini program)")


@router.get("/auto-payout", response_model=AutoPayout, summary="Whether my commission is paid out automatically")
def get_auto_payout(request: Request, principal: Principal = Depends(require_roles("promoter"))) -> AutoPayout:
    with sessions_of(request)() as s:
        return AutoPayout(enabled=_promoter(s, principal).auto_payout)


@router.put("/auto-payout", response_model=AutoPayout,
            summary="Choose automatic payout after each monthly statement (or turn it off)")
def set_auto_payout(body: AutoPayout, request: Request,
                    principal: Principal = Depends(require_roles("promoter"))) -> AutoPayout:
    with sessions_of(request).begin() as s:
        promoter = _promoter(s, principal)
        if body.enabled and not s.scalar(select(User.openid).where(User.id == promoter.user_id)):
            raise ApiError(409, "NO_WECHAT_ACCOUNT", "log in with WeChat first: the money goes to your WeChat change")
        promoter.auto_payout = body.enabled
        return AutoPayout(enabled=promoter.auto_payout)


def _load(request: Request, principal: Principal, withdrawal_id: int) -> WithdrawalOut:
    with sessions_of(request)() as s:
        w = s.get(Withdrawal, withdrawal_id)
        owner = False
        if w is not None and principal.role == "promoter":
            promoter_id = s.scalar(select(Promoter.id).where(Promoter.user_id == principal.user_id))
            owner = w.promoter_id == promoter_id
        if w is None or not (owner or principal.role in PLATFORM_STAFF):
            raise not_found(f"withdrawal {withdrawal_id}")
        return _out(request, w, owner=owner)


@router.get("/{withdrawal_id}", response_model=WithdrawalOut,
            summary="A withdrawal; while WAIT_USER_CONFIRM it carries the wx.requestMerchantTransfer parameters")
def get_withdrawal(withdrawal_id: int, request: Request,
                   principal: Principal = Depends(require_roles("promoter", *PLATFORM_STAFF))) -> WithdrawalOut:
    return _load(request, principal, withdrawal_id)


@router.post("/{withdrawal_id}/review", response_model=WithdrawalProgress,
             summary="Support approves or rejects (with a note) a withdrawal above the review threshold")
async def review(withdrawal_id: int, body: ReviewBody, request: Request,
                 principal: Principal = Depends(require_roles(*PLATFORM_STAFF))) -> WithdrawalProgress:
    await run_in_threadpool(_load, request, principal, withdrawal_id)
    decision = WithdrawalDecision(approve=body.approve, note=body.note, reviewer_user_id=principal.user_id)
    return await run_update(request, workflow_id(withdrawal_id), WithdrawalWorkflow.review, decision)


@router.post("/{withdrawal_id}/cancel", response_model=WithdrawalProgress,
             summary="The promoter takes back a withdrawal not paid yet (the money returns to the wallet)")
async def cancel(withdrawal_id: int, body: CancelBody, request: Request,
                 principal: Principal = Depends(require_roles("promoter"))) -> WithdrawalProgress:
    await run_in_threadpool(_load, request, principal, withdrawal_id)
    request_ = CancelRequest(by_user_id=principal.user_id, reason=body.reason)
    return await run_update(request, workflow_id(withdrawal_id), WithdrawalWorkflow.cancel, request_)


async def transfer_notified(request: Request, resource: dict) -> None:
    """A MCHTRANSFER.BILL.FINISHED notice (already verified and decrypted) for its withdrawal's
    workflow, which takes the first final state and ignores repeats."""
    bill = TransferBill.model_validate(resource)
    withdrawal_id = withdrawal_id_of(bill.out_bill_no)
    if withdrawal_id is None:
        log.info("webhook.wechatpay.transfer_not_ours", out_bill_no=bill.out_bill_no)
        return
    notice = TransferState(out_bill_no=bill.out_bill_no, state=bill.state, transfer_bill_no=bill.transfer_bill_no,
                           fail_reason=bill.fail_reason)
    handle = (await temporal_of(request)).get_workflow_handle(workflow_id(withdrawal_id))
    try:
        await handle.signal(WithdrawalWorkflow.transfer_notified, notice)
    except RPCError as err:
        if err.status != RPCStatusCode.NOT_FOUND:
            raise
        log.info("webhook.wechatpay.withdrawal_not_running", out_bill_no=bill.out_bill_no)
