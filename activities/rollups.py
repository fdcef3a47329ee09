"""Dashboard rollups: the figures of each day, ISO week and month, recomputed from the orders,
refunds, ledger and window counters into `rollup_facts`, so a dashboard reads a handful of rows
instead of scanning every order.

`refresh` (the `dashboard-rollups` Schedule, every DASHBOARD_ROLLUP_EVERY) snapshots the window
counters for today and recomputes every period that today's and the last DASHBOARD_ROLLUP_LOOKBACK_DAYS
days belong to; `rebuild` does the same for any range of days (backfill: `chuchuang rollups`).
A period is recomputed whole, in one transaction (delete its rows, insert the new ones), so the
job is idempotent and a retry or an overlapping run leaves the same rows.

What each figure is (the test tests/test_dashboards.py computes the same from the raw rows):
  gmv_fen, paid_orders, paying_buyers, repeat_buyers (≥ 2 paid orders in the period), units:
      orders by the instant they were paid (orders.paid_at) — lines for supplier/category/product
  refund_fen, refunded_orders: refunds that reached the buyer (REFUNDED) by refunds.finished_at
  commission_fen: what `commission_pending` ledger transactions credited to promoters (tier 0 is
      the regional bonus), by the transaction's time
  exposures, clicks: difference of the window counters' end-of-day snapshots
  new_promoters: promoters.created_at; active_promoters: promoters whose window sold in the period
"""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from pydantic import BaseModel
from sqlalchemy import delete, text
from sqlalchemy.orm import Session, sessionmaker
from temporalio import activity

from db.console_models import RollupFact
from domain.dashboards import MEASURES, TIER_LABELS, Dim, Grain, bounds, period_end, periods_touched


class RollupInput(BaseModel):
    timezone: str = "Asia/Shanghai"
    lookback_days: int = 1
    as_of: datetime | None = None  # the workflow's time; None: now


class RollupResult(BaseModel):
    periods: int
    rows: int


PAID = """
paid AS (
  SELECT o.order_no, o.buyer_user_id, o.promoter_id, o.total_fen,
         CASE WHEN o.fulfilment = 'pickup' THEN '到店自提' ELSE COALESCE(o.shipping_address->>'province', '未知') END AS province,
         CASE WHEN o.fulfilment = 'pickup' THEN '到店自提'
              ELSE COALESCE(o.shipping_address->>'province', '未知') || '/' || COALESCE(o.shipping_address->>'city', '未知') END AS city
  FROM orders o WHERE o.paid_at >= :s AND o.paid_at < :e
)"""

# order-level dimensions: whole orders
ORDER_DIMS = {Dim.ALL: "''", Dim.PROVINCE: "province", Dim.CITY: "city", Dim.PROMOTER: "promoter_id::text"}
# line-level dimensions: the lines of one supplier / category / product
LINE_DIMS = {Dim.SUPPLIER: "l.supplier_id::text", Dim.CATEGORY: "p.category", Dim.PRODUCT: "l.product_id::text"}


def _sales(s: Session, dim: Dim, key: str, window: dict) -> list:
    if dim in ORDER_DIMS:
        sql = f"""WITH {PAID},
        lines AS (SELECT order_no, SUM(quantity) AS units FROM order_lines WHERE order_no IN (SELECT order_no FROM paid)
                  GROUP BY order_no),
        per_buyer AS (SELECT {key} AS k, buyer_user_id, COUNT(*) AS n, SUM(total_fen) AS g, SUM(COALESCE(lines.units, 0)) AS u
                      FROM paid LEFT JOIN lines USING (order_no) {"WHERE promoter_id IS NOT NULL" if dim == Dim.PROMOTER else ""}
                      GROUP BY 1, 2)
        SELECT k, SUM(g), SUM(n), COUNT(*), COUNT(*) FILTER (WHERE n >= 2), SUM(u) FROM per_buyer GROUP BY k"""
    else:
        sql = f"""WITH {PAID},
        per_buyer AS (SELECT {key} AS k, paid.buyer_user_id, COUNT(DISTINCT l.order_no) AS n, SUM(l.paid_fen) AS g,
                             SUM(l.quantity) AS u
                      FROM order_lines l JOIN paid ON paid.order_no = l.order_no JOIN products p ON p.id = l.product_id
                      GROUP BY 1, 2)
        SELECT k, SUM(g), SUM(n), COUNT(*), COUNT(*) FILTER (WHERE n >= 2), SUM(u) FROM per_buyer GROUP BY k"""
    return s.execute(text(sql), window).all()


