"""Risk flags for support: shared devices, IPs and addresses across buyer accounts, frequent
returners. Flags are for review only — nothing they point at was ever blocked; an open flag on
an order only holds that order's commission (not released) until support clears or confirms it."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, Field
from sqlalchemy import select

from activities import bonuses
from api.auth import PLATFORM_STAFF, Principal, require_roles
from api.deps import sessions_of
from api.errors import ApiError, not_found
from db.risk_models import RiskFlag
from domain.risk import RiskKind, RiskStatus

router = APIRouter(prefix="/risk", tags=["risk"])
staff = require_roles(*PLATFORM_STAFF)


class RiskFlagOut(BaseModel):
    id: int
    kind: RiskKind
    subject_type: str
    subject_id: str
    buyer_user_id: int | None
    order_no: str | None
    detail: str
    related: dict
    status: RiskStatus
    reviewed_by: int | None
    review_note: str | None
    reviewed_at: datetime | None
    created_at: datetime


class RiskReview(BaseModel):
    status: RiskStatus = Field(description="cleared (nothing wrong) or confirmed (a real finding)")
    note: str = Field(min_length=1, max_length=500)


@router.get("/flags", response_model=list[RiskFlagOut], summary="Risk flags, newest first")
def list_flags(request: Request, status: RiskStatus | None = None, kind: RiskKind | None = None,
               buyer_user_id: int | None = None, limit: int = Query(default=50, ge=1, le=500),
               _: Principal = Depends(staff)) -> list[RiskFlagOut]:
    query = select(RiskFlag)
    if status:
        query = query.where(RiskFlag.status == status)
    if kind:
        query = query.where(RiskFlag.kind == kind)
    if buyer_user_id is not None:
        query = query.where(RiskFlag.buyer_user_id == buyer_user_id)
    with sessions_of(request)() as s:
        rows = s.scalars(query.order_by(RiskFlag.id.desc()).limit(limit)).all()
        return [RiskFlagOut.model_validate(f, from_attributes=True) for f in rows]


@router.post("/flags/{flag_id}/review", response_model=RiskFlagOut, summary="Clear or confirm a risk flag")
def review_flag(flag_id: int, body: RiskReview, request: Request,
                principal: Principal = Depends(require_roles("support"))) -> RiskFlagOut:
    if body.status == RiskStatus.OPEN:
        raise ApiError(422, "INVALID_DECISION", "a review clears or confirms the flag")
    with sessions_of(request).begin() as s:
        flag = s.get(RiskFlag, flag_id, with_for_update=True)
        if flag is None:
            raise not_found(f"risk flag {flag_id}")
        if flag.status != RiskStatus.OPEN:
            raise ApiError(409, "ALREADY_REVIEWED", f"flag {flag_id} was already {flag.status}")
        flag.status, flag.review_note = body.status, body.note.strip()
        flag.reviewed_by, flag.reviewed_at = principal.user_id, datetime.now(UTC)
        s.flush()
        # the order's frozen commission: released when its last flag is cleared, forfeited to
        # the platform when one is confirmed
        bonuses.flag_reviewed(s, flag)
        return RiskFlagOut.model_validate(flag, from_attributes=True)
