"""Writing to the ledger. `post` is the only way money moves: one balanced transaction per
business event, idempotent by its key, balances and hash chains updated under row locks in
the caller's database transaction."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from db.models import LedgerAccount, LedgerEntry, LedgerTransaction
from domain.ledger import (
    Posting,
    balance_delta,
    check_balanced,
    entry_hash,
    normal_side,
    owner_of,
)

GENESIS = "0" * 64


def _ensure_accounts(session: Session, codes: set[str]) -> None:
    """Create missing accounts in their own committed transaction. Inserting them inside the
    posting transaction would let two postings deadlock: one waiting on the other's uncommitted
    new account row while holding a lock the other needs."""
    known = set(session.scalars(select(LedgerAccount.code).where(LedgerAccount.code.in_(codes))))
    if known == codes:
        return
    rows = [
        {"code": c, "normal_side": normal_side(c), "owner_type": owner_of(c)[0],
         "owner_id": owner_of(c)[1], "balance_fen": 0, "last_hash": GENESIS}
        for c in sorted(codes - known)
    ]
    with session.get_bind().engine.begin() as own:
        own.execute(insert(LedgerAccount).values(rows).on_conflict_do_nothing(index_elements=["code"]))


def _held_locks(session: Session) -> dict[str, LedgerAccount]:
    """Accounts this database transaction has already locked (row locks last until it ends)."""
    transaction = session.get_transaction()
    held = session.info.get("ledger_locks")
    if held is None or held[0] is not transaction:
        held = session.info["ledger_locks"] = (transaction, {})
    return held[1]


def _locked_accounts(session: Session, codes: set[str]) -> dict[str, LedgerAccount]:
    held = _held_locks(session)
    if not codes <= held.keys():
        _ensure_accounts(session, codes - held.keys())
        # Locking in code order everywhere means two postings can never deadlock each other.
        held.update((a.code, a) for a in session.scalars(
            select(LedgerAccount).where(LedgerAccount.code.in_(codes - held.keys()))
            .order_by(LedgerAccount.code).with_for_update()))
    return {code: held[code] for code in codes}


def lock_accounts(session: Session, codes: set[str]) -> None:
    """Lock, in one go and in code order, every account a database transaction will post to.
    Call it first when one transaction makes several postings, so no two transactions ever
    take the same locks in different orders."""
    _locked_accounts(session, codes)


def post(session: Session, key: str, kind: str, postings: list[Posting], *,
         order_no: str | None = None, memo: str = "") -> bool:
    """Record the transaction once. Returns False (and changes nothing) if `key` was seen."""
    check_balanced(postings)
    inserted = session.execute(
        insert(LedgerTransaction)
        .values(idempotency_key=key, kind=kind, order_no=order_no, memo=memo)
        .on_conflict_do_nothing(index_elements=["idempotency_key"])
        .returning(LedgerTransaction.id)
    ).scalar()
    if inserted is None:
        return False
    accounts = _locked_accounts(session, {p.account for p in postings})
    for p in postings:
        account = accounts[p.account]
        digest = entry_hash(account.last_hash, key=key, account=p.account, amount_fen=p.amount_fen,
                            line=p.order_line_id, tier=p.tier, rule=p.rule)
        session.add(LedgerEntry(
            transaction_id=inserted, account_id=account.id, amount_fen=p.amount_fen,
            order_no=order_no, order_line_id=p.order_line_id, tier=p.tier, rule=p.rule,
            prev_hash=account.last_hash, hash=digest,
        ))
        account.balance_fen += balance_delta(p.account, p.amount_fen)
        account.last_hash = digest
    session.flush()
    return True


def balance(session: Session, code: str) -> int:
    return session.scalar(select(LedgerAccount.balance_fen).where(LedgerAccount.code == code)) or 0


def verify(session: Session) -> list[str]:
    """Every problem found: unbalanced transactions, broken hash chains, balances that do
    not match their entries. An empty list means the ledger is intact."""
    problems: list[str] = []
    for txn in session.scalars(select(LedgerTransaction).order_by(LedgerTransaction.id)):
        total = sum(e.amount_fen for e in txn.entries)
        if total != 0:
            problems.append(f"transaction {txn.idempotency_key} sums to {total}")
    keys = dict(session.execute(select(LedgerTransaction.id, LedgerTransaction.idempotency_key)).all())
    for account in session.scalars(select(LedgerAccount).order_by(LedgerAccount.id)):
        prev, derived = GENESIS, 0
        entries = session.scalars(
            select(LedgerEntry).where(LedgerEntry.account_id == account.id).order_by(LedgerEntry.id)
        )
        for e in entries:
            expected = entry_hash(prev, key=keys[e.transaction_id], account=account.code,
                                  amount_fen=e.amount_fen, line=e.order_line_id, tier=e.tier,
                                  rule=e.rule)
            if e.prev_hash != prev or e.hash != expected:
                problems.append(f"hash chain broken at entry {e.id} of {account.code}")
            prev = e.hash
            derived += balance_delta(account.code, e.amount_fen)
        if derived != account.balance_fen:
            problems.append(f"{account.code} balance {account.balance_fen} != entries {derived}")
        if prev != account.last_hash:
            problems.append(f"{account.code} chain head does not match its last entry")
    return problems
