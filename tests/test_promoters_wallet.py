"""Income detail (filter, CSV export), `chuchuang ledger verify`, and many concurrent
commission postings and reversals on one wallet ending exact."""

from __future__ import annotations

import csv
import io
import random
from concurrent.futures import ThreadPoolExecutor

from sqlalchemy import select, text

from activities import ledger
from db.models import LedgerEntry
from domain import ledger as rules


def _post(sessions, key: str, kind: str, postings, order_no: str | None = None) -> bool:
    with sessions.begin() as s:
        return ledger.post(s, key, kind, postings, order_no=order_no)


def _earn(sessions, promoter_id: int, n: int, amount: int, kind: str = "commission_pending") -> None:
    _post(sessions, f"test:{promoter_id}:{kind}:{n}", kind,
          rules.transfer(rules.ORDERS_HELD, rules.promoter_pending(promoter_id), amount, tier=1, rule="t"),
          order_no=f"ORD{n:06d}")


async def test_income_detail_filters_and_exports_csv(api, token, sessions, demo):
    headers = token(demo.promoter_user_id, "promoter")
    for n, amount in enumerate([100, 250, 999]):
        _earn(sessions, demo.promoter_id, n, amount)
    _post(sessions, "test:release:0", "commission_release",
          rules.transfer(rules.promoter_pending(demo.promoter_id), rules.promoter_available(demo.promoter_id), 100))
    all_ = (await api.get("/wallet/entries", headers=headers)).json()
    assert [e["amount_fen"] for e in all_] == [100, 250, 999, -100, 100]
    pending = (await api.get("/wallet/entries", params={"kind": "commission_pending"}, headers=headers)).json()
    assert sum(e["amount_fen"] for e in pending) == 1_349
    today = all_[0]["at"][:10]
    dated = await api.get("/wallet/entries", params={"from": today, "to": today}, headers=headers)
    assert len(dated.json()) == 5, dated.text
    none = await api.get("/wallet/entries", params={"from": "2001-01-01", "to": "2001-01-31"}, headers=headers)
    assert none.json() == []
    exported = await api.get("/wallet/entries", params={"format": "csv", "kind": "commission_pending"},
                             headers=headers)
    assert exported.status_code == 200 and exported.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(exported.text)))
    assert [r["amount_yuan"] for r in rows] == ["1.00", "2.50", "9.99"] and rows[0]["order_no"] == "ORD000000"
    for params, code in [({"from": "yesterday"}, "BAD_DATE"), ({"from": "2026-02-01", "to": "2026-01-01"}, "BAD_PERIOD"),
                         ({"kind": "DROP TABLE"}, "BAD_KIND")]:
        bad = await api.get("/wallet/entries", params=params, headers=headers)
        assert (bad.status_code, bad.json()["code"]) == (422, code), bad.text
    assert (await api.get("/wallet/entries", headers=token(demo.buyer_user_id, "buyer"))).status_code == 403


def test_concurrent_postings_and_reversals_end_exact(sessions, clean_db):
    """Commission in and reversals out of one wallet from many threads at once, reversals
    sometimes driving it negative, every event also posted twice (retries): the balance is
    exactly the sum of distinct events and the ledger verifies."""
    promoter_id, rng = 42, random.Random(7)
    available = rules.promoter_available(promoter_id)
    events = []
    for i in range(120):
        amount = rng.randint(1, 5_000)
        if i % 3 == 2:  # a reversal, often larger than what is there
            events.append((f"order:R{i}:commission:tier1:reversal", "commission_reversal",
                           rules.transfer(available, rules.ORDERS_HELD, amount * 3), -amount * 3))
        else:
            events.append((f"order:R{i}:commission:tier1", "commission_release",
                           rules.transfer(rules.ORDERS_HELD, available, amount), amount))
    work = events + events[::-1]
    rng.shuffle(work)
    with ThreadPoolExecutor(max_workers=16) as pool:
        results = list(pool.map(lambda e: _post(sessions, e[0], e[1], e[2]), work))
    assert sum(results) == len(events)  # each event counted once, retries change nothing
    with sessions() as s:
        assert ledger.balance(s, available) == sum(e[3] for e in events)
        assert ledger.balance(s, rules.ORDERS_HELD) == -sum(e[3] for e in events)
        assert ledger.verify(s) == []


def test_ledger_verify_command(sessions, clean_db, settings, monkeypatch):
    from typer.testing import CliRunner

    from cli import main as cli

    _earn(sessions, 7, 1, 500)
    monkeypatch.setattr(cli, "get_settings", lambda: settings)
    ok = CliRunner().invoke(cli.app, ["ledger", "verify"])
    assert ok.exit_code == 0 and "ledger intact" in ok.output, ok.output
    with sessions.begin() as s:  # tamper underneath the append-only trigger
        s.execute(text("ALTER TABLE ledger_entries DISABLE TRIGGER ledger_entries_append_only"))
        entry = s.scalar(select(LedgerEntry).order_by(LedgerEntry.id).limit(1))
        s.execute(text("UPDATE ledger_entries SET amount_fen = amount_fen + 1 WHERE id = :id"), {"id": entry.id})
        s.execute(text("ALTER TABLE ledger_entries ENABLE TRIGGER ledger_entries_append_only"))
    bad = CliRunner().invoke(cli.app, ["ledger", "verify"])
    assert bad.exit_code == 1 and "problem" in bad.output, bad.output
