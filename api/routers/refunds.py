"""Refunds and after-sales: buyers ask, support reviews, buyers ship returns, suppliers
confirm them. Each refund is a RefundWorkflow; decisions reach it as workflow updates."""

from __future__ import annotations

import hashlib

from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field
from sqlalchemy import select
from temporalio.common import (
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDReusePolicy,
)
from temporalio.exceptions import WorkflowAlreadyStartedError

from activities.refunds import mark_started, open_refund, refund_input
from api.auth import PLATFORM_STAFF, Principal, require_roles
from api.deps import run_update, sessions_of, temporal_of
from api.errors import ApiError, not_found
from api.views import RefundOut, refund_scope, refund_view, viewer_of
from db.order_models import Refund
from domain.orders import ShipmentInput
from domain.refunds import (
    BUYER_KINDS,
    NEVER_REJECTABLE,
    RefundDecision,
    RefundInput,
    RefundKind,
    RefundLineRequest,
    RefundProgress,
    RefundRefused,
    RefundStatus,
    ReturnParcel,
    ReturnReceipt,
    new_refund_no,
)
from domain.search_attributes import BUSINESS_STATUS, ORDER_NO
from workflows.refund import RefundWorkflow, workflow_id

router = APIRouter(tags=["refunds"])


class RefundBody(BaseModel):
    kind: RefundKind = Field(description="cancel (before shipment), return (7-day no reason), "
                                         "quality_return or quality_refund (refund only, reviewed)")
    lines: list[RefundLineRequest] | None = Field(
        default=None, description="lines and quantities; empty: every unit not yet refunded")
    reason: str = Field(default="", max_length=200)


class ReviewBody(BaseModel):
    approve: bool
    note: str = Field(default="", max_length=500)


def _refund_no(user_id: int, idempotency_key: str | None) -> str:
    if not idempotency_key:
        return new_refund_no()
    digest = hashlib.sha256(f"refund:{user_id}:{idempotency_key}".encode()).hexdigest()
    return f"RF{digest[:16].upper()}"


@router.post("/orders/{order_no}/refunds", status_code=201, response_model=RefundOut,
             summary="Ask for a refund: cancel, return, or a quality claim",
             responses={409: {"description": "NOTHING_TO_REFUND, ALREADY_SHIPPED, NOT_SHIPPED, WINDOW_CLOSED, "
                                             "NOT_REFUNDABLE, IDEMPOTENCY_CONFLICT, REFUND_IN_SHOP, GROUP_ORDER_WHOLE"}})
async def request_refund(order_no: str, body: RefundBody, request: Request,
                         principal: Principal = Depends(require_roles("buyer", "promoter")),
                         idempotency_key: str | None = Header(default=None, max_length=64)) -> RefundOut:
    if body.kind not in BUYER_KINDS:
        raise ApiError(422, "INVALID_KIND", f"{body.kind} refunds are started by the platform")
    settings = request.app.state.settings
    refund_no = _refund_no(principal.user_id, idempotency_key)

    def claim() -> tuple[RefundOut, RefundInput, bool]:
        with sessions_of(request).begin() as s:
            try:
                refund, _ = open_refund(s, refund_no=refund_no, order_no=order_no,
                                        buyer_user_id=principal.user_id, kind=body.kind, lines=body.lines,
                                        reason=body.reason, rules_=settings.refund_rules)
            except RefundRefused as err:
                status = 404 if err.code == "ORDER_NOT_FOUND" else 409 if err.code in (
                    "NOTHING_TO_REFUND", "ALREADY_SHIPPED", "NOT_SHIPPED", "WINDOW_CLOSED",
                    "NOT_REFUNDABLE", "IDEMPOTENCY_CONFLICT", "REFUND_IN_SHOP", "GROUP_ORDER_WHOLE") else 422
                raise ApiError(status, err.code, err.message) from err
            return refund_view(s, viewer_of(s, principal), refund), refund_input(s, refund, settings.refund_timings()), \
                refund.workflow_started_at is None

    out, inp, unstarted = await run_in_threadpool(claim)
    if unstarted:
        # The claim is committed first. A crash before the workflow starts is repaired by a
        # retried request (with or without its Idempotency-Key it finds the same open refund)
        # or by the `refunds-sweep` schedule, which starts any refund left without a workflow.
        client = await temporal_of(request)
        try:
            await client.start_workflow(
                RefundWorkflow.run, inp, id=workflow_id(out.refund_no), task_queue=settings.task_queue,
                id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
                search_attributes=TypedSearchAttributes([SearchAttributePair(ORDER_NO, order_no),
                                                         SearchAttributePair(BUSINESS_STATUS, "REFUND_REQUESTED")]))
        except WorkflowAlreadyStartedError:
            pass

        def started() -> None:
            with sessions_of(request).begin() as s:
                mark_started(s, [out.refund_no])

        await run_in_threadpool(started)
    return out


