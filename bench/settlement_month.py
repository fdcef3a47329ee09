"""The monthly commission settlement against one SQL aggregate over the same data.

Loads a month of ledger lines into an embedded PostgreSQL (default: 1,000,000 lines on the
`available` accounts of 100,000 promoters, i.e. the sum of their statements' `entries`), written
exactly as the real postings write them: every order's payment, pending commission, release and
completion split, refunds after release (reversals per line and tier), withdrawals requested,
paid or returned, each a balanced transaction with its hash chain, plus last month's releases
for an opening balance. Then times

  (a) the real CommissionSettlementWorkflow for that month on a Temporal dev server with a real
      worker (batches of SETTLEMENT_BATCH_SIZE promoters in child workflows), and
  (b) one SQL aggregate computing the same per-promoter figures,

checks that every statement equals the aggregate exactly (and closes at the ledger's balance),
and prints both times and their ratio.

    make bench      # or: .venv/bin/python bench/settlement_month.py [--lines 1000000 --promoters 100000]
    .venv/bin/python bench/settlement_month.py --quick    # 20,000 lines, 2,000 promoters: a smoke run

Sizes also from the environment: BENCH_SETTLEMENT_LINES, BENCH_SETTLEMENT_PROMOTERS.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import io
import os
import random
import shutil
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy.orm import sessionmaker
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from activities.ledger import GENESIS  # noqa: E402
from db.embedded import start_embedded_postgres  # noqa: E402
from db.migrate import upgrade  # noqa: E402
from db.session import get_engine  # noqa: E402
from domain import ledger as rules  # noqa: E402
from domain.ledger import entry_hash  # noqa: E402
from domain.money import apply_bps  # noqa: E402
from domain.refunds import share_of  # noqa: E402
from domain.settlement import CommissionRunProgress, month_bounds, run_workflow_id  # noqa: E402
from workflows.schedules import commission_run_input  # noqa: E402
from settings import Settings  # noqa: E402
from integrations.temporal import ensure_search_attributes  # noqa: E402
from worker import build_worker  # noqa: E402
from workflows.settlement import CommissionSettlementWorkflow  # noqa: E402

TZ = "Asia/Shanghai"
PRICES = (5_000, 9_900, 19_900, 29_900)        # fen; commission ≥ 500 fen, so every unit's part is > 0
COMMISSION_BPS = (1_000, 1_500, 2_000)
QUANTITIES = (1, 1, 1, 2, 3)
SUPPLIERS = 1_000
AVAILABLE = "promoter:%:available"
HOUR, DAY = 3600.0, 86400.0


# --- the month's ledger, planned as the real postings make it ------------------------------------
@dataclass
class Books:
    """Accounts by id (their codes, balances on the normal side, chain heads) and every
    transaction: (created_at, seq, key, kind, order_no, memo, postings), postings being
    (account id, signed amount, order line id, tier, rule)."""

    codes: list[str] = field(default_factory=list)
    ids: dict[str, int] = field(default_factory=dict)
    txns: list[tuple] = field(default_factory=list)
    seq: int = 0

    def account(self, code: str) -> int:
        found = self.ids.get(code)
        if found is None:
            found = self.ids[code] = len(self.codes) + 1
            self.codes.append(code)
        return found

    def post(self, at: float, key: str, kind: str, postings: list[rules.Posting], order_no: str | None = None,
             memo: str = "") -> None:
        postings = [p for p in postings if p.amount_fen != 0]
        rules.check_balanced(postings)
        self.seq += 1
        self.txns.append((at, self.seq, key, kind, order_no, memo, tuple(
            (self.account(p.account), p.amount_fen, p.order_line_id, p.tier, p.rule) for p in postings)))


@dataclass
class Sold:
    order_no: str
    line_id: int
    supplier_id: int
    quantity: int
    paid_fen: int
    fee_fen: int
    commission_fen: int
    earned_fen: int      # the tier-1 share posted to the promoter (all of it: 1 tier)
    claimed: int = 0


class MonthPlanner:
    def __init__(self, books: Books, start: float, end: float, seed: int):
        self.books, self.start, self.end = books, start, end
        self.rng = random.Random(seed)
        self.orders = 0
        self.refunds = 0
        self.withdrawals = 0

    def order(self, promoter_id: int, completed_at: float) -> Sold:
        """An order paid 8–20 days before its refund window closed: payment and pending
        commission (OrderActivities.record_payment), then release and the completion split
        (OrderActivities.complete_order)."""
        rng, b = self.rng, self.books
        self.orders += 1
        no, line_id, supplier_id = f"BM{self.orders:014d}", self.orders, rng.randrange(1, SUPPLIERS + 1)
        quantity, price = rng.choice(QUANTITIES), rng.choice(PRICES)
        paid = price * quantity
        fee, commission = apply_bps(paid, 100 + supplier_id % 5 * 100), apply_bps(paid, rng.choice(COMMISSION_BPS))
        earned = apply_bps(commission, 10_000)
        paid_at = completed_at - rng.uniform(8 * DAY, 20 * DAY)
        pending, available = rules.promoter_pending(promoter_id), rules.promoter_available(promoter_id)
        b.post(paid_at, f"order:{no}:payment", "payment", rules.transfer(rules.CLEARING, rules.ORDERS_HELD, paid),
               no, f"WeChat Pay 42000{self.orders:023d}")
        b.post(paid_at, f"order:{no}:commission:tier1", "commission_pending",
               rules.transfer(rules.ORDERS_HELD, pending, earned, order_line_id=line_id, tier=1,
                              rule=f"sku:{price}:policy:v1:1t"), no, f"tier 1 commission for promoter {promoter_id}")
        b.post(completed_at, f"order:{no}:commission:tier1:release", "commission_release",
               rules.transfer(pending, available, earned, tier=1), no, "refund window closed")
        share = paid - fee - commission
        held = paid - earned - share
        b.post(completed_at, f"order:{no}:settle", "order_settlement", [
            rules.Posting(rules.ORDERS_HELD, share, order_line_id=line_id, rule="supplier_share"),
            rules.Posting(rules.supplier_payable(supplier_id), -share, order_line_id=line_id, rule="supplier_share"),
            rules.Posting(rules.ORDERS_HELD, held, rule="service_fee_and_unpaid_commission"),
            rules.Posting(rules.PLATFORM_REVENUE, -held, rule="service_fee_and_unpaid_commission")],
            no, "order completed")
        return Sold(no, line_id, supplier_id, quantity, paid, fee, commission, earned)

    def refund_unit(self, promoter_id: int, sold: Sold, at: float) -> int:
        """One unit returned after the order completed (RefundActivities.complete_refund): the
        unit's commission back from `available`, the supplier's and the platform's parts."""
        self.refunds += 1
        refund_no = f"RF{self.refunds:014d}"

        def part(total: int) -> int:
            return share_of(total, sold.quantity, sold.claimed, 1)

        amount, reversed_commission = part(sold.paid_fen), part(sold.earned_fen)
        supplier = part(sold.paid_fen) - part(sold.fee_fen) - part(sold.commission_fen)
        self.books.post(at, f"refund:{refund_no}", "refund", [
            rules.Posting(rules.promoter_available(promoter_id), reversed_commission, order_line_id=sold.line_id,
                          tier=1, rule="commission_reversal"),
            rules.Posting(rules.supplier_payable(sold.supplier_id), supplier, order_line_id=sold.line_id,
                          rule="supplier_share_reversal"),
            rules.Posting(rules.PLATFORM_REVENUE, amount - supplier - reversed_commission, order_line_id=sold.line_id,
                          rule="platform_share_reversal"),
            rules.Posting(rules.CLEARING, -amount)], sold.order_no, f"refund {refund_no} (quality_return)")
        sold.claimed += 1
        return reversed_commission

    def withdraw(self, promoter_id: int, amount: int, at: float) -> int:
        self.withdrawals += 1
        wid = self.withdrawals
        self.books.post(at, f"withdrawal:{wid}:request", "withdrawal_request", rules.transfer(
            rules.promoter_available(promoter_id), rules.promoter_withdrawing(promoter_id), amount, rule="withdrawal"),
            memo=f"withdrawal {wid} requested")
        return wid

    def withdrawal_paid(self, promoter_id: int, wid: int, amount: int, at: float) -> None:
        self.books.post(at, f"withdrawal:{wid}:paid", "withdrawal_paid", rules.transfer(
            rules.promoter_withdrawing(promoter_id), rules.CLEARING, amount, rule="withdrawal"),
            memo=f"withdrawal {wid} paid: WeChat transfer 1330000{wid:020d}")

    def withdrawal_returned(self, promoter_id: int, wid: int, amount: int, at: float) -> None:
        self.books.post(at, f"withdrawal:{wid}:returned", "withdrawal_returned", rules.transfer(
            rules.promoter_withdrawing(promoter_id), rules.promoter_available(promoter_id), amount,
            rule="withdrawal"), memo=f"withdrawal {wid} failed: NOT_CONFIRMED")

    def promoter(self, promoter_id: int, lines: int, with_opening: bool) -> None:
        """`lines` entries on the promoter's `available` account within the month: releases,
        refunds after release, withdrawals requested and returned (paid ones leave
        `withdrawing`, not `available`); one release last month when `with_opening`."""
        rng = self.rng
        balance, sold = 0, []
        if with_opening:
            balance += self.order(promoter_id, self.start - rng.uniform(HOUR, 20 * DAY)).earned_fen
        times = sorted(rng.uniform(self.start + HOUR, self.end - HOUR) for _ in range(lines))
        returning: tuple[int, int] | None = None
        for j, at in enumerate(times):
            last = j == lines - 1
            if returning is not None:      # the withdrawal before this line was not confirmed: money back
                self.withdrawal_returned(promoter_id, *returning, at)
                balance += returning[1]
                returning = None
                continue
            roll = rng.random()
            open_units = [s for s in sold if s.claimed < s.quantity]
            if roll < 0.08 and balance >= 200:
                amount = balance // 2
                wid = self.withdraw(promoter_id, amount, at)
                balance -= amount
                if not last and rng.random() < 0.25:
                    returning = (wid, amount)
                else:
                    self.withdrawal_paid(promoter_id, wid, amount, at + rng.uniform(1, 60))
            elif roll < 0.20 and open_units:
                balance -= self.refund_unit(promoter_id, rng.choice(open_units), at)
            else:
                s = self.order(promoter_id, at)
                sold.append(s)
                balance += s.earned_fen