def _refunds(s: Session, dim: Dim, window: dict) -> list:
    done = "r.status = 'REFUNDED' AND r.finished_at >= :s AND r.finished_at < :e"
    if dim in LINE_DIMS:
        return s.execute(text(f"""
            SELECT {LINE_DIMS[dim]}, SUM(rl.amount_fen), COUNT(DISTINCT r.order_no)
            FROM refunds r JOIN refund_lines rl ON rl.refund_no = r.refund_no
            JOIN order_lines l ON l.id = rl.order_line_id JOIN products p ON p.id = l.product_id
            WHERE {done} GROUP BY 1"""), window).all()
    key = {Dim.ALL: "''", Dim.PROMOTER: "o.promoter_id::text",
           Dim.PROVINCE: "CASE WHEN o.fulfilment = 'pickup' THEN '到店自提' ELSE COALESCE(o.shipping_address->>'province', '未知') END",
           Dim.CITY: "CASE WHEN o.fulfilment = 'pickup' THEN '到店自提' ELSE COALESCE(o.shipping_address->>'province', '未知') "
                     "|| '/' || COALESCE(o.shipping_address->>'city', '未知') END"}[dim]
    return s.execute(text(f"""
        SELECT {key}, SUM(r.amount_fen), COUNT(DISTINCT r.order_no)
        FROM refunds r JOIN orders o ON o.order_no = r.order_no
        WHERE {done} {"AND o.promoter_id IS NOT NULL" if dim == Dim.PROMOTER else ""} GROUP BY 1"""), window).all()


def _commission(s: Session, dim: Dim, window: dict) -> list:
    booked = """FROM ledger_entries le JOIN ledger_transactions t ON t.id = le.transaction_id
                WHERE t.kind = 'commission_pending' AND le.amount_fen < 0 AND t.created_at >= :s AND t.created_at < :e"""
    if dim in LINE_DIMS:
        return s.execute(text(f"""SELECT {LINE_DIMS[dim]}, -SUM(le.amount_fen) FROM order_lines l
            JOIN products p ON p.id = l.product_id JOIN (SELECT le.order_line_id, le.amount_fen {booked}) le
            ON le.order_line_id = l.id GROUP BY 1"""), window).all()
    if dim == Dim.PROMOTER:  # what each promoter earned (its own sales or, with 2-3 tiers, others')
        return s.execute(text(f"""SELECT a.owner_id::text, -SUM(le.amount_fen) {booked.replace(
            "WHERE", "JOIN ledger_accounts a ON a.id = le.account_id WHERE")} GROUP BY 1"""), window).all()
    if dim == Dim.TIER:
        return s.execute(text(f"SELECT COALESCE(le.tier, 0)::text, -SUM(le.amount_fen) {booked} GROUP BY 1"), window).all()
    key = {Dim.ALL: "''",
           Dim.PROVINCE: "CASE WHEN o.fulfilment = 'pickup' THEN '到店自提' ELSE COALESCE(o.shipping_address->>'province', '未知') END",
           Dim.CITY: "CASE WHEN o.fulfilment = 'pickup' THEN '到店自提' ELSE COALESCE(o.shipping_address->>'province', '未知') "
                     "|| '/' || COALESCE(o.shipping_address->>'city', '未知') END"}[dim]
    return s.execute(text(f"""SELECT {key}, -SUM(le.amount_fen) {booked.replace(
        "WHERE", "JOIN orders o ON o.order_no = t.order_no WHERE")} GROUP BY 1"""), window).all()


def _views(s: Session, dim: Dim, start: date, end: date) -> list:
    """Exposures and clicks in [start, end): last snapshot before `end` minus last before `start`."""
    key = {Dim.ALL: "''", Dim.SUPPLIER: "p.supplier_id::text", Dim.CATEGORY: "p.category",
           Dim.PRODUCT: "p.id::text"}[dim]
    return s.execute(text(f"""
        WITH cur AS (SELECT DISTINCT ON (product_id) product_id, exposures, clicks FROM rollup_view_snapshots
                     WHERE day < :end ORDER BY product_id, day DESC),
             prev AS (SELECT DISTINCT ON (product_id) product_id, exposures, clicks FROM rollup_view_snapshots
                      WHERE day < :start ORDER BY product_id, day DESC)
        SELECT {key}, SUM(cur.exposures - COALESCE(prev.exposures, 0)), SUM(cur.clicks - COALESCE(prev.clicks, 0))
        FROM cur LEFT JOIN prev USING (product_id) JOIN products p ON p.id = cur.product_id GROUP BY 1"""),
        {"start": start, "end": end}).all()


def _labels(s: Session, dim: Dim, keys: list[str]) -> dict[str, tuple[str, int | None]]:
    ids = [int(k) for k in keys if k.lstrip("-").isdigit()]
    if dim == Dim.SUPPLIER:
        rows = s.execute(text("SELECT id::text, name, id FROM suppliers WHERE id = ANY(:ids)"), {"ids": ids})
    elif dim == Dim.PRODUCT:
        rows = s.execute(text("SELECT id::text, title, supplier_id FROM products WHERE id = ANY(:ids)"), {"ids": ids})
    elif dim == Dim.PROMOTER:
        rows = s.execute(text("SELECT id::text, nickname, NULL FROM promoters WHERE id = ANY(:ids)"), {"ids": ids})
    elif dim == Dim.TIER:
        return {k: (TIER_LABELS.get(k, k), None) for k in keys}
    elif dim == Dim.ALL:
        return {"": ("全平台", None)}
    else:
        return {k: (k, None) for k in keys}
    return {k: (label, sup) for k, label, sup in rows}


