"""Dashboards over a large shop: the figures endpoints against one SQL aggregate over the raw tables.

Loads (COPY) into an embedded PostgreSQL 1,000,000 paid orders of 100,000 promoters' windows
over two months (Beijing time), with their lines, payment and commission ledger postings,
refunds and window counters; builds the rollups once (the backfill `chuchuang rollups` does)
and times one incremental refresh (what the `dashboard-rollups` Schedule does every few minutes);
then times

  (a) each dashboard endpoint through the API (in-process ASGI, JSON), p95 over many requests, and
  (b) one direct SQL aggregate over the raw orders and lines computing the month's platform
      figures (GMV, paid orders, paying buyers, repeat buyers, units) — checked equal to (a)'s,

and prints them side by side with their ratio (target: the dashboards ≥ 20× faster).

    .venv/bin/python bench/dashboard.py            # 1,000,000 orders, 100,000 promoters
    .venv/bin/python bench/dashboard.py --quick    # 50,000 orders, 5,000 promoters: a smoke run

The ledger rows carry placeholder hash chains and the accounts no balances: the dashboards never
read either (bench/settlement_month.py is the benchmark of a verified ledger).
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import sqlalchemy as sa
from sqlalchemy.orm import sessionmaker

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from activities.rollups import rebuild  # noqa: E402
from api.auth import issue_token  # noqa: E402
from db.embedded import start_embedded_postgres  # noqa: E402
from db.migrate import upgrade  # noqa: E402
from db.session import get_engine  # noqa: E402
from domain.dashboards import bounds, Grain  # noqa: E402
from settings import Settings  # noqa: E402

TZ = "Asia/Shanghai"
FIRST = date(2026, 10, 1)
DAYS = 61                      # October and November
LAST = FIRST + timedelta(days=DAYS - 1)
SUPPLIERS, PRODUCTS_PER_SUPPLIER = 1_000, 5
PRICES = (990, 2_990, 5_900, 12_800, 29_900)
REGIONS = [("上海", "上海"), ("北京", "北京"), ("广东", "深圳"), ("广东", "广州"), ("浙江", "杭州"), ("江苏", "南京"),
           ("四川", "成都"), ("湖北", "武汉"), ("福建", "厦门"), ("山东", "青岛")]
CATEGORIES = ("food", "beauty", "home", "apparel", "digital")
ZERO = "0" * 64


def _text(value) -> str:
    return "\\N" if value is None else str(value)


def copy(cur, sql: str, rows) -> int:
    from psycopg.copy import QueuedLibpqWriter

    n = 0
    with cur.copy(sql, writer=QueuedLibpqWriter(cur)) as out:
        buf = io.StringIO()
        for n, row in enumerate(rows, 1):
            buf.write("\t".join(map(_text, row)))
            buf.write("\n")
            if n % 50_000 == 0:
                out.write(buf.getvalue())
                buf = io.StringIO()
        out.write(buf.getvalue())
    return n


def load(engine: sa.Engine, orders: int, promoters: int, seed: int) -> dict:
    rng = random.Random(seed)
    zone = ZoneInfo(TZ)
    start = datetime.combine(FIRST, datetime.min.time(), zone).timestamp()
    span = DAYS * 86400
    buyers = max(orders // 3, 1)
    products = SUPPLIERS * PRODUCTS_PER_SUPPLIER
    price = [rng.choice(PRICES) for _ in range(products)]
    counts = {}
    raw = engine.raw_connection()
    try:
        cur = raw.cursor()
        # users: supplier owners, promoters, buyers (ids in blocks)
        sup_user0, pro_user0, buy_user0 = 1, 1 + SUPPLIERS, 1 + SUPPLIERS + promoters
        copy(cur, "COPY users (id, role, username, openid, display_name, active) FROM STDIN", (
            (i, role, f"s{i}" if role == "supplier" else None, None if role == "supplier" else f"o{i}", f"u{i}", "t")
            for role, first, n in (("supplier", sup_user0, SUPPLIERS), ("promoter", pro_user0, promoters),
                                   ("buyer", buy_user0, buyers)) for i in range(first, first + n)))
        copy(cur, "COPY suppliers (id, owner_user_id, name, status, service_fee_bps) FROM STDIN",
             ((i, sup_user0 + i - 1, f"供应商{i}", "active", 300) for i in range(1, SUPPLIERS + 1)))
        copy(cur, "COPY products (id, supplier_id, title, category, status) FROM STDIN",
             ((p, (p - 1) // PRODUCTS_PER_SUPPLIER + 1, f"商品{p}", CATEGORIES[p % len(CATEGORIES)], "listed")
              for p in range(1, products + 1)))
        copy(cur, "COPY skus (id, product_id, spec, price_fen, stock, commission_bps) FROM STDIN",
             ((p, p, "", price[p - 1], 1_000_000, 1_500) for p in range(1, products + 1)))
        joined = [datetime.fromtimestamp(start - 30 * 86400 + rng.random() * (span + 30 * 86400), UTC)
                  for _ in range(promoters)]
        copy(cur, "COPY promoters (id, user_id, nickname, status, created_at) FROM STDIN",
             ((i, pro_user0 + i - 1, f"推客{i}", "active", joined[i - 1].isoformat()) for i in range(1, promoters + 1)))
        copy(cur, "COPY windows (id, promoter_id, name) FROM STDIN",
             ((i, i, f"橱窗{i}") for i in range(1, promoters + 1)))
        copy(cur, "COPY ledger_accounts (id, code, normal_side, owner_type, owner_id, balance_fen, last_hash) FROM STDIN",
             [(1, "wechatpay:clearing", "debit", "platform", None, 0, ZERO),
              (2, "orders:held", "credit", "platform", None, 0, ZERO)]
             + [(2 + i, f"promoter:{i}:pending", "credit", "promoter", i, 0, ZERO) for i in range(1, promoters + 1)])

        order_rows, line_rows, txn_rows, entry_rows, refund_rows, refund_line_rows = [], [], [], [], [], []
        line_id = txn_id = 0
        for n in range(1, orders + 1):
            at = datetime.fromtimestamp(start + rng.random() * span, UTC)
            no = f"CC{n:012d}"
            promoter = rng.randrange(1, promoters + 1) if rng.random() < 0.9 else None
            province, city = REGIONS[rng.randrange(len(REGIONS))]
            buyer = buy_user0 + rng.randrange(buyers)
            total, lines = 0, []
            for _ in range(1 if rng.random() < 0.75 else 2):
                line_id += 1
                p = rng.randrange(1, products + 1)
                qty = rng.choice((1, 1, 1, 2, 3))
                paid = price[p - 1] * qty
                total += paid
                lines.append((line_id, p, paid, qty))
                line_rows.append((line_id, no, p, p, (p - 1) // PRODUCTS_PER_SUPPLIER + 1, "x", price[p - 1], qty, paid,
                                  paid * 15 // 100, paid * 3 // 100, paid))
            address = '{"province": "%s", "city": "%s"}' % (province, city)
            order_rows.append((no, buyer, promoter, promoter, "window", "PAID", total, address, (at - timedelta(minutes=1)).isoformat(),
                               at.isoformat()))
            txn_id += 1
            txn_rows.append((txn_id, f"order:{no}:payment", "payment", no, "", at.isoformat()))
            entry_rows += [(txn_id, 1, total, no, None, None, at.isoformat()), (txn_id, 2, -total, no, None, None, at.isoformat())]
            if promoter is not None:
                txn_id += 1
                txn_rows.append((txn_id, f"order:{no}:commission:tier1", "commission_pending", no, "", at.isoformat()))
                for lid, _, paid, _ in lines:
                    share = paid * 15 // 100
                    entry_rows += [(txn_id, 2, share, no, lid, 1, at.isoformat()),
                                   (txn_id, 2 + promoter, -share, no, lid, 1, at.isoformat())]
            if rng.random() < 0.03:
                lid, _, paid, qty = lines[0]
                done = at + timedelta(days=rng.random() * 7)
                refund_rows.append((f"RF{n:012d}", no, buyer, "return", "", "REFUNDED", paid, "f", "", "",
                                    at.isoformat(), done.isoformat()))
                refund_line_rows.append((f"RF{n:012d}", lid, qty, 0, paid))
        counts["lines"] = copy(cur, "COPY orders (order_no, buyer_user_id, window_id, promoter_id, source, status, total_fen, "
                                    "shipping_address, created_at, paid_at) FROM STDIN", order_rows) and line_id
        copy(cur, "COPY order_lines (id, order_no, sku_id, product_id, supplier_id, title, unit_price_fen, quantity, "
                  "paid_fen, commission_fen, service_fee_fen, list_fen) FROM STDIN", line_rows)
        copy(cur, "COPY ledger_transactions (id, idempotency_key, kind, order_no, memo, created_at) FROM STDIN", txn_rows)
        counts["entries"] = copy(cur, "COPY ledger_entries (transaction_id, account_id, amount_fen, order_no, order_line_id, "
                                      "tier, created_at, rule, prev_hash, hash) FROM STDIN",
                                 (e + ("", ZERO, ZERO) for e in entry_rows))
        copy(cur, "COPY refunds (refund_no, order_no, buyer_user_id, kind, reason, status, amount_fen, needs_return, "
                  "review_reasons, review_note, created_at, finished_at) "
                  "FROM STDIN", refund_rows)
        copy(cur, "COPY refund_lines (refund_no, order_line_id, quantity, claimed_before, amount_fen) FROM STDIN",
             refund_line_rows)
        copy(cur, "COPY window_products (window_id, product_id, status) FROM STDIN",
             ((w, (w * 7) % products + 1, "mounted") for w in range(1, promoters + 1)))
        copy(cur, "COPY window_product_stats (window_id, product_id, exposures, clicks) FROM STDIN",
             ((w, (w * 7) % products + 1, rng.randrange(50, 5_000), rng.randrange(0, 300)) for w in range(1, promoters + 1)))
        for table, column in (("users", "id"), ("suppliers", "id"), ("products", "id"), ("skus", "id"),
                              ("promoters", "id"), ("windows", "id"), ("ledger_accounts", "id"),
                              ("order_lines", "id"), ("ledger_transactions", "id")):
            cur.execute(f"SELECT setval(pg_get_serial_sequence('{table}', '{column}'), (SELECT MAX({column}) FROM {table}))")
        raw.commit()
        cur.execute("ANALYZE")
        raw.commit()
    finally:
        raw.close()
    counts.update(orders=orders, promoters=promoters, txns=txn_id, refunds=len(refund_rows), buyers=buyers)
    return counts


RAW_MONTH = """
WITH paid AS (SELECT order_no, buyer_user_id, total_fen FROM orders WHERE paid_at >= :s AND paid_at < :e),
     per_buyer AS (SELECT buyer_user_id, COUNT(*) AS n FROM paid GROUP BY 1)