def lines_per_promoter(n: int, lines: int, rng: random.Random) -> list[int]:
    """Exactly `lines` in all, at least one each, spread unevenly in pairs."""
    if lines < n:
        raise SystemExit(f"need at least one line per promoter ({lines} lines for {n} promoters)")
    base, extra = divmod(lines, n)
    out = [base + (1 if i < extra else 0) for i in range(n)]
    for i in range(0, n - 1, 2):
        d = rng.randint(0, min(out[i + 1] - 1, base // 2 + 1))
        out[i] += d
        out[i + 1] -= d
    return out


# --- bulk load (COPY) ----------------------------------------------------------------------------
def _text(value) -> str:
    return "\\N" if value is None else str(value)


def _copy(cur, sql: str, rows) -> None:
    """COPY rows in text format; a libpq thread sends while the next rows are made."""
    from psycopg.copy import QueuedLibpqWriter

    with cur.copy(sql, writer=QueuedLibpqWriter(cur)) as copy:
        buf = io.StringIO()
        for n, row in enumerate(rows, 1):
            buf.write("\t".join(map(_text, row)))
            buf.write("\n")
            if n % 50_000 == 0:
                copy.write(buf.getvalue())
                buf = io.StringIO()
        copy.write(buf.getvalue())


def create_promoters(engine: sa.Engine, promoters: int) -> list[int]:
    """Promoters and their users (statements refer to promoters); their ids, ascending."""
    with engine.begin() as c:
        users = c.execute(sa.text(
            "INSERT INTO users (role, openid, display_name, active) SELECT 'promoter', 'oBENCH' || g, 'p', true"
            " FROM generate_series(1, :n) g RETURNING id"), {"n": promoters}).scalars().all()
        promoter_ids = sorted(c.execute(sa.text(
            "INSERT INTO promoters (user_id, nickname, status) SELECT u, 'p', 'active' FROM unnest(:users) u"
            " RETURNING id"), {"users": list(users)}).scalars().all())
    return promoter_ids


def fast_entry_hash(prev: str, key: str, account: str, amount: int, line: int | None, tier: int | None,
                    rule: str) -> str:
    """`domain.ledger.entry_hash` without json.dumps: the same bytes for the plain ASCII keys,
    codes and rules written here (checked against it in `check_fast_hash`)."""
    return hashlib.sha256(
        f'["{prev}","{key}","{account}",{amount},{"null" if line is None else line},'
        f'{"null" if tier is None else tier},"{rule}"]'.encode()).hexdigest()


def check_fast_hash(books: Books, sample: int = 2_000) -> None:
    for _, _, key, _, _, _, postings in books.txns[:sample]:
        for account, amount, line, tier, rule in postings:
            code = books.codes[account - 1]
            assert key.isascii() and '"' not in key + code + rule and "\\" not in key + code + rule
            assert fast_entry_hash(GENESIS, key, code, amount, line, tier, rule) == entry_hash(
                GENESIS, key=key, account=code, amount_fen=amount, line=line, tier=tier, rule=rule)


def drop_secondary_indexes(cur, tables: tuple[str, ...]) -> list[str]:
    """Drop the tables' unique constraints and plain indexes (not primary keys: foreign keys
    hang on them) for the load; returns the DDL that puts each back exactly as it was."""
    cur.execute("SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid) FROM pg_constraint"
                " WHERE contype = 'u' AND conrelid::regclass::text = ANY(%s)", (list(tables),))
    constraints = cur.fetchall()
    cur.execute("SELECT i.indexname, i.indexdef FROM pg_indexes i WHERE i.tablename = ANY(%s) AND NOT EXISTS"
                " (SELECT 1 FROM pg_constraint c WHERE c.conname = i.indexname)", (list(tables),))
    indexes = cur.fetchall()
    for table, name, _ in constraints:
        cur.execute(f'ALTER TABLE {table} DROP CONSTRAINT "{name}"')
    for name, _ in indexes:
        cur.execute(f'DROP INDEX "{name}"')
    return ([f'ALTER TABLE {table} ADD CONSTRAINT "{name}" {definition}' for table, name, definition in constraints]
            + [definition for _, definition in indexes])


def write_ledger(engine: sa.Engine, books: Books) -> int:
    """Accounts, transactions (in time order) and their entries by COPY, hash chains and
    balances as `ledger.post` computes them; returns the number of entries written."""
    books.txns.sort(key=lambda t: (t[0], t[1]))
    check_fast_hash(books)
    codes = books.codes
    heads = [GENESIS] * (len(codes) + 1)
    balances = [0] * (len(codes) + 1)
    raw = engine.raw_connection()
    try:
        cur = raw.cursor()
        cur.execute("SET synchronous_commit = off")
        # A bulk load, as pg_restore --disable-triggers does it: no per-row foreign-key triggers
        # (the rows are consistent by construction; `books_balance` checks every reference after).
        cur.execute("SET session_replication_role = replica")
        rebuild = drop_secondary_indexes(cur, ("ledger_transactions", "ledger_entries"))
        _copy(cur, "COPY ledger_accounts (id, code, normal_side, owner_type, owner_id, balance_fen, last_hash)"
                   " FROM STDIN",
              ((i, code, rules.normal_side(code), *rules.owner_of(code), 0, GENESIS)
               for i, code in enumerate(codes, 1)))
        stamps = [datetime.fromtimestamp(t[0], UTC).isoformat() for t in books.txns]
        _copy(cur, "COPY ledger_transactions (id, idempotency_key, kind, order_no, memo, created_at) FROM STDIN",
              ((i, t[2], t[3], t[4], t[5], stamps[i - 1]) for i, t in enumerate(books.txns, 1)))

        credit = [rules.normal_side(code) == "credit" for code in codes]

        def entries():
            for i, (_, _, key, _, order_no, _, postings) in enumerate(books.txns, 1):
                stamp = stamps[i - 1]
                for account, amount, line, tier, rule in postings:
                    code = codes[account - 1]
                    prev = heads[account]
                    digest = fast_entry_hash(prev, key, code, amount, line, tier, rule)
                    heads[account] = digest
                    balances[account] += -amount if credit[account - 1] else amount
                    yield i, account, amount, order_no, line, tier, rule, prev, digest, stamp

        count = 0

        def counted():
            nonlocal count
            for row in entries():
                count += 1
                yield row

        _copy(cur, "COPY ledger_entries (transaction_id, account_id, amount_fen, order_no, order_line_id, tier, rule,"
                   " prev_hash, hash, created_at) FROM STDIN", counted())
        cur.execute("SET maintenance_work_mem = '256MB'")
        for ddl in rebuild:
            cur.execute(ddl)
        cur.execute("CREATE TEMP TABLE bench_heads (id bigint, balance_fen bigint, last_hash varchar(64))")
        _copy(cur, "COPY bench_heads FROM STDIN",
              ((i, balances[i], heads[i]) for i in range(1, len(codes) + 1)))
        cur.execute("UPDATE ledger_accounts a SET balance_fen = h.balance_fen, last_hash = h.last_hash"
                    " FROM bench_heads h WHERE h.id = a.id")
        for table in ("ledger_accounts", "ledger_transactions"):
            cur.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))")
        raw.commit()
        cur.execute("ANALYZE")
        raw.commit()
        return count
    finally:
        raw.close()


