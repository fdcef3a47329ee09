from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel
from sqlalchemy import select

from chuchuang.api.deps import sessions_of
from chuchuang.api.auth import Principal, require_roles
from chuchuang.api.errors import ApiError
from chuchuang.db.models import LedgerAccount, LedgerEntry, LedgerTransaction, Promoter
from chuchuang.domain import ledger as rules

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
