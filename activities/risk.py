"""Risk findings, written in the same database transaction as the order or refund they are
about (so a finding is never lost and never half-written) and never stopping either."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from db.risk_models import OrderFingerprint, RiskFlag
from domain.risk import RiskKind, RiskRules, findings

_COLUMNS = {RiskKind.SHARED_DEVICE: OrderFingerprint.device_fp, RiskKind.SHARED_IP: OrderFingerprint.ip_fp,
            RiskKind.SHARED_ADDRESS: OrderFingerprint.address_fp}
RELATED_SHOWN = 20


def raise_flag(s: Session, kind: RiskKind, subject_type: str, subject_id: str, detail: str, *,
               buyer_user_id: int | None = None, order_no: str | None = None, related: dict | None = None) -> None:
    """One flag per kind and subject; raising it again changes nothing."""
    s.execute(insert(RiskFlag).values(
        kind=kind, subject_type=subject_type, subject_id=subject_id, detail=detail, buyer_user_id=buyer_user_id,
        order_no=order_no, related=related or {}, status="open",
    ).on_conflict_do_nothing(constraint="uq_risk_flag_subject"))


def check_order(s: Session, *, order_no: str, buyer_user_id: int, device_fp: str | None, ip_fp: str | None,
                address_fp: str | None, rules: RiskRules, now: datetime | None = None,
                earlier_fps: list[str] | None = None) -> None:
    """Keep the order's fingerprints and flag it when one of them is shared by too many buyer
    accounts in the window. `earlier_fps`: the same values fingerprinted under keys rotated out
    (still in their grace period), so orders made before a rotation still count."""
    s.add(OrderFingerprint(order_no=order_no, buyer_user_id=buyer_user_id, device_fp=device_fp, ip_fp=ip_fp,
                           address_fp=address_fp))
    s.flush()
    since = (now or datetime.now(UTC)) - rules.window
    mine = {RiskKind.SHARED_DEVICE: device_fp, RiskKind.SHARED_IP: ip_fp, RiskKind.SHARED_ADDRESS: address_fp}
    sharing: dict[RiskKind, int] = {}
    buyers_by_kind: dict[RiskKind, list[int]] = {}
    for kind, value in mine.items():
        if value is None:
            continue
        column = _COLUMNS[kind]
        buyers = list(s.scalars(
            select(OrderFingerprint.buyer_user_id).where(column.in_([value, *(earlier_fps or ())]),
                                                         OrderFingerprint.created_at >= since)
            .group_by(OrderFingerprint.buyer_user_id).order_by(func.min(OrderFingerprint.created_at))))
        sharing[kind], buyers_by_kind[kind] = len(buyers), buyers
    for kind, detail in findings(rules, sharing):
        raise_flag(s, kind, "order", order_no, detail, buyer_user_id=buyer_user_id, order_no=order_no,
                   related={"buyer_user_ids": buyers_by_kind[kind][:RELATED_SHOWN]})