# --- checks ----------------------------------------------------------------------------------------
# The same figures as a statement, for every promoter at once, written out independently:
# `available` is credit-normal, so a credit (amount < 0) adds to it.
AGGREGATE = """
SELECT a.owner_id,
       SUM(CASE WHEN e.created_at < :start THEN -e.amount_fen ELSE 0 END) AS opening,
       SUM(CASE WHEN e.created_at >= :start AND t.kind = 'commission_release' THEN -e.amount_fen ELSE 0 END),
       SUM(CASE WHEN e.created_at >= :start AND t.kind = 'refund' THEN e.amount_fen ELSE 0 END),
       SUM(CASE WHEN e.created_at >= :start AND t.kind LIKE 'withdrawal%' THEN e.amount_fen ELSE 0 END),
       SUM(CASE WHEN e.created_at >= :start AND t.kind NOT IN ('commission_release', 'refund')
                 AND t.kind NOT LIKE 'withdrawal%' THEN -e.amount_fen ELSE 0 END),
       SUM(-e.amount_fen) AS closing,
       COUNT(*) FILTER (WHERE e.created_at >= :start) AS entries
  FROM ledger_entries e
  JOIN ledger_accounts a ON a.id = e.account_id
  JOIN ledger_transactions t ON t.id = e.transaction_id
 WHERE a.owner_type = 'promoter' AND a.code LIKE :available AND e.created_at < :end
 GROUP BY a.owner_id
"""