def compute_period(s: Session, grain: Grain, start: date, tz: str) -> list[dict]:
    """Every row of one period, computed from the raw tables."""
    since, until = bounds(start, grain, tz)
    window = {"s": since, "e": until}
    rows: dict[tuple[Dim, str], dict] = {}

    def row(dim: Dim, key) -> dict:
        k = "" if key is None else str(key)
        return rows.setdefault((dim, k), {m: 0 for m in MEASURES})

    for dim in Dim:
        if dim != Dim.TIER:
            expr = ORDER_DIMS.get(dim) or LINE_DIMS[dim]
            for k, g, n, buyers, repeat, units in _sales(s, dim, expr, window):
                r = row(dim, k)
                r.update(gmv_fen=int(g or 0), paid_orders=int(n or 0), paying_buyers=buyers, repeat_buyers=repeat,
                         units=int(units or 0))
            for k, amount, orders in _refunds(s, dim, window):
                row(dim, k).update(refund_fen=int(amount or 0), refunded_orders=orders)
        for k, amount in _commission(s, dim, window):
            row(dim, k)["commission_fen"] = int(amount or 0)
        if dim in (Dim.ALL, Dim.SUPPLIER, Dim.CATEGORY, Dim.PRODUCT):
            for k, exposures, clicks in _views(s, dim, start, period_end(start, grain)):
                row(dim, k).update(exposures=int(exposures or 0), clicks=int(clicks or 0))
    everything = row(Dim.ALL, "")
    everything["new_promoters"] = s.scalar(text(
        "SELECT COUNT(*) FROM promoters WHERE created_at >= :s AND created_at < :e"), window)
    everything["active_promoters"] = s.scalar(text(
        "SELECT COUNT(DISTINCT promoter_id) FROM orders WHERE paid_at >= :s AND paid_at < :e"), window)

    out = []
    for dim in Dim:
        keys = [k for d, k in rows if d == dim]
        labels = _labels(s, dim, keys)
        for k in keys:
            label, supplier_id = labels.get(k, (k, None))
            if dim == Dim.SUPPLIER:
                supplier_id = int(k)
            out.append(dict(grain=grain.value, period_start=start, dim=dim.value, key=k, label=(label or "")[:200],
                            supplier_id=supplier_id, **rows[(dim, k)]))
    return out


def store_period(s: Session, grain: Grain, start: date, tz: str) -> int:
    rows = compute_period(s, grain, start, tz)
    s.execute(delete(RollupFact).where(RollupFact.grain == grain.value, RollupFact.period_start == start))
    if rows:  # COPY: a month has a row per product and per promoter that sold
        columns = list(rows[0])
        cursor = s.connection().connection.driver_connection.cursor()
        with cursor.copy(f"COPY rollup_facts ({', '.join(columns)}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row([row[c] for c in columns])
    return len(rows)


def snapshot_views(s: Session, day: date) -> None:
    """Today's running totals of window exposures and clicks, per product."""
    s.execute(text("""
        INSERT INTO rollup_view_snapshots (day, product_id, exposures, clicks)
        SELECT :day, product_id, SUM(exposures), SUM(clicks) FROM window_product_stats GROUP BY product_id
        ON CONFLICT (day, product_id) DO UPDATE SET exposures = EXCLUDED.exposures, clicks = EXCLUDED.clicks"""),
        {"day": day})


def local_day(at: datetime, tz: str) -> date:
    return at.astimezone(ZoneInfo(tz)).date()


def rebuild(sessions: sessionmaker[Session], tz: str, first: date, last: date, *, snapshot_day: date | None = None
            ) -> RollupResult:
    """Recompute every period the days first..last touch (each period in its own transaction)."""
    days = [first + timedelta(days=i) for i in range((last - first).days + 1)]
    if snapshot_day is not None:
        with sessions.begin() as s:
            snapshot_views(s, snapshot_day)
    total = 0
    touched = sorted(periods_touched(days), key=lambda p: (p[1], p[0].value))
    for grain, start in touched:
        with sessions.begin() as s:
            s.execute(text("SELECT pg_advisory_xact_lock(hashtext('rollup:' || :g || :d))"),
                      {"g": grain.value, "d": start.isoformat()})
            total += store_period(s, grain, start, tz)
    return RollupResult(periods=len(touched), rows=total)


class RollupActivities:
    def __init__(self, sessions: sessionmaker[Session]):
        self.sessions = sessions

    @activity.defn
    async def refresh_rollups(self, inp: RollupInput) -> RollupResult:
        today = local_day(inp.as_of or datetime.now(UTC), inp.timezone)
        first = today - timedelta(days=inp.lookback_days)
        return await asyncio.to_thread(rebuild, self.sessions, inp.timezone, first, today, snapshot_day=today)

    def all(self) -> list:
        return [self.refresh_rollups]
