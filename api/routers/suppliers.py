"""Supplier onboarding (SupplierOnboardingWorkflow), review by support, suspension."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from temporalio.client import WorkflowUpdateFailedError
from temporalio.common import SearchAttributePair, TypedSearchAttributes
from temporalio.service import RPCError

from activities.catalog import (
    duplicate_licence,
    reinstate_supplier,
    suspend_supplier,
)
from api.auth import (
    PLATFORM_STAFF,
    Principal,
    hash_password,
    issue_token,
    optional_roles,
    require_roles,
)
from api.deps import sessions_of, temporal_of
from api.errors import ApiError, not_found, update_refused
from api.views import SupplierOut, supplier_view, viewer_of
from db.catalog_models import SupplierProfile
from db.models import Supplier, User
from domain.search_attributes import BUSINESS_STATUS, SUPPLIER_ID
from domain.suppliers import (
    OnboardingProgress,
    OnboardingStatus,
    ReviewDecision,
    ReviewTimings,
    SupplierApplication,
    application_problems,
    validate_uscc,
)
from workflows.supplier import (
    SupplierOnboardingInput,
    SupplierOnboardingWorkflow,
    workflow_id,
)

router = APIRouter(prefix="/suppliers", tags=["suppliers"])


class SupplierAccount(BaseModel):
    username: str = Field(pattern=r"^[A-Za-z0-9_.\-]{3,64}$")
    password: str = Field(min_length=8, max_length=128)


class ApplyBody(SupplierApplication):
    account: SupplierAccount | None = Field(
        default=None, description="create the supplier login (password) with the application; "
                                  "omit when applying with a supplier bearer token")


class AppliedOut(BaseModel):
    supplier_id: int
    status: str
    workflow_id: str
    access_token: str | None = None
    user_id: int


def _refuse_bad_application(app: SupplierApplication) -> SupplierApplication:
    problems = application_problems(app)
    if problems:
        raise ApiError(422, problems[0].code, "; ".join(p.message for p in problems))
    return app.model_copy(update={"licence_no": validate_uscc(app.licence_no)})


def _profile_values(app: SupplierApplication) -> dict:
    return dict(kind=app.kind, licence_no=app.licence_no, contact_name=app.contact_name,
                contact_phone=app.contact_phone, categories=app.categories,
                documents=[d.model_dump(exclude_none=True) for d in app.documents],
                wechatpay_mchid=app.wechatpay_mchid)


def _timings(settings) -> ReviewTimings:
    return ReviewTimings(
        review_sla=settings.supplier_review_sla,
        more_info_timeout=settings.supplier_more_info_timeout)


@router.post("", status_code=201, response_model=AppliedOut,
             summary="Apply as a supplier (个体工商户 or 企业): licence, contact, qualification documents")
async def apply(body: ApplyBody, request: Request,
                principal: Principal | None = Depends(optional_roles(
                    "supplier", why="applying without a token creates the supplier's own login"))) -> AppliedOut:
    settings = request.app.state.settings
    if principal is None and body.account is None:
        raise ApiError(401, "UNAUTHORIZED", "log in as a supplier, or give an account to create")
    app = _refuse_bad_application(SupplierApplication.model_validate(body.model_dump(exclude={"account"})))

    def write() -> tuple[int, int, str | None, bool]:
        """(supplier id, user id, previous status or None if new, user created)."""
        try:
            with sessions_of(request).begin() as s:
                created = False
                if principal is None:
                    if s.scalar(select(User.id).where(User.username == body.account.username)):
                        raise ApiError(409, "USERNAME_TAKEN", "this username is taken")
                    user = User(role="supplier", username=body.account.username, display_name=app.name[:64],
                                password_hash=hash_password(body.account.password))
                    s.add(user)
                    s.flush()
                    user_id, created = user.id, True
                else:
                    user_id = principal.user_id
                    if s.get(User, user_id) is None:
                        raise ApiError(401, "UNAUTHORIZED", "user no longer exists")
                if duplicate_licence(s, app.licence_no) is not None:
                    raise ApiError(409, "DUPLICATE_LICENCE",
                                   "this 统一社会信用代码 is already registered by another supplier")
                supplier = s.scalar(select(Supplier).where(Supplier.owner_user_id == user_id).with_for_update())
                previous = None
                if supplier is None:
                    supplier = Supplier(owner_user_id=user_id, name=app.name, status="pending_review",
                                        service_fee_bps=0)
                    s.add(supplier)
                    s.flush()
                    s.add(SupplierProfile(supplier_id=supplier.id, **_profile_values(app)))
                elif supplier.status in ("rejected", "expired"):  # applying again
                    previous = supplier.status
                    supplier.status, supplier.name = "pending_review", app.name
                    profile = s.get(SupplierProfile, supplier.id)
                    for k, v in _profile_values(app).items():
                        setattr(profile, k, v)
                    profile.open, profile.review_note, profile.updated_at = True, "", datetime.now().astimezone()
                else:
                    raise ApiError(409, "ALREADY_APPLIED", f"this account's supplier is {supplier.status}")
                s.flush()
                return supplier.id, user_id, previous, created
        except IntegrityError as err:  # two applications racing for one licence
            raise ApiError(409, "DUPLICATE_LICENCE", "this 统一社会信用代码 is already registered") from err

    supplier_id, user_id, previous, created = await run_in_threadpool(write)
    inp = SupplierOnboardingInput(supplier_id=supplier_id, timings=_timings(settings),
                                  fee_bps_min=settings.supplier_service_fee_bps_min,
                                  fee_bps_max=settings.supplier_service_fee_bps_max)
    try:
        client = await temporal_of(request)
        await client.start_workflow(
            SupplierOnboardingWorkflow.run, inp, id=workflow_id(supplier_id), task_queue=settings.task_queue,
            search_attributes=TypedSearchAttributes([
                SearchAttributePair(SUPPLIER_ID, [str(supplier_id)]),
                SearchAttributePair(BUSINESS_STATUS, OnboardingStatus.CHECKING.value)]))
    except Exception as err:  # noqa: BLE001 - undo the application: nothing half-written
        await run_in_threadpool(_undo_application, request, supplier_id, user_id, previous, created)
        raise ApiError(503, "TEMPORAL_UNAVAILABLE", "could not start the review; try again") from err
    token = await run_in_threadpool(_supplier_token, request, user_id) if created else None
    return AppliedOut(supplier_id=supplier_id, status="pending_review", workflow_id=workflow_id(supplier_id),
                      access_token=token, user_id=user_id)


def _supplier_token(request: Request, user_id: int) -> str:
    with sessions_of(request).begin() as s:
        return issue_token(request.app.state.settings, s, user_id, "supplier")


def _undo_application(request: Request, supplier_id: int, user_id: int, previous: str | None, created: bool) -> None:
    with sessions_of(request).begin() as s:
        if previous is not None:
            s.get(Supplier, supplier_id).status = previous
            s.get(SupplierProfile, supplier_id).open = False
            return
        s.delete(s.get(SupplierProfile, supplier_id))
        s.flush()
        s.delete(s.get(Supplier, supplier_id))
        if created:
            s.flush()
            s.delete(s.get(User, user_id))


def _own_supplier(s, principal: Principal, lock: bool = False) -> Supplier:
    query = select(Supplier).where(Supplier.owner_user_id == principal.user_id)
    supplier = s.scalar(query.with_for_update() if lock else query)
    if supplier is None:
        raise not_found("supplier application")
    return supplier


@router.get("/me", response_model=SupplierOut, summary="My supplier application and account")
def my_supplier(request: Request, principal: Principal = Depends(require_roles("supplier"))) -> SupplierOut:
    with sessions_of(request)() as s:
        supplier = _own_supplier(s, principal)
        return supplier_view(viewer_of(s, principal), supplier, s.get(SupplierProfile, supplier.id))


@router.post("/me/resubmit", response_model=SupplierOut,
             summary="Resubmit the application with the information support asked for")
async def resubmit(body: SupplierApplication, request: Request,
                   principal: Principal = Depends(require_roles("supplier"))) -> SupplierOut:
    app = _refuse_bad_application(body)

    def write() -> SupplierOut:
        try:
            with sessions_of(request).begin() as s:
                supplier = _own_supplier(s, principal, lock=True)
                if supplier.status != "more_info":
                    raise ApiError(409, "NOT_AWAITING_RESUBMISSION",
                                   f"application is {supplier.status}; nothing was asked for")
                if duplicate_licence(s, app.licence_no, except_supplier=supplier.id) is not None:
                    raise ApiError(409, "DUPLICATE_LICENCE",
                                   "this 统一社会信用代码 is already registered by another supplier")
                profile = s.get(SupplierProfile, supplier.id)
                for k, v in _profile_values(app).items():
                    setattr(profile, k, v)
                profile.resubmissions += 1
                profile.updated_at = datetime.now().astimezone()
                supplier.status, supplier.name = "pending_review", app.name
                s.flush()
                return supplier_view(viewer_of(s, principal), supplier, profile)
        except IntegrityError as err:
            raise ApiError(409, "DUPLICATE_LICENCE", "this 统一社会信用代码 is already registered") from err

    out = await run_in_threadpool(write)
    handle = (await temporal_of(request)).get_workflow_handle(workflow_id(out.id))
    await handle.signal(SupplierOnboardingWorkflow.resubmitted)
    return out


@router.get("", response_model=list[SupplierOut], summary="Suppliers by status (support, operators)")
def list_suppliers(request: Request, status: str | None = None, limit: int = 50, offset: int = 0,
                   principal: Principal = Depends(require_roles(*PLATFORM_STAFF))) -> list[SupplierOut]:
    with sessions_of(request)() as s:
        viewer = viewer_of(s, principal)
        query = select(Supplier, SupplierProfile).outerjoin(SupplierProfile, SupplierProfile.supplier_id == Supplier.id)
        if status:
            query = query.where(Supplier.status == status)
        rows = s.execute(query.order_by(Supplier.id).limit(min(limit, 200)).offset(offset)).all()
        return [supplier_view(viewer, sup, prof) for sup, prof in rows]


@router.get("/{supplier_id}", response_model=SupplierOut, summary="One supplier (support, operators)")
def get_supplier(supplier_id: int, request: Request,
                 principal: Principal = Depends(require_roles(*PLATFORM_STAFF))) -> SupplierOut:
    with sessions_of(request)() as s:
        supplier = s.get(Supplier, supplier_id)
        if supplier is None:
            raise not_found(f"supplier {supplier_id}")
        return supplier_view(viewer_of(s, principal), supplier, s.get(SupplierProfile, supplier_id))


class ReviewBody(BaseModel):
    action: str = Field(pattern="^(approve|reject|more_info)$")
    service_fee_bps: int | None = Field(default=None, description="approve: between the configured 1%–5%")
    reason: str | None = Field(default=None, max_length=500)


@router.post("/{supplier_id}/review", response_model=OnboardingProgress,
             summary="Support decides: approve with a service fee, reject, or ask for more information")
async def review(supplier_id: int, body: ReviewBody, request: Request,
                 principal: Principal = Depends(require_roles("support"))) -> OnboardingProgress:
    def status() -> str:
        with sessions_of(request)() as s:
            supplier = s.get(Supplier, supplier_id)
            if supplier is None:
                raise not_found(f"supplier {supplier_id}")
            return supplier.status

    current = await run_in_threadpool(status)
    if current != "pending_review":
        raise ApiError(409, "NOT_AWAITING_DECISION", f"supplier is {current}, not awaiting a decision")
    decision = ReviewDecision(action=body.action, reviewer_user_id=principal.user_id,
                              service_fee_bps=body.service_fee_bps, reason=body.reason)
    handle = (await temporal_of(request)).get_workflow_handle(workflow_id(supplier_id))
    try:
        return await handle.execute_update(SupplierOnboardingWorkflow.decide, decision)
    except WorkflowUpdateFailedError as err:
        raise update_refused(err) from err
    except RPCError as err:
        raise ApiError(409, "NOT_AWAITING_DECISION", f"the review is not running: {err.message}") from err


class SuspendBody(BaseModel):
    reason: str = Field(min_length=2, max_length=500, description="the violation")


class SuspensionOut(BaseModel):
    supplier_id: int
    status: str
    products: int
    window_entries: int


@router.post("/{supplier_id}/suspend", response_model=SuspensionOut,
             summary="Suspend for violations: delist every product and take it out of every window")
def suspend(supplier_id: int, body: SuspendBody, request: Request,
            principal: Principal = Depends(require_roles(*PLATFORM_STAFF))) -> SuspensionOut:
    with sessions_of(request).begin() as s:
        supplier = s.get(Supplier, supplier_id, with_for_update=True)
        if supplier is None:
            raise not_found(f"supplier {supplier_id}")
        if supplier.status != "active":
            raise ApiError(409, "NOT_ACTIVE", f"supplier is {supplier.status}")
        products, entries = suspend_supplier(s, supplier_id, body.reason, principal.user_id)
        return SuspensionOut(supplier_id=supplier_id, status="suspended", products=products, window_entries=entries)


@router.post("/{supplier_id}/reinstate", response_model=SuspensionOut,
             summary="Lift a suspension: products back on sale, back in the windows they left")
def reinstate(supplier_id: int, request: Request,
              principal: Principal = Depends(require_roles(*PLATFORM_STAFF))) -> SuspensionOut:
    with sessions_of(request).begin() as s:
        supplier = s.get(Supplier, supplier_id, with_for_update=True)
        if supplier is None:
            raise not_found(f"supplier {supplier_id}")
        if supplier.status != "suspended":
            raise ApiError(409, "NOT_SUSPENDED", f"supplier is {supplier.status}")
        products, entries = reinstate_supplier(s, supplier_id, principal.user_id)
        return SuspensionOut(supplier_id=supplier_id, status="active", products=products, window_entries=entries)