STATEMENTS = ("SELECT promoter_id, opening_fen, released_fen, reversed_fen, withdrawn_fen, other_fen, closing_fen,"
              " entries FROM commission_statements WHERE month = :month")


def books_balance(engine: sa.Engine) -> list[str]:
    """What `assert_books_balance` checks, in SQL (the ORM walk is too slow for millions of
    entries): every transaction sums to zero, every balance equals its entries, what all
    parties are owed equals what WeChat Pay holds, and every entry's prev_hash is the hash of
    the account's entry before it."""
    problems = []
    with engine.connect() as c:
        if n := c.scalar(sa.text(
                "SELECT count(*) FROM ledger_entries e WHERE NOT EXISTS (SELECT 1 FROM ledger_transactions t"
                " WHERE t.id = e.transaction_id) OR NOT EXISTS (SELECT 1 FROM ledger_accounts a WHERE a.id = e.account_id)")):
            problems.append(f"{n} entries refer to no transaction or account")
        if n := c.scalar(sa.text("SELECT count(*) FROM (SELECT 1 FROM ledger_entries GROUP BY transaction_id"
                                 " HAVING sum(amount_fen) <> 0) x")):
            problems.append(f"{n} unbalanced transactions")
        if n := c.scalar(sa.text(
                "SELECT count(*) FROM ledger_accounts a LEFT JOIN (SELECT account_id, sum(amount_fen) s FROM"
                " ledger_entries GROUP BY account_id) e ON e.account_id = a.id WHERE a.balance_fen <>"
                " CASE WHEN a.normal_side = 'debit' THEN 1 ELSE -1 END * COALESCE(e.s, 0)")):
            problems.append(f"{n} balances differ from their entries")
        owed, held = c.execute(sa.text(
            "SELECT COALESCE(SUM(balance_fen) FILTER (WHERE normal_side = 'credit'), 0),"
            " COALESCE(SUM(balance_fen) FILTER (WHERE code = :clearing), 0) FROM ledger_accounts"),
            {"clearing": rules.CLEARING}).one()
        if owed != held:
            problems.append(f"owed {owed} != collected {held}")
        if n := c.scalar(sa.text(
                "SELECT count(*) FROM (SELECT prev_hash, lag(hash, 1, :genesis) OVER (PARTITION BY account_id"
                " ORDER BY id) AS before FROM ledger_entries) x WHERE prev_hash <> before"), {"genesis": GENESIS}):
            problems.append(f"{n} broken hash-chain links")
    return problems