SELECT (SELECT COALESCE(SUM(total_fen), 0) FROM paid), (SELECT COUNT(*) FROM paid), (SELECT COUNT(*) FROM per_buyer),
       (SELECT COUNT(*) FROM per_buyer WHERE n >= 2),
       (SELECT COALESCE(SUM(l.quantity), 0) FROM order_lines l JOIN paid USING (order_no))"""


def p95(samples: list[float]) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(round(0.95 * (len(ordered) - 1))))]


async def time_endpoints(app, settings, requests: int) -> dict[str, tuple[float, dict]]:
    from db.models import User

    with app.state.sessions.begin() as s:
        user = User(role="operator", username=f"bench-operator-{time.time_ns()}", display_name="bench")
        s.add(user)
        s.flush()
        staff = {"Authorization": f"Bearer {issue_token(settings, s, user.id, 'operator')}"}
    month = LAST.replace(day=1).isoformat()
    endpoints = {
        "platform, 30 days": ("/dashboards/platform", {"grain": "day", "periods": 30, "until": LAST.isoformat()}),
        "platform, month (with 环比)": ("/dashboards/platform", {"grain": "month", "periods": 2, "until": LAST.isoformat()}),
        "by city, month": ("/dashboards/platform/breakdown", {"dim": "city", "grain": "month", "period": month}),
        "top 100 promoters, month": ("/dashboards/platform/breakdown",
                                     {"dim": "promoter", "grain": "month", "period": month, "limit": 100}),
        "supplier + products, 30 days": ("/dashboards/supplier", {"supplier_id": 17, "grain": "day", "periods": 30,
                                                                  "until": LAST.isoformat()}),
        "promoter, 30 days": ("/dashboards/promoter", {"promoter_id": 42, "grain": "day", "periods": 30,
                                                       "until": LAST.isoformat()}),
    }
    out = {}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api.bench") as client:
        for name, (path, params) in endpoints.items():
            answer = await client.get(path, params=params, headers=staff)   # warm
            assert answer.status_code == 200, answer.text
            samples = []
            for _ in range(requests):
                began = time.perf_counter()
                answer = await client.get(path, params=params, headers=staff)
                samples.append(time.perf_counter() - began)
                assert answer.status_code == 200
            out[name] = (p95(samples), answer.json())
    return out


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--orders", type=int, default=int(os.environ.get("BENCH_DASHBOARD_ORDERS", 1_000_000)))
    parser.add_argument("--promoters", type=int, default=int(os.environ.get("BENCH_DASHBOARD_PROMOTERS", 100_000)))
    parser.add_argument("--quick", action="store_true", help="a smoke run: 50,000 orders, 5,000 promoters")
    parser.add_argument("--requests", type=int, default=100, help="requests per endpoint")
    parser.add_argument("--seed", type=int, default=11)
    args = parser.parse_args()
    if args.quick:
        args.orders, args.promoters, args.requests = 50_000, 5_000, 40

    workdir = Path(tempfile.mkdtemp(prefix="chuchuang-bench-dash-"))
    try:
        url = start_embedded_postgres(workdir / "pg", "bench")
        upgrade(url)
        settings = Settings(_env_file=None, data_dir=workdir, database_url=url, sandbox_url="http://sandbox.bench",
                            public_base_url="http://api.bench", task_queue=f"bench-{uuid.uuid4().hex[:6]}",
                            jwt_secret="bench-secret-bench-secret-bench-secret-0123", settlement_timezone=TZ)
        engine = get_engine(settings)
        sessions = sessionmaker(engine, expire_on_commit=False)
        began = time.perf_counter()
        counts = load(engine, args.orders, args.promoters, args.seed)
        loaded = time.perf_counter()
        print(f"loaded (COPY) {counts['orders']:,} paid orders ({counts['lines']:,} lines, {counts['refunds']:,} refunds) "
              f"of {counts['promoters']:,} promoters and {counts['buyers']:,} buyers, {counts['txns']:,} ledger "
              f"transactions / {counts['entries']:,} entries, {FIRST} .. {LAST}, in {loaded - began:.1f} s")
        with sessions.begin() as s:   # the window counters' snapshot of the last day
            from activities.rollups import snapshot_views

            snapshot_views(s, LAST)
        built = rebuild(sessions, TZ, FIRST, LAST)
        backfilled = time.perf_counter()
        print(f"rollups backfilled: {built.periods} periods, {built.rows:,} rows in {backfilled - loaded:.1f} s")
        refreshed = rebuild(sessions, TZ, LAST - timedelta(days=1), LAST, snapshot_day=LAST)
        refresh_s = time.perf_counter() - backfilled
        print(f"one scheduled refresh (today and yesterday: {refreshed.periods} periods): {refresh_s:.1f} s")

        from api.app import create_app
        from sandbox.credentials import load_or_create

        load_or_create(settings.sandbox_dir)
        app = create_app(settings, sessions=sessions)
        timings = await time_endpoints(app, settings, args.requests)

        since, until = bounds(LAST.replace(day=1), Grain.MONTH, TZ)
        raw_samples = []
        with engine.connect() as c:
            for _ in range(5):
                began = time.perf_counter()
                raw = c.execute(sa.text(RAW_MONTH), {"s": since, "e": until}).one()
                raw_samples.append(time.perf_counter() - began)
        raw_s = statistics.median(raw_samples)
        month = timings["platform, month (with 环比)"][1]["current"]
        assert tuple(raw) == (month["gmv_fen"], month["paid_orders"], month["paying_buyers"], month["repeat_buyers"],
                              month["units"]), (tuple(raw), month)
        print(f"the month's figures from the rollups equal the raw aggregate: GMV {raw[0] / 100:,.2f} yuan, "
              f"{raw[1]:,} orders, {raw[2]:,} buyers ({raw[3]:,} repeat), {raw[4]:,} units")
        print(f"{'endpoint':34s} {'p95 ms':>9s} {'raw/dashboard':>14s}")
        for name, (seconds, _) in timings.items():
            print(f"{name:34s} {seconds * 1000:9.2f} {raw_s / seconds:13.1f}×")
        slowest = max(seconds for seconds, _ in timings.values())
        print(f"{'one SQL aggregate (month, raw)':34s} {raw_s * 1000:9.2f}   (median of 5)")
        print(f"ratio raw aggregate / slowest dashboard p95: {raw_s / slowest:.1f}×  (target ≥ 20×)")
        engine.dispose()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(main())
