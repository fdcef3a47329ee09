from __future__ import annotations

import csv
import io
import re
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel
from sqlalchemy import select

from api.auth import Principal, require_roles
from api.deps import sessions_of
from api.errors import ApiError
from db.models import LedgerAccount, LedgerEntry, LedgerTransaction, Promoter
from domain import ledger as rules
from domain.money import yuan

router = APIRouter(prefix="/wallet", tags=["wallet"])


class WalletEntry(BaseModel):
    at: datetime
    kind: str
    account: str
    amount_fen: int
    order_no: str | None
    order_line_id: int | None
    tier: int | None
    rule: str


class WalletOut(BaseModel):
    promoter_id: int
    pending_fen: int
    available_fen: int
    entries: list[WalletEntry]


@router.get("", response_model=WalletOut, summary="My commission: pending, available and every entry")
def my_wallet(request: Request, limit: int = 50,
              principal: Principal = Depends(require_roles("promoter"))) -> WalletOut:
    with sessions_of(request)() as s:
        promoter_id = s.scalar(select(Promoter.id).where(Promoter.user_id == principal.user_id))
        if promoter_id is None:
            raise ApiError(404, "NOT_A_PROMOTER", "this account has no promoter profile")
        codes = [rules.promoter_pending(promoter_id), rules.promoter_available(promoter_id)]
        balances = dict(s.execute(select(LedgerAccount.code, LedgerAccount.balance_fen)
                                  .where(LedgerAccount.code.in_(codes))).all())
        rows = s.execute(
            select(LedgerEntry, LedgerTransaction.kind, LedgerAccount.code)
            .join(LedgerAccount, LedgerEntry.account_id == LedgerAccount.id)
            .join(LedgerTransaction, LedgerEntry.transaction_id == LedgerTransaction.id)
            .where(LedgerAccount.code.in_(codes)).order_by(LedgerEntry.id.desc()).limit(min(limit, 500))
        ).all()
        return WalletOut(
            promoter_id=promoter_id, pending_fen=balances.get(codes[0], 0),
            available_fen=balances.get(codes[1], 0),
            entries=[WalletEntry(at=e.created_at, kind=kind, account=code.split(":")[-1],
                                 amount_fen=-e.amount_fen, order_no=e.order_no,
                                 order_line_id=e.order_line_id, tier=e.tier, rule=e.rule)
                     for e, kind, code in rows])


# --- income detail -------------------------------------------------------------------------
KIND = re.compile(r"^[a-z_]{1,40}$")
CSV_COLUMNS = ("at", "kind", "account", "amount_fen", "amount_yuan", "order_no", "order_line_id", "tier", "rule")


def _bound(raw: str | None, name: str, tz: ZoneInfo, *, upper: bool) -> datetime | None:
    """ISO date or datetime; a bare date means the whole day (`to` includes it); naive
    times are in the settlement time zone."""
    if raw is None or raw == "":
        return None
    try:
        parsed = datetime.fromisoformat(raw)
    except ValueError as err:
        raise ApiError(422, "BAD_DATE", f"{name} must be an ISO date or date-time, e.g. 2026-01-31") from err
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=tz)
    if upper and len(raw) == 10:
        parsed += timedelta(days=1)
    return parsed


@router.get("/entries", response_model=list[WalletEntry],
            summary="Income detail: my ledger entries by kind and period; format=csv to export")
def my_entries(request: Request, kind: str | None = None,
               from_: str | None = Query(default=None, alias="from", description="ISO date or date-time"),
               to: str | None = Query(default=None, description="ISO date (inclusive) or date-time (exclusive)"),
               format: str = Query(default="json", pattern="^(json|csv)$"),
               limit: int = Query(default=100, ge=1, le=10_000), offset: int = Query(default=0, ge=0),
               principal: Principal = Depends(require_roles("promoter"))):
    tz = ZoneInfo(request.app.state.settings.settlement_timezone)
    start, end = _bound(from_, "from", tz, upper=False), _bound(to, "to", tz, upper=True)
    if start and end and start >= end:
        raise ApiError(422, "BAD_PERIOD", "from must be before to")
    if kind is not None and not KIND.match(kind):
        raise ApiError(422, "BAD_KIND", "kind is a ledger kind such as commission_pending")
    with sessions_of(request)() as s:
        promoter_id = s.scalar(select(Promoter.id).where(Promoter.user_id == principal.user_id))
        if promoter_id is None:
            raise ApiError(404, "NOT_A_PROMOTER", "this account has no promoter profile")
        codes = [rules.promoter_pending(promoter_id), rules.promoter_available(promoter_id)]
        query = (select(LedgerEntry, LedgerTransaction.kind, LedgerAccount.code)
                 .join(LedgerAccount, LedgerEntry.account_id == LedgerAccount.id)
                 .join(LedgerTransaction, LedgerEntry.transaction_id == LedgerTransaction.id)
                 .where(LedgerAccount.code.in_(codes)))
        if kind:
            query = query.where(LedgerTransaction.kind == kind)
        if start:
            query = query.where(LedgerEntry.created_at >= start)
        if end:
            query = query.where(LedgerEntry.created_at < end)
        rows = s.execute(query.order_by(LedgerEntry.id).limit(limit).offset(offset)).all()
        entries = [WalletEntry(at=e.created_at.astimezone(tz), kind=k, account=code.split(":")[-1], amount_fen=-e.amount_fen,
                               order_no=e.order_no, order_line_id=e.order_line_id, tier=e.tier, rule=e.rule)
                   for e, k, code in rows]
    if format == "json":
        return entries
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)
    for e in entries:
        writer.writerow([e.at.isoformat(), e.kind, e.account, e.amount_fen, yuan(e.amount_fen),
                         e.order_no or "", e.order_line_id or "", e.tier or "", e.rule])
    return Response(out.getvalue(), media_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": f'attachment; filename="income-{promoter_id}.csv"'})