# --- the run -------------------------------------------------------------------------------------
def last_month(tz: str) -> str:
    today = datetime.now(UTC).astimezone(ZoneInfo(tz)).date()
    year, month = (today.year - 1, 12) if today.month == 1 else (today.year, today.month - 1)
    return f"{year:04d}-{month:02d}"


async def let_payouts_finish(env, month: str) -> None:
    """A final run starts the month's automatic payouts (none here): let that end before the
    worker goes."""
    try:
        from workflows.payouts import payouts_workflow_id
    except ImportError:
        return
    from temporalio.service import RPCError

    try:
        await env.client.get_workflow_handle(payouts_workflow_id(month)).result()
    except RPCError:
        pass   # none started


async def settle(env, settings, sessions, month: str) -> tuple[float, CommissionRunProgress, int]:
    inp = commission_run_input(settings, month)
    wf_id = run_workflow_id("commission", month)
    with ThreadPoolExecutor(max_workers=32) as executor:
        async with build_worker(env.client, settings, executor, sessions=sessions):
            began = time.perf_counter()
            handle = await env.client.start_workflow(CommissionSettlementWorkflow.run, inp, id=wf_id,
                                                     task_queue=settings.task_queue)
            result = await handle.result()
            took = time.perf_counter() - began
            await let_payouts_finish(env, month)
    history = await handle.fetch_history()
    return took, result, len(history.events)


