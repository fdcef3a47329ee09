from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel
from sqlalchemy import false, or_, select

from api.auth import PLATFORM_STAFF, Principal, signed_in
from api.deps import sessions_of
from db.catalog_models import Notification

router = APIRouter(prefix="/notifications", tags=["notifications"])


class NotificationOut(BaseModel):
    id: int
    kind: str
    subject_type: str
    subject_id: str
    message: str
    created_at: datetime
    read_at: datetime | None


@router.get("", response_model=list[NotificationOut], summary="My notifications (and my role's), newest first")
def my_notifications(request: Request, kind: str | None = None, limit: int = 50,
                     principal: Principal = Depends(signed_in)) -> list[NotificationOut]:
    with sessions_of(request)() as s:
        query = select(Notification).where(or_(
            Notification.recipient_user_id == principal.user_id,
            (Notification.recipient_role == principal.role) if principal.role in PLATFORM_STAFF else false()))
        if kind:
            query = query.where(Notification.kind == kind)
        rows = s.scalars(query.order_by(Notification.id.desc()).limit(min(limit, 200))).all()
        return [NotificationOut.model_validate(n, from_attributes=True) for n in rows]