def _load(request: Request, principal: Principal, refund_no: str) -> RefundOut:
    with sessions_of(request)() as s:
        refund = s.get(Refund, refund_no)
        out = refund_view(s, viewer_of(s, principal), refund) if refund is not None else None
        if out is None:
            raise not_found(f"refund {refund_no}")
        return out


REFUND_READERS = ("buyer", "promoter", "supplier", *PLATFORM_STAFF)


@router.get("/refunds/{refund_no}", response_model=RefundOut, summary="A refund and its lines")
def get_refund(refund_no: str, request: Request,
               principal: Principal = Depends(require_roles(*REFUND_READERS))) -> RefundOut:
    return _load(request, principal, refund_no)


@router.get("/refunds", response_model=list[RefundOut], summary="Refunds I may see, newest first")
def list_refunds(request: Request, status: RefundStatus | None = None, order_no: str | None = None,
                 limit: int = Query(default=20, ge=1, le=100), offset: int = Query(default=0, ge=0),
                 principal: Principal = Depends(require_roles(*REFUND_READERS))) -> list[RefundOut]:
    with sessions_of(request)() as s:
        viewer = viewer_of(s, principal)
        query = select(Refund).where(refund_scope(viewer))
        if status:
            query = query.where(Refund.status == status)
        if order_no:
            query = query.where(Refund.order_no == order_no)
        refunds = s.scalars(query.order_by(Refund.created_at.desc()).limit(limit).offset(offset)).all()
        return [out for out in (refund_view(s, viewer, r) for r in refunds) if out is not None]


async def _update(request: Request, refund_no: str, update, arg) -> RefundProgress:
    return await run_update(request, workflow_id(refund_no), update, arg)


@router.post("/refunds/{refund_no}/review", response_model=RefundProgress,
             summary="Support judges a quality claim (by its deadline); cancels and 7-day returns cannot be rejected")
async def review(refund_no: str, body: ReviewBody, request: Request,
                 principal: Principal = Depends(require_roles(*PLATFORM_STAFF))) -> RefundProgress:
    refund = await run_in_threadpool(_load, request, principal, refund_no)
    if not body.approve and RefundKind(refund.kind) in NEVER_REJECTABLE:
        raise ApiError(409, "NOT_REJECTABLE", f"a {refund.kind} refund is the buyer's right: it is never rejected")
    decision = RefundDecision(approve=body.approve, note=body.note, reviewer_user_id=principal.user_id)
    return await _update(request, refund_no, RefundWorkflow.review, decision)


@router.post("/refunds/{refund_no}/resolve", response_model=RefundProgress,
             summary="Support confirms an abnormal refund was settled another way")
async def resolve(refund_no: str, body: ReviewBody, request: Request,
                  principal: Principal = Depends(require_roles(*PLATFORM_STAFF))) -> RefundProgress:
    await run_in_threadpool(_load, request, principal, refund_no)
    decision = RefundDecision(approve=body.approve, note=body.note, reviewer_user_id=principal.user_id)
    return await _update(request, refund_no, RefundWorkflow.resolve_abnormal, decision)


class ReturnParcelBody(BaseModel):
    carrier: str = Field(pattern=r"^[A-Za-z0-9]{2,32}$")
    waybill_no: str = Field(pattern=r"^[A-Za-z0-9]{6,40}$")


@router.post("/refunds/{refund_no}/return-parcel", response_model=RefundProgress,
             summary="Buyer gives the return parcel's carrier and waybill")
async def ship_return(refund_no: str, body: ReturnParcelBody, request: Request,
                      principal: Principal = Depends(require_roles("buyer", "promoter"))) -> RefundProgress:
    await run_in_threadpool(_load, request, principal, refund_no)
    checked = ShipmentInput(supplier_id=0, carrier=body.carrier, waybill_no=body.waybill_no)
    parcel = ReturnParcel(carrier=checked.carrier, waybill_no=checked.waybill_no)
    return await _update(request, refund_no, RefundWorkflow.ship_return, parcel)


@router.post("/refunds/{refund_no}/confirm-return", response_model=RefundProgress,
             summary="Supplier confirms the returned goods arrived")
async def confirm_return(refund_no: str, request: Request,
                         principal: Principal = Depends(require_roles("supplier"))) -> RefundProgress:
    def supplier_id() -> int:
        _load(request, principal, refund_no)  # 404 unless the refund has this supplier's lines
        with sessions_of(request)() as s:
            return viewer_of(s, principal).supplier_id

    receipt = ReturnReceipt(supplier_id=await run_in_threadpool(supplier_id))
    return await _update(request, refund_no, RefundWorkflow.confirm_return, receipt)