def aggregate(engine: sa.Engine, start: datetime, end: datetime) -> tuple[float, dict[int, tuple]]:
    with engine.connect() as c:
        began = time.perf_counter()
        rows = c.execute(sa.text(AGGREGATE), {"start": start, "end": end, "available": AVAILABLE}).all()
        took = time.perf_counter() - began
    return took, {int(r[0]): tuple(int(v) for v in r[1:]) for r in rows}


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lines", type=int, default=int(os.environ.get("BENCH_SETTLEMENT_LINES", 1_000_000)),
                        help="ledger lines on the promoters' available accounts in the month")
    parser.add_argument("--promoters", type=int,
                        default=int(os.environ.get("BENCH_SETTLEMENT_PROMOTERS", 100_000)))
    parser.add_argument("--quick", action="store_true", help="a smoke run: 20,000 lines, 2,000 promoters")
    parser.add_argument("--month", default=None, help="YYYY-MM (default: last month in Asia/Shanghai)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--skip-checks", action="store_true", help="skip the SQL checks that the books balance")
    args = parser.parse_args()
    if args.quick:
        args.lines, args.promoters = 20_000, 2_000
    month = args.month or last_month(TZ)
    start, end = month_bounds(month, TZ)

    workdir = Path(tempfile.mkdtemp(prefix="chuchuang-bench-"))
    try:
        url = start_embedded_postgres(workdir / "pg", "bench")
        upgrade(url)
        settings = Settings(_env_file=None, data_dir=workdir, database_url=url, sandbox_url="http://sandbox.bench",
                            public_base_url="http://api.bench", task_queue=f"bench-{uuid.uuid4().hex[:6]}",
                            jwt_secret="bench-secret-bench-secret-bench-secret-0123",
                            settlement_timezone=TZ)
        engine = get_engine(settings)
        sessions = sessionmaker(engine, expire_on_commit=False)

        began = time.perf_counter()
        promoter_ids = create_promoters(engine, args.promoters)
        books = Books()
        for code in (rules.CLEARING, rules.ORDERS_HELD, rules.PLATFORM_REVENUE):
            books.account(code)
        planner = MonthPlanner(books, start.timestamp(), end.timestamp(), args.seed)
        counts = lines_per_promoter(len(promoter_ids), args.lines, planner.rng)
        for pid, n in zip(promoter_ids, counts, strict=True):
            planner.promoter(pid, n, with_opening=planner.rng.random() < 0.5)
        planned = time.perf_counter()
        entries = write_ledger(engine, books)
        loaded = time.perf_counter()
        print(f"month {month}: {args.promoters} promoters, {len(books.txns)} ledger transactions, {entries} entries "
              f"({planner.orders} orders, {planner.refunds} refunds, {planner.withdrawals} withdrawals); "
              f"planned in {planned - began:.1f} s, loaded (COPY) in {loaded - planned:.1f} s")
        if not args.skip_checks:
            problems = books_balance(engine)
            assert not problems, problems
            print("books balance: every transaction sums to zero, balances equal entries, owed = collected, "
                  "hash chains linked")

        aggregate(engine, start, end)   # warm the caches for both sides alike
        temporal = shutil.which("temporal") or str(Path(sys.executable).parent / "temporal")
        env = await WorkflowEnvironment.start_local(
            dev_server_existing_path=temporal, data_converter=pydantic_data_converter,
            dev_server_extra_args=["--log-level", "error"])
        async with env:
            await ensure_search_attributes(env.client)
            workflow_s, result, events = await settle(env, settings, sessions, month)
        sql_s, expected = aggregate(engine, start, end)

        with engine.connect() as c:
            statements = {int(r[0]): tuple(int(v) for v in r[1:])
                          for r in c.execute(sa.text(STATEMENTS), {"month": month})}
            ledger_closing = dict(c.execute(sa.text(
                "SELECT owner_id, balance_fen FROM ledger_accounts WHERE code LIKE :available"),
                {"available": AVAILABLE}).all())
        assert result.status == "final", result
        assert statements == expected, "statements differ from the aggregate: " + str(
            sorted(p for p in set(statements) | set(expected) if statements.get(p) != expected.get(p))[:10])
        assert all(st[5] == ledger_closing[pid] for pid, st in statements.items()), "a statement does not close at the ledger"
        lines_in_month = sum(st[6] for st in statements.values())
        assert lines_in_month == args.lines, (lines_in_month, args.lines)
        t = result.totals
        assert (t.statements, t.opening_fen, t.released_fen, t.reversed_fen, t.withdrawn_fen, t.other_fen,
                t.closing_fen) == (len(expected), *[sum(v[i] for v in expected.values()) for i in range(6)])
        print(f"statements: {t.statements} in {result.batches_total} batches, {lines_in_month} lines; released "
              f"{t.released_fen / 100:.2f}, reversed {t.reversed_fen / 100:.2f}, withdrawn {t.withdrawn_fen / 100:.2f},"
              f" closing {t.closing_fen / 100:.2f} yuan = the ledger; each equal to the aggregate")
        print(f"commission settlement workflow: {workflow_s:8.2f} s  ({args.lines / workflow_s:,.0f} lines/s, "
              f"run history {events} events)")
        print(f"one SQL aggregate             : {sql_s:8.2f} s  ({args.lines / sql_s:,.0f} lines/s)")
        print(f"ratio workflow/aggregate      : {workflow_s / sql_s:.2f}  (1.00 = as fast as one query)")
        engine.dispose()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(main())
